"""An organisation's key pair set and the file that keeps it.

Each organisation holds an Ed25519 signing key (transactions, block headers,
attestations, API requests) and an X25519 encryption key (data keys are
wrapped to it). Both live in one JSON key file readable by its owner only
(mode 0600). Loading refuses a file that others can read, and every failure
names the file and says how to fix it.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sharechain.crypto.signing import KeyId, SigningKey, key_id
from sharechain.errors import ConfigError

__all__ = ["KEYFILE_VERSION", "OrgKeys", "load_keys", "save_keys"]

KEYFILE_VERSION = 1


def _x25519_public(private: bytes) -> bytes:
    return (
        X25519PrivateKey.from_private_bytes(private)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


@dataclass(frozen=True, slots=True)
class OrgKeys:
    """The private keys of one organisation."""

    org: str
    """The organisation's id (a lowercase slug)."""
    signing: SigningKey
    """Ed25519 key that signs everything the organisation sends."""
    encryption_private: bytes
    """X25519 private key (32 bytes) that data keys are wrapped to."""
    encryption_public: bytes
    """The matching X25519 public key."""

    @classmethod
    def generate(cls, org: str, rng: Callable[[int], bytes] = os.urandom) -> OrgKeys:
        private = rng(32)
        return cls(org, SigningKey.generate(rng), private, _x25519_public(private))

    @classmethod
    def from_secrets(cls, org: str, seed: bytes, encryption_private: bytes) -> OrgKeys:
        return cls(
            org,
            SigningKey.from_seed(seed),
            encryption_private,
            _x25519_public(encryption_private),
        )

    @property
    def sign_key_id(self) -> KeyId:
        return self.signing.key_id

    @property
    def encryption_key_id(self) -> KeyId:
        return key_id(self.encryption_public)

    def __repr__(self) -> str:
        return f"OrgKeys(org={self.org!r}, sign_key_id={self.sign_key_id.hex()[:16]}...)"


def save_keys(keys: OrgKeys, path: Path) -> None:
    """Write `keys` to `path` with mode 0600, atomically (temp file, fsync, rename)."""
    body = {
        "version": KEYFILE_VERSION,
        "org": keys.org,
        "ed25519_seed": keys.signing.seed.hex(),
        "x25519_private": keys.encryption_private.hex(),
        "ed25519_public": keys.signing.public_key.hex(),
        "x25519_public": keys.encryption_public.hex(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (json.dumps(body, indent=2) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_keys(path: Path) -> OrgKeys:
    """Read a key file, refusing missing, corrupt or group/world-readable files."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(
            f"key file {path} does not exist: create the organisation with "
            "`sharechain init` or copy its key file into the data directory"
        ) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"key file {path} is readable by other users (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run `chmod 600 {path}`"
        )
    try:
        body = json.loads(path.read_text())
        if not isinstance(body, dict):
            raise ValueError("the file does not hold a JSON object")
        if body.get("version") != KEYFILE_VERSION:
            raise ValueError(f"unsupported key file version {body.get('version')!r}")
        seed = bytes.fromhex(body["ed25519_seed"])
        enc = bytes.fromhex(body["x25519_private"])
        keys = OrgKeys.from_secrets(str(body["org"]), seed, enc)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"key file {path} is corrupt ({exc}); restore it from a backup "
            "(a lost key must be replaced by rotating to a new one)"
        ) from None
    if "ed25519_public" in body and body["ed25519_public"] != keys.signing.public_key.hex():
        raise ConfigError(f"key file {path} is corrupt: public key does not match the seed")
    return keys
