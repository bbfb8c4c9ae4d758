"""A data directory: where a consortium's chain and keys live on disk.

Layout (all under one directory, default `$SHARECHAIN_HOME` or `~/.sharechain`):

    consortium.json     name, genesis hash, founding organisations and roles
    genesis.cbor        block 0, the trust anchor
    genesis.note        the founders' signed note over the genesis hash (a checkpoint
                        of size 1), signed at creation since their keys may rotate
                        later; every export carries it (`docs/proofs.md` section 3)
    keys/<org>.key      private keys (mode 0600), one file per organisation held here
    ledger.db           the SQLite block store, world state and indexes (WAL)
    blobs/              content-addressed ciphertext blobs
    lock                serialises block production between processes

On the embedded default one directory holds the whole development
consortium: keys for every organisation, one ledger.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sharechain.crypto.keyfile import OrgKeys, load_keys, save_keys
from sharechain.errors import ConfigError
from sharechain.ledger.blocks import decode_block, encode_block
from sharechain.ledger.export_seal import genesis_note
from sharechain.ledger.genesis import Genesis, genesis_block
from sharechain.ledger.identities import Organisation, check_org_id

__all__ = ["GENESIS_NOTE", "DataDir", "OrgSpec", "default_data_dir", "init_consortium"]

CONFIG = "consortium.json"
GENESIS_NOTE = "genesis.note"


def default_data_dir() -> Path:
    env = os.environ.get("SHARECHAIN_HOME")
    return Path(env) if env else Path.home() / ".sharechain"


@dataclass(frozen=True, slots=True)
class OrgSpec:
    """A founding organisation to create."""

    id: str
    """Organisation id (slug)."""
    roles: tuple[str, ...]
    """Its roles."""
    name: str = ""
    """Display name."""


@dataclass(frozen=True, slots=True)
class DataDir:
    """An opened data directory."""

    path: Path
    """The directory."""
    consortium: str
    """Consortium name."""
    genesis_hash: bytes
    """Hash of block 0: the consortium's identity."""
    organisations: tuple[str, ...]
    """Founding organisation ids."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    """Node settings (e.g. block size)."""

    @classmethod
    def open(cls, path: Path) -> DataDir:
        cfg = path / CONFIG
        if not cfg.exists():
            raise ConfigError(
                f"{path} is not a sharechain data directory (no {CONFIG}); create one with "
                f"`sharechain init --data-dir {path} --member ORG --supervisor ORG`"
            )
        try:
            body = json.loads(cfg.read_text())
            return cls(
                path,
                body["consortium"],
                bytes.fromhex(body["genesis_hash"]),
                tuple(body["organisations"]),
                body.get("settings", {}),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{cfg} is corrupt ({exc}); restore it from a backup") from None

    def int_setting(self, name: str, default: int) -> int:
        """The `settings` entry `name` (a whole number of at least 0), else `default`."""
        value = self.settings.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(
                f"{self.path / CONFIG}: settings.{name} is {value!r}; give a whole number "
                "of at least 0, or remove it for the default"
            )
        return value

    @property
    def db_path(self) -> Path:
        return self.path / "ledger.db"

    @property
    def blob_dir(self) -> Path:
        return self.path / "blobs"

    @property
    def shred_marker(self) -> Path:
        """Present while the embedded default shreds what a block purged (see `Embedded`)."""
        return self.path / "shred-pending"

    @property
    def lock_path(self) -> Path:
        return self.path / "lock"

    def key_path(self, org: str) -> Path:
        return self.path / "keys" / f"{org}.key"

    def keys(self, org: str) -> OrgKeys:
        path = self.key_path(org)
        if not path.exists():
            held = sorted(p.stem for p in (self.path / "keys").glob("*.key"))
            raise ConfigError(
                f"no key file for organisation {org!r} in {self.path / 'keys'}; "
                f"this data directory holds keys for: {', '.join(held) or 'nobody'}"
            )
        keys = load_keys(path)
        if keys.org != org:
            raise ConfigError(f"key file {path} belongs to {keys.org!r}, not {org!r}")
        return keys

    def held_orgs(self) -> list[str]:
        return sorted(p.stem for p in (self.path / "keys").glob("*.key"))

    def genesis_bytes(self) -> bytes:
        try:
            return (self.path / "genesis.cbor").read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"{self.path / 'genesis.cbor'} is missing; restore it") from None

    def genesis_note(self) -> str:
        """The founders' signed genesis note, which every export carries."""
        try:
            return (self.path / GENESIS_NOTE).read_text("utf-8")
        except FileNotFoundError:
            raise ConfigError(
                f"{self.path / GENESIS_NOTE} is missing: copy it from the consortium's "
                "directory (the founders signed it at `sharechain init`)"
            ) from None

    def save_keys(self, keys: OrgKeys) -> None:
        save_keys(keys, self.key_path(keys.org))


def init_consortium(
    path: Path,
    orgs: Sequence[OrgSpec],
    *,
    consortium: str = "dev-consortium",
    governance: Mapping[str, Any] | None = None,
    now: Callable[[], float] = time.time,
    rng: Callable[[int], bytes] = os.urandom,
) -> DataDir:
    """Create keys and genesis for a development consortium in `path`."""
    if (path / CONFIG).exists():
        raise ConfigError(
            f"{path} already holds a consortium; choose another --data-dir or remove it"
        )
    if not orgs:
        raise ConfigError("a consortium needs at least one organisation (--member ORG)")
    ids = [check_org_id(o.id) for o in orgs]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"an organisation is listed twice: {ids}")
    path.mkdir(parents=True, exist_ok=True)
    keys = {o.id: OrgKeys.generate(o.id, rng) for o in orgs}
    genesis = Genesis(
        consortium,
        tuple(
            Organisation(
                o.id,
                o.roles,
                keys[o.id].signing.public_key,
                keys[o.id].encryption_public,
                name=o.name,
            )
            for o in orgs
        ),
        dict(governance or {}),
        int(now() * 1000),
    )
    block = genesis_block(genesis)
    for k in keys.values():
        save_keys(k, path / "keys" / f"{k.org}.key")
    (path / "genesis.cbor").write_bytes(encode_block(block))
    founders = {k.org: k.signing for k in keys.values()}
    (path / GENESIS_NOTE).write_text(genesis_note(block.hash(), founders), "utf-8")
    body = {
        "consortium": consortium,
        "genesis_hash": block.hash().hex(),
        "organisations": ids,
        "roles": {o.id: list(o.roles) for o in orgs},
    }
    tmp = path / (CONFIG + ".tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n")
    os.replace(tmp, path / CONFIG)
    decode_block(encode_block(block))  # the file we wrote must read back
    return DataDir.open(path)
