"""One organisation's part in the data plane: custody, key releases, checks.

These are the steps of publishing, releasing and fetching that one
organisation performs with its own keys, its own vault and its copy of the
chain (a `Store`), written once and used by both ways of running the data
plane:

- the data-plane operations (`sharing.publish`, `fetch`, `rotation`) run the
  owner's and the grantee's, whichever adapters they are given;
- the embedded adapters (`sharing.local`) run the custodians' for every
  organisation of the data directory, and on a network a node
  (`sharechain.sharing.delivery`) runs its own custodian's steps when a grantee
  asks through the REST API.

Nothing here performs I/O beyond the vault it is handed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sharechain.codec import encode
from sharechain.contracts.datasets import Dataset
from sharechain.contracts.epochs import KeyEpoch, current_epoch
from sharechain.crypto import shamir
from sharechain.crypto.hpke import unwrap_key, wrap_key
from sharechain.crypto.keyfile import OrgKeys
from sharechain.crypto.stream import StreamDigests
from sharechain.errors import AccessDeniedError, ConfigError, IntegrityError, NotFoundError
from sharechain.ledger.identities import Organisation
from sharechain.ledger.state import StateReader
from sharechain.ledger.store import Store
from sharechain.storage.vault import Vault

__all__ = [
    "CUSTODY_MODES",
    "NOTHING_WRAPPED",
    "KeyRelease",
    "check_digests",
    "check_opened",
    "combine_secrets",
    "custody_material",
    "encryption_key",
    "epoch_payload",
    "key_epoch",
    "open_release",
    "plan_custody",
    "register_payload",
    "release_context",
    "release_payload",
    "secret_kind",
    "wrap_release",
]

CUSTODY_MODES: Final = ("owner", "supervisor", "threshold")
NOTHING_WRAPPED: Final = bytes(32)
"""The `wrapped_key_digest` of a release attempt for which the custodian had no key left."""
_RELEASE_LABEL = "sharechain/release/v1"


@dataclass(frozen=True, slots=True)
class KeyRelease:
    """A key (or share) released by one custodian under a grant, accepted by the chain."""

    grant: str
    """The grant."""
    custodian: str
    """The organisation that released."""
    to: str
    """The grantee."""
    epoch: int
    """Key epoch of the released key."""
    session: str
    """Fetch session (the shares of one threshold fetch count as one use)."""
    wrapped_digest: bytes
    """SHA-256 of the wrapped key, as recorded on the chain."""
    tx_id: bytes
    """The `grant.key-release` transaction."""


def release_context(ds: str, epoch: int, grant: str, session: str, custodian: str) -> bytes:
    """The HPKE context of a released key: replayed elsewhere, the wrap does not open."""
    return encode([_RELEASE_LABEL, ds, epoch, grant, session, custodian])


def key_epoch(store: Store, ds: str) -> KeyEpoch:
    """The dataset's current key epoch on this chain copy; `NotFoundError` if never sealed."""
    found = current_epoch(StateReader(store), ds)
    if found is None:
        raise NotFoundError(
            f"dataset {ds} has no key epoch on the chain: it was registered without a "
            "payload (publish files with `sharechain dataset publish`)"
        )
    return found


def encryption_key(organisations: Sequence[Organisation], org: str) -> bytes:
    """`org`'s X25519 public key as the chain records it; refused for a removed member."""
    for o in organisations:
        if o.id == org:
            if not o.active:
                raise AccessDeniedError(f"{org} is no longer an active member")
            return bytes(o.enc_key)
    raise NotFoundError(f"{org} is not an organisation of this consortium")


