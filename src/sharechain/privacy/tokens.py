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

A column is tokenised by the C extension `sharechain.crypto._tokens` when it
was built (it reads the Arrow array's buffers and hashes without the
interpreter lock); otherwise by hashlib here. Both give the same tokens, byte
for byte (tested against `hashlib.blake2b` and `hmac`).
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sharechain import codec

try:
    from sharechain.crypto import _tokens as _native

    _NATIVE = True
except ImportError:  # built without a C compiler: hashlib, same tokens
    _NATIVE = False

__all__ = [
    "KEY_SIZE",
    "NATIVE",
    "TOKEN_SIZE",
    "TokenKey",
    "derive_token_key",
    "tokenize",
    "tokenize_array",
]

NATIVE: Final[bool] = _NATIVE
"""Whether columns are tokenised by the C extension (same tokens either way)."""

KEY_SIZE: Final = 32
"""Bytes of a tokenisation key."""
TOKEN_SIZE: Final = 16
"""Bytes of a token before hex encoding (128 bits: collisions are negligible)."""
_SALT: Final = b"sharechain/mask-token/v1"
_SAMPLE: Final = 4096
"""Values looked at to decide whether a column repeats."""


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


def _hasher(key: bytes, algorithm: str) -> Callable[[bytes], bytes]:
    """One value's token as raw bytes.

    The keyed state is set up once and copied per value, which halves the cost
    of a million calls (a new keyed hasher per value spends most of its time on
    the key).
    """
    if algorithm == "blake2b":
        keyed = hashlib.blake2b(key=key, digest_size=TOKEN_SIZE).copy

        def blake(data: bytes) -> bytes:
            h = keyed()
            h.update(data)
            return h.digest()

        return blake

    # HMAC as RFC 2104 defines it, H((K ^ opad) || H((K ^ ipad) || m)), with the
    # two padded-key blocks hashed once; `hmac.digest` agrees (tested).
    block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block)).copy
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block)).copy

    def hmac_sha256(data: bytes) -> bytes:
        i = inner()
        i.update(data)
        o = outer()
        o.update(i.digest())
        return o.digest()[:TOKEN_SIZE]

    return hmac_sha256


def tokenize(key: bytes, value: str, algorithm: str = "blake2b") -> str:
    """The token of one value (its UTF-8 bytes) under `key`."""
    return _hasher(key, algorithm)(value.encode()).hex()


def _hex_strings(digests: bytes, n: int) -> pa.Array:
    """`n` concatenated digests as a string array of hex tokens, without a Python loop."""
    text = binascii.hexlify(digests)
    offsets = np.arange(0, 2 * TOKEN_SIZE * (n + 1), 2 * TOKEN_SIZE, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))


def _digests(key: bytes, algorithm: str, values: list[bytes]) -> bytes:
    """The raw tokens of `values`, concatenated.

    The loop is written out rather than mapped over `_hasher`: at a million
    values a Python call per value is a fifth of the time.
    """
    if algorithm != "blake2b":
        return b"".join(map(_hasher(key, algorithm), values))
    keyed = hashlib.blake2b(key=key, digest_size=TOKEN_SIZE).copy
    out: list[bytes] = []
    append = out.append
    for data in values:
        h = keyed()
        h.update(data)
        append(h.digest())
    return b"".join(out)


def _native_hex(key: bytes, algorithm: str, text: pa.Array) -> bytes:
    """The hex tokens of every value of a string array, concatenated, from its buffers.

    A null's slot is hashed as whatever bytes it spans (usually none); its token
    is put back to null by the caller.
    """
    wide = pa.types.is_large_string(text.type)
    size = 8 if wide else 4
    offsets, data = text.buffers()[1:3]
    assert offsets is not None
    offsets = offsets.slice(text.offset * size, (len(text) + 1) * size)
    return _native.hex_tokens(key, algorithm, offsets, data if data is not None else b"", wide)


def _tokens(key: bytes, algorithm: str, text: pa.Array, *, native: bool = NATIVE) -> pa.Array:
    """Tokens of every value of a string array (nulls hashed as empty, then put back)."""
    if native and len(key) <= 64:
        hexed = _native_hex(key, algorithm, text)
        offsets = np.arange(0, 2 * TOKEN_SIZE * (len(text) + 1), 2 * TOKEN_SIZE, dtype=np.int32)
        tokens = pa.StringArray.from_buffers(len(text), pa.py_buffer(offsets), pa.py_buffer(hexed))
    else:
        values = pc.cast(pc.fill_null(text, ""), pa.binary()).to_pylist()
        tokens = _hex_strings(_digests(key, algorithm, values), len(values))
    if text.null_count:
        tokens = pc.if_else(pc.is_valid(text), tokens, pa.scalar(None, pa.string()))
    return tokens


def tokenize_array(
    key: bytes, values: pa.Array, algorithm: str = "blake2b", *, native: bool = NATIVE
) -> pa.Array:
    """Tokens of a column (values in their text form); nulls stay null.

    A column that repeats (names, cities) has each distinct value hashed once;
    one of mostly distinct values (identifiers) is hashed value by value,
    sparing the cost of building a dictionary that saves nothing. `native`
    False forces the hashlib path (the tests compare the two).
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
    sample = text.slice(0, _SAMPLE)
    if len(sample) and pc.count_distinct(sample).as_py() > len(sample) // 2:
        return _tokens(key, algorithm, text, native=native)
    encoded = pc.dictionary_encode(text)
    return pc.take(_tokens(key, algorithm, encoded.dictionary, native=native), encoded.indices)
