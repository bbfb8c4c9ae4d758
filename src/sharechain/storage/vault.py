"""Per-organisation key vaults and key inboxes inside a data directory.

A *vault* is where one organisation's node keeps the key material it custodies:
whole data keys (the owner's own copy; the supervisor's under `supervisor`
custody) and Shamir key shares (`threshold` custody). Every entry is stored
wrapped with HPKE to the organisation's own X25519 key, with the organisation,
dataset, key epoch and kind bound into the wrap's context, so a vault file alone
reveals nothing and cannot be moved to another slot. An *inbox* is where
wrapped keys released to an organisation are delivered (in embedded mode; over
the network the REST API carries them).

Layout under the data directory::

    vault/<org>/<dataset>/<epoch, 12 digits>.<key|share>   wrapped to <org>
    inbox/<org>/<dataset>/<grant>/<session>/<custodian>     wrapped to <org> by a custodian

On the embedded default one process plays every organisation, but each vault and
inbox is opened for one organisation with that organisation's keys, and every
access to key material goes through `Vault` or `Inbox`, which report it to the
observers installed with `watch()`: a test can then show what material each
organisation's node touched (the `threshold` isolation test does).

When an organisation rotates its keys (`org rotate-key`), its entries are
re-wrapped to the new encryption key (`rewrap`) by whoever holds both: the
command in the embedded default, the organisation's node when it takes the
new key file. Until then the old key opens them; afterwards only the new one.

Destroying an entry unlinks it; purging a dataset removes every vault entry and
inbox delivery for it (crypto-shredding). Vault files are not meant to be backed
up: a copy plus the organisation's private key would rebuild a destroyed key.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sharechain.codec import encode
from sharechain.crypto.hpke import unwrap_key, wrap_key
from sharechain.crypto.keyfile import OrgKeys
from sharechain.errors import DecryptionError, NotFoundError

__all__ = [
    "INBOX_DIR",
    "KINDS",
    "VAULT_DIR",
    "Access",
    "Inbox",
    "Vault",
    "record",
    "rewrap",
    "vault_context",
    "watch",
    "wrap_for_vault",
]

VAULT_DIR: Final = "vault"
INBOX_DIR: Final = "inbox"
KINDS: Final = ("key", "share")
_VAULT_LABEL = "sharechain/vault/v1"


@dataclass(frozen=True, slots=True)
class Access:
    """One use of key material (or of plaintext) by one organisation's node."""

    org: str
    """The organisation whose node acted."""
    operation: str
    """`put`, `get`, `destroy` (vault); `deliver`, `collect` (inbox); `decrypt` (payload)."""
    kind: str
    """`key`, `share`, `wrapped` (a release in an inbox) or `plaintext`."""
    dataset: str
    """The dataset concerned."""
    epoch: int
    """Its key epoch (0 when the operation concerns every epoch)."""
    material_sha256: bytes
    """SHA-256 of the secret handled (empty for `destroy`): lets a test compare without
    keeping the secret itself."""


_observers: list[list[Access]] = []


@contextmanager
def watch() -> Iterator[list[Access]]:
    """Collect every `Access` made while the block runs (for tests and audits)."""
    seen: list[Access] = []
    _observers.append(seen)
    try:
        yield seen
    finally:
        _observers.remove(seen)


def record(access: Access) -> None:
    """Report an access to the observers (the vault and inbox call it; so does a fetch)."""
    for seen in _observers:
        seen.append(access)


def vault_context(org: str, dataset: str, epoch: int, kind: str) -> bytes:
    """The HPKE context binding a vault entry to its slot (organisation, dataset, epoch, kind)."""
    if kind not in KINDS:
        raise ValueError(f"vault entries are {KINDS}, not {kind!r}")
    return encode([_VAULT_LABEL, org, dataset, epoch, kind])


