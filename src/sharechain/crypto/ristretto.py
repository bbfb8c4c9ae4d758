"""The ristretto255 prime-order group (RFC 9496), from libsodium through pysodium.

The OPRF of the private set intersection, the Pedersen commitments of secure
aggregation and the range proofs all compute in one group of prime order
``ORDER``: ristretto255, built on Curve25519 so that every valid 32-byte encoding
names exactly one group element and there is no cofactor to worry about.

This module is a thin typed layer over libsodium's ``crypto_core_ristretto255_*``
and ``crypto_scalarmult_ristretto255*`` functions:

- a *scalar* is a Python ``int`` in ``[0, ORDER)``, encoded as 32 bytes little-endian;
- a *point* is its canonical 32-byte encoding (``bytes``); ``IDENTITY`` is all zeros.

Points that arrive from elsewhere go through `decode_point`, which asks
libsodium's own validity function and refuses the identity element: a peer
that sends the identity could otherwise force a known result (``k * 0 = 0``).
The arithmetic functions trust their inputs (they were decoded or computed here)
and may return the identity, for instance ``mul(0, P)``.

`hash_to_group` is ``hash_to_ristretto255`` of RFC 9380 (``expand_message_xmd``
with SHA-512 to 64 bytes, then libsodium's one-way map), `hash_to_scalar` the
matching reduction of 64 uniform bytes modulo ``ORDER``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Final

import pysodium

from sharechain.errors import ConfigError, EncodingError

__all__ = [
    "GENERATOR",
    "IDENTITY",
    "ORDER",
    "POINT_SIZE",
    "SCALAR_SIZE",
    "InvalidPointError",
    "Point",
    "Scalar",
    "add",
    "base_mul",
    "decode_point",
    "decode_scalar",
    "encode_scalar",
    "expand_message_xmd",
    "hash_to_group",
    "hash_to_scalar",
    "mul",
    "neg",
    "random_scalar",
    "sub",
]

Scalar = int
"""An integer modulo the group order, in ``[0, ORDER)``."""
Point = bytes
"""The canonical 32-byte encoding of a ristretto255 element."""

ORDER: Final = 2**252 + 27742317777372353535851937790883648493
POINT_SIZE: Final = 32
SCALAR_SIZE: Final = 32
IDENTITY: Final = bytes(POINT_SIZE)
_SHA512_BLOCK = 128
_SHA512_OUT = 64


class InvalidPointError(EncodingError):
    """Bytes received as a group element are not a valid ristretto255 point, or are the identity.

    The sender is faulty or hostile: drop its message and tell it to resend.
    """


def decode_point(data: bytes, what: str = "point") -> Point:
    """Check that ``data`` is a valid ristretto255 encoding other than the identity."""
    if len(data) != POINT_SIZE:
        raise InvalidPointError(f"{what} must be {POINT_SIZE} bytes, got {len(data)}")
    if not pysodium.crypto_core_ristretto255_is_valid_point(data):
        raise InvalidPointError(f"{what} is not a valid ristretto255 encoding")
    if data == IDENTITY:
        raise InvalidPointError(f"{what} is the identity element, which is never accepted")
    return bytes(data)


def encode_scalar(s: Scalar) -> bytes:
    """32 bytes little-endian; ``s`` must already be reduced."""
    return s.to_bytes(SCALAR_SIZE, "little")


def decode_scalar(data: bytes, what: str = "scalar") -> Scalar:
    """Parse a canonical (fully reduced) 32-byte little-endian scalar."""
    if len(data) != SCALAR_SIZE:
        raise EncodingError(f"{what} must be {SCALAR_SIZE} bytes, got {len(data)}")
    value = int.from_bytes(data, "little")
    if value >= ORDER:
        raise EncodingError(f"{what} is not reduced modulo the group order")
    return value


def random_scalar(rng: Callable[[int], bytes] = os.urandom) -> Scalar:
    """A uniform non-zero scalar: 64 random bytes reduced modulo the order (bias < 2^-250)."""
    while True:
        data = rng(64)
        if len(data) != 64:
            raise ConfigError("rng returned too few bytes")
        value = int.from_bytes(data, "little") % ORDER
        if value:
            return value


def neg(p: Point) -> Point:
    """``-P``."""
    return sub(IDENTITY, p)


def add(p: Point, q: Point) -> Point:
    """``P + Q``."""
    return bytes(pysodium.crypto_core_ristretto255_add(p, q))


def sub(p: Point, q: Point) -> Point:
    """``P - Q``."""
    return bytes(pysodium.crypto_core_ristretto255_sub(p, q))


def mul(s: Scalar, p: Point) -> Point:
    """``s * P``, the identity when either is zero."""
    if s == 0 or p == IDENTITY:
        return IDENTITY
    try:
        return bytes(pysodium.crypto_scalarmult_ristretto255(encode_scalar(s), p))
    except ValueError:
        # libsodium signals an identity result (or an invalid P, which callers rule
        # out by decoding first) with -1; in a prime-order group s*P = 0 only if s = 0.
        return IDENTITY


def base_mul(s: Scalar) -> Point:
    """``s * G`` with libsodium's precomputed table for the standard generator."""
    if s == 0:
        return IDENTITY
    return bytes(pysodium.crypto_scalarmult_ristretto255_base(encode_scalar(s)))


GENERATOR: Final = base_mul(1)
"""The standard ristretto255 generator ``G``."""


def expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """``expand_message_xmd`` of RFC 9380 section 5.3.1 with SHA-512."""
    if len(dst) > 255:
        # RFC 9380 5.3.3: oversized tags are hashed first.
        dst = hashlib.sha512(b"H2C-OVERSIZE-DST-" + dst).digest()
    blocks = -(-length // _SHA512_OUT)
    if blocks > 255 or length > 65535:
        raise ConfigError(f"expand_message_xmd cannot produce {length} bytes")
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha512(
        bytes(_SHA512_BLOCK) + msg + length.to_bytes(2, "big") + b"\x00" + dst_prime
    ).digest()
    out = hashlib.sha512(b0 + b"\x01" + dst_prime).digest()
    previous = out
    for i in range(2, blocks + 1):
        mixed = bytes(a ^ b for a, b in zip(b0, previous, strict=True))
        previous = hashlib.sha512(mixed + bytes([i]) + dst_prime).digest()
        out += previous
    return out[:length]


def hash_to_group(msg: bytes, dst: bytes) -> Point:
    """``hash_to_ristretto255`` of RFC 9380 appendix B under the domain tag ``dst``."""
    uniform = expand_message_xmd(msg, dst, 64)
    return bytes(pysodium.crypto_core_ristretto255_from_hash(uniform))


def hash_to_scalar(msg: bytes, dst: bytes) -> Scalar:
    """64 bytes of ``expand_message_xmd`` read little-endian, reduced modulo the order."""
    return int.from_bytes(expand_message_xmd(msg, dst, 64), "little") % ORDER
