"""Tokenisation: keyed pseudonyms that only the data owner can link back.

A token is a keyed hash of the value: BLAKE2b in its keyed mode (RFC 7693,
section 2.5) or HMAC-SHA-256 (RFC 2104), cut to 128 bits and written as 32
hexadecimal digits. Equal values get equal tokens within one release, so a
grantee can still count and join *inside* its copy; without the key nobody can
compute the token of a guessed value, so a dictionary of names or patient
numbers does not reverse it.

The key is never reused across releases. From the owner's secret it is derived
with HKDF-SHA-256 (RFC 5869)::

    key = HKDF-SHA-256(ikm = owner secret, salt = "sharechain/mask-token/v1",
                       info = canonical CBOR of [dataset, grantee, key epoch],
                       length = 32)

so two grantees of the same dataset cannot join their copies on tokens, and a
grantee whose access was revoked (the dataset moved to a new key epoch) finds
that the next release's tokens match nothing it kept. The owner, who holds the
secret, re-derives the key and re-identifies by tokenising its own values.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sharechain import codec

__all__ = ["KEY_SIZE", "TOKEN_SIZE", "TokenKey", "derive_token_key", "tokenize", "tokenize_array"]

KEY_SIZE: Final = 32
"""Bytes of a tokenisation key."""
TOKEN_SIZE: Final = 16
"""Bytes of a token before hex encoding (128 bits: collisions are negligible)."""
_SALT: Final = b"sharechain/mask-token/v1"


@dataclass(frozen=True, slots=True)
class TokenKey:
    """The key of one release: one dataset, one grantee, one key epoch."""

    dataset: str
    """The dataset released."""
    grantee: str
    """The organisation receiving the release."""
    epoch: int
    """The dataset's key epoch at release time."""
    key: bytes
    """32 secret bytes."""

    def __repr__(self) -> str:
        return f"TokenKey({self.dataset!r}, {self.grantee!r}, {self.epoch}, key=<secret>)"


def derive_token_key(owner_secret: bytes, dataset: str, grantee: str, epoch: int) -> TokenKey:
    """The tokenisation key for (dataset, grantee, epoch) from the owner's secret."""
    if len(owner_secret) < KEY_SIZE:
        raise ValueError(f"the owner secret must have at least {KEY_SIZE} bytes")
    info = codec.encode([dataset, grantee, epoch])
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=_SALT, info=info)
    return TokenKey(dataset, grantee, epoch, hkdf.derive(owner_secret))


def _hasher(key: bytes, algorithm: str) -> Callable[[bytes], str]:
    if algorithm == "blake2b":

        def blake(data: bytes) -> str:
            return hashlib.blake2b(data, key=key, digest_size=TOKEN_SIZE).hexdigest()

        return blake

    def hmac_sha256(data: bytes) -> str:
        return hmac.digest(key, data, "sha256")[:TOKEN_SIZE].hex()

    return hmac_sha256


def tokenize(key: bytes, value: str, algorithm: str = "blake2b") -> str:
    """The token of one value (its UTF-8 bytes) under `key`."""
    return _hasher(key, algorithm)(value.encode())


def tokenize_array(key: bytes, values: pa.Array, algorithm: str = "blake2b") -> pa.Array:
    """Tokens of a column (values in their text form); nulls stay null.

    Each distinct value is hashed once: real columns repeat (names, cities),
    and the Python call per hash is the cost.
    """
    text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
    encoded = pc.dictionary_encode(text)
    digest = _hasher(key, algorithm)
    tokens = pa.array([digest(v.encode()) for v in encoded.dictionary.to_pylist()], pa.string())
    return pc.take(tokens, encoded.indices)