def wrap_for_vault(
    secret: bytes, org: str, encryption_public: bytes, dataset: str, epoch: int, kind: str
) -> bytes:
    """Wrap `secret` as a vault entry of `org` (which alone can open it).

    Over the network an owner wraps each custodian's key or share this way and sends
    it to the custodian's node, which stores it with `Vault.put_wrapped`: the secret
    never crosses the network, nor any node but its custodian's, in the clear.
    """
    return wrap_key(secret, encryption_public, context=vault_context(org, dataset, epoch, kind))


def _write_private(path: Path, data: bytes) -> None:
    """Write atomically, readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.urandom(8).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class Vault:
    """The key material one organisation's node custodies, wrapped to its own key."""

    def __init__(self, data_dir: Path, keys: OrgKeys) -> None:
        self.org = keys.org
        self.root = data_dir / VAULT_DIR / keys.org
        self._keys = keys

    def _path(self, dataset: str, epoch: int, kind: str) -> Path:
        if kind not in KINDS:
            raise ValueError(f"vault entries are {KINDS}, not {kind!r}")
        return self.root / dataset / f"{epoch:012d}.{kind}"

    def _context(self, dataset: str, epoch: int, kind: str) -> bytes:
        return vault_context(self.org, dataset, epoch, kind)

    def put(self, dataset: str, epoch: int, kind: str, secret: bytes) -> None:
        """Keep `secret` (a data key or an encoded share) for `dataset` at `epoch`."""
        wrapped = wrap_for_vault(
            secret, self.org, self._keys.encryption_public, dataset, epoch, kind
        )
        _write_private(self._path(dataset, epoch, kind), wrapped)
        record(Access(self.org, "put", kind, dataset, epoch, hashlib.sha256(secret).digest()))

    def put_wrapped(self, dataset: str, epoch: int, kind: str, wrapped: bytes) -> None:
        """Keep an entry another organisation wrapped for this slot (`wrap_for_vault`).

        It is opened once before it is kept, so a wrap for another organisation or
        another slot is refused (`DecryptionError`) instead of stored.
        """
        secret = unwrap_key(
            wrapped, self._keys.encryption_private, context=self._context(dataset, epoch, kind)
        )
        _write_private(self._path(dataset, epoch, kind), wrapped)
        record(Access(self.org, "put", kind, dataset, epoch, hashlib.sha256(secret).digest()))

    def get_wrapped(self, dataset: str, epoch: int, kind: str) -> bytes:
        """The entry as stored (wrapped to this organisation); `NotFoundError` if none.

        For the organisation's own tools, which hold its private key: a node hands its
        own organisation the wrapped entry, never the secret.
        """
        try:
            return self._path(dataset, epoch, kind).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(
                f"{self.org} holds no {kind} of dataset {dataset} at key epoch {epoch}"
            ) from None

    def get(self, dataset: str, epoch: int, kind: str) -> bytes:
        """The secret kept for `dataset` at `epoch`; `NotFoundError` if there is none."""
        path = self._path(dataset, epoch, kind)
        try:
            wrapped = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(
                f"{self.org} holds no {kind} of dataset {dataset} at key epoch {epoch} "
                f"(destroyed by a purge or rotation, or never given to {self.org})"
            ) from None
        secret = unwrap_key(
            wrapped, self._keys.encryption_private, context=self._context(dataset, epoch, kind)
        )
        record(Access(self.org, "get", kind, dataset, epoch, hashlib.sha256(secret).digest()))
        return secret

    def has(self, dataset: str, epoch: int, kind: str) -> bool:
        return self._path(dataset, epoch, kind).is_file()

    def entries(self) -> list[tuple[str, int, str]]:
        """Every (dataset, epoch, kind) held, sorted."""
        try:
            datasets = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        return [(ds, ep, kind) for ds in datasets for ep, kind in self._held(ds)]

    def _held(self, dataset: str) -> list[tuple[int, str]]:
        """The (epoch, kind) entries of one dataset; none if its directory is gone (a
        shred running beside this read removes it)."""
        try:
            names = os.listdir(self.root / dataset)
        except (FileNotFoundError, NotADirectoryError):
            return []
        out = []
        for name in names:
            stem, _, kind = name.partition(".")
            if kind in KINDS and stem.isdigit():
                out.append((int(stem), kind))
        return sorted(out)

    def destroy(self, dataset: str, epoch: int | None = None) -> int:
        """Destroy the dataset's entries (of one epoch, or all); returns how many this call
        removed (an entry another shred removed first is not counted twice)."""
        removed = 0
        for ep, kind in self._held(dataset):
            if epoch is None or ep == epoch:
                try:
                    self._path(dataset, ep, kind).unlink()
                except FileNotFoundError:
                    continue
                removed += 1
        if epoch is None:
            shutil.rmtree(self.root / dataset, ignore_errors=True)
        record(Access(self.org, "destroy", "key", dataset, epoch or 0, b""))
        return removed