def plan_custody(
    organisations: Sequence[Organisation],
    owner: str,
    custody: str,
    holders: Sequence[str] | None,
    threshold: int | None,
) -> tuple[tuple[str, ...], int]:
    """Who holds the key (or its shares) and how many shares rebuild it."""
    if custody not in CUSTODY_MODES:
        raise ConfigError(f"custody must be one of {', '.join(CUSTODY_MODES)}, not {custody!r}")
    active = [o for o in organisations if o.active]
    if custody == "owner":
        return (owner,), 1
    if custody == "supervisor":
        chosen = tuple(holders or ())
        if not chosen:
            sup = [o.id for o in active if o.has_role("supervisor") and o.id != owner]
            if not sup:
                raise ConfigError("supervisor custody needs an active supervisor besides the owner")
            chosen = (sup[0],)
        return chosen, 1
    chosen = tuple(holders or (o.id for o in active if o.id != owner))
    if owner in chosen:
        raise ConfigError("in threshold custody the owner holds no share (it keeps the key)")
    if len(chosen) < 2:
        raise ConfigError("threshold custody needs at least two share holders besides the owner")
    t = threshold if threshold is not None else max(2, len(chosen) // 2 + 1)
    if not 2 <= t <= len(chosen):
        raise ConfigError(f"threshold must be 2..{len(chosen)} for {len(chosen)} holders, got {t}")
    return chosen, t


def secret_kind(threshold: int) -> str:
    """What a custodian keeps: a whole `key`, or a `share` under threshold custody."""
    return "share" if threshold > 1 else "key"


def custody_material(
    key: bytes,
    owner: str,
    holders: Sequence[str],
    t: int,
    rng: Callable[[int], bytes],
) -> tuple[tuple[str, str, bytes], ...]:
    """(custodian, kind, secret) for every custodian but the owner (who keeps `key`)."""
    if t > 1:
        shares = shamir.split(key, t, len(holders), rng)
        return tuple((h, "share", s.encode()) for h, s in zip(holders, shares, strict=True))
    return tuple((h, "key", key) for h in holders if h != owner)


def epoch_payload(
    ds: str,
    epoch: int,
    digests: StreamDigests,
    custody: str,
    holders: Sequence[str],
    t: int,
    *,
    reason: str,
    inline: bytes = b"",
) -> dict[str, Any]:
    """The body of a `dataset.epoch` transaction; `inline` is a small sealed payload."""
    body: dict[str, Any] = {
        "dataset": ds,
        "epoch": epoch,
        "ciphertext_digest": digests.ciphertext_sha256,
        "segment_root": digests.segment_root,
        "custody": custody,
        "holders": list(holders),
        "threshold": t,
        "reason": reason,
    }
    if inline:
        body["inline"] = inline
    return body


def register_payload(
    digests: StreamDigests,
    *,
    title: str,
    description: str,
    tags: Sequence[str],
    classification: str,
    schema: Sequence[tuple[str, str]],
    policy: Mapping[str, Any] | None,
    custody: str,
    holders: Sequence[str],
) -> dict[str, Any]:
    """The body of the `dataset.register` transaction of a sealed payload."""
    register: dict[str, Any] = {
        "title": title,
        "description": description,
        "tags": list(tags),
        "schema": [[c, ty] for c, ty in schema],
        "classification": classification,
        "plaintext_digest": digests.plaintext_sha256,
        "ciphertext_digest": digests.ciphertext_sha256,
        "size": digests.size,
        "segment_root": digests.segment_root,
        "custody": custody,
        "holders": list(holders),
    }
    if policy is not None:
        register["policy"] = dict(policy)
    return register


def wrap_release(
    vault: Vault, recipient: bytes, epoch: KeyEpoch, *, grant: str, session: str
) -> bytes:
    """The vault's key (or share) of `epoch` wrapped to `recipient` for this release.

    The dataset, epoch, grant, session and custodian are bound into the wrap. Returns
    b"" when the custodian no longer holds the entry (purged): the attempt is still
    recorded on the chain, with `NOTHING_WRAPPED` as its digest.
    """
    if vault.org not in epoch.holders:
        raise AccessDeniedError(
            f"{vault.org} holds no key of dataset {epoch.dataset}; ask one of "
            f"{', '.join(epoch.holders)}"
        )
    kind = secret_kind(epoch.threshold)
    if not vault.has(epoch.dataset, epoch.epoch, kind):
        return b""
    context = release_context(epoch.dataset, epoch.epoch, grant, session, vault.org)
    return wrap_key(vault.get(epoch.dataset, epoch.epoch, kind), recipient, context=context)


def release_payload(
    grant: str, to: str, epoch: KeyEpoch, wrapped: bytes, session: str
) -> dict[str, Any]:
    """The body of the `grant.key-release` transaction recording a wrap (or its absence).

    It names the dataset whose epoch is released: a masked grant's releases
    must name its masked version (issue 15), never the raw dataset.
    """
    return {
        "grant": grant,
        "to": to,
        "dataset": epoch.dataset,
        "epoch": epoch.epoch,
        "wrapped_key_digest": hashlib.sha256(wrapped).digest() if wrapped else NOTHING_WRAPPED,
        "session": session,
    }


def open_release(
    wrapped: bytes,
    keys: OrgKeys,
    release: KeyRelease,
    dataset: str,
    chain_digest: bytes,
) -> bytes:
    """The grantee opens a release, after checking it is the wrap the chain recorded."""
    if hashlib.sha256(wrapped).digest() != chain_digest:
        raise IntegrityError(
            f"the key delivered by {release.custodian} is not the one its release on the "
            "chain names; fetch again"
        )
    context = release_context(
        dataset, release.epoch, release.grant, release.session, release.custodian
    )
    return unwrap_key(wrapped, keys.encryption_private, context=context)


def combine_secrets(secrets: Sequence[bytes], threshold: int) -> bytes:
    """The data key from what the custodians released (one key, or `threshold` shares)."""
    if threshold == 1:
        return secrets[0]
    return shamir.combine([shamir.Share.decode(s) for s in secrets])


def check_digests(ds: Dataset, epoch: KeyEpoch, got: StreamDigests) -> None:
    """Raise `IntegrityError` unless an opened payload is the one the chain records."""
    check_opened(ds.id, ds.plaintext_digest, ds.size, epoch, got)


def check_opened(
    dataset: str, plaintext_digest: bytes, size: int, epoch: KeyEpoch, got: StreamDigests
) -> None:
    """`check_digests` given the dataset record's fields (as a remote client reads them)."""
    # No whole-ciphertext digest here: the segment root pins every segment and the tags
    # pin the header, so a matching root means the stream is the registered one.
    checks = (
        ("plaintext digest", plaintext_digest, got.plaintext_sha256),
        ("segment root", epoch.segment_root, got.segment_root),
    )
    for name, want, have in checks:
        if want != have:
            raise IntegrityError(
                f"the {name} of dataset {dataset} is {have.hex()}, not {want.hex()} as the chain "
                "records; the payload was altered, nothing was kept"
            )
    if got.size != size:
        raise IntegrityError(f"dataset {dataset} opened to {got.size} bytes, not {size}")