class Inbox:
    """Wrapped keys (or shares) released to one organisation, awaiting its fetch."""

    def __init__(self, data_dir: Path, org: str) -> None:
        self.org = org
        self.root = data_dir / INBOX_DIR / org

    def _path(self, dataset: str, grant: str, session: str, custodian: str) -> Path:
        return self.root / dataset / grant / session / custodian

    def deliver(
        self, dataset: str, epoch: int, grant: str, session: str, custodian: str, wrapped: bytes
    ) -> Path:
        """Leave a wrapped release from `custodian` (its digest is on the chain)."""
        path = self._path(dataset, grant, session, custodian)
        _write_private(path, wrapped)
        record(
            Access(self.org, "deliver", "wrapped", dataset, epoch, hashlib.sha256(wrapped).digest())
        )
        return path

    def collect(self, dataset: str, epoch: int, grant: str, session: str, custodian: str) -> bytes:
        """The wrapped release `custodian` delivered in `session`; `NotFoundError` if none."""
        try:
            wrapped = self._path(dataset, grant, session, custodian).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(
                f"no key release from {custodian} for grant {grant} in {self.org}'s inbox"
            ) from None
        record(
            Access(self.org, "collect", "wrapped", dataset, epoch, hashlib.sha256(wrapped).digest())
        )
        return wrapped

    def clear(self, dataset: str, grant: str | None = None, session: str | None = None) -> None:
        """Remove deliveries: of one session, of one grant, or of the whole dataset."""
        path = self.root / dataset
        if grant is not None:
            path = path / grant
            if session is not None:
                path = path / session
        shutil.rmtree(path, ignore_errors=True)

    def datasets(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir()) if self.root.is_dir() else []


def rewrap(data_dir: Path, old: OrgKeys, new: OrgKeys) -> int:
    """Re-wrap `old.org`'s vault entries from its old encryption key to its new one.

    Idempotent (an entry the new key opens already is left alone), so a run cut
    short is finished by the next. An entry neither key opens is left as it is
    (it was never this organisation's to open). Returns how many were re-wrapped.
    """
    if old.org != new.org:
        raise ValueError(f"keys of {old.org} and {new.org} are not one organisation's")
    vault = Vault(data_dir, new)
    done = 0
    for dataset, epoch, kind in vault.entries():
        path = vault._path(dataset, epoch, kind)
        context = vault._context(dataset, epoch, kind)
        wrapped = path.read_bytes()
        try:
            unwrap_key(wrapped, new.encryption_private, context=context)
            continue
        except DecryptionError:
            pass
        try:
            secret = unwrap_key(wrapped, old.encryption_private, context=context)
        except DecryptionError:
            continue
        _write_private(path, wrap_key(secret, new.encryption_public, context=context))
        record(Access(new.org, "put", kind, dataset, epoch, hashlib.sha256(secret).digest()))
        done += 1
    return done
