"""SHA-256 of two things at once: the data plane's hashing primitive.

A single SHA-256 stream is a chain of dependent steps, so even with the CPU's SHA
instructions it runs at their latency, not their throughput: about 1.7 GB/s on the
reference machine, OpenSSL included. Two independent streams interleaved fill each
other's gaps and reach about 2.5 GB/s together. Sealing and opening always have pairs
to hash (a segment's plaintext and ciphertext into their running digests, or two
segments into their Merkle leaves), so this module offers exactly that:

- `new` makes a running hasher (``update``, ``digest``, ``copy``, as hashlib's);
- `update2` advances two of them, interleaved;
- `sha256_pair` digests two buffers side by side.

The results are plain SHA-256. The interleaving lives in the small C extension
``sharechain.crypto._sha256x``, built at install time; `ACCELERATED` says whether it
is in use. Without it (no compiler at install, a CPU without the SHA extensions,
another architecture) the same functions run on hashlib, one stream after the other.
All of them release the GIL while hashing large inputs.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer as Buffer

__all__ = ["ACCELERATED", "Hasher", "new", "sha256_pair", "update2"]


class Hasher(Protocol):
    """A running SHA-256 (hashlib's, or the extension's)."""

    def update(self, data: Buffer, /) -> None: ...

    def digest(self) -> bytes: ...


try:
    from sharechain.crypto import _sha256x

    _ACCELERATED = _sha256x.ACCELERATED
except ImportError:  # built without a C compiler: hashlib alone
    _ACCELERATED = False

ACCELERATED: Final[bool] = _ACCELERATED
"""Whether pairs are hashed interleaved with the CPU's SHA instructions."""


def new(data: Buffer = b"") -> Hasher:
    """A running SHA-256 that `update2` can advance in pairs."""
    if ACCELERATED:
        return _sha256x.Sha256(data)
    return hashlib.sha256(data)


def update2(a: Hasher, data_a: Buffer, b: Hasher, data_b: Buffer) -> None:
    """``a.update(data_a)`` and ``b.update(data_b)``; interleaved when both came from `new`."""
    if ACCELERATED and isinstance(a, _sha256x.Sha256) and isinstance(b, _sha256x.Sha256):
        _sha256x.update2(a, data_a, b, data_b)
        return
    a.update(data_a)
    b.update(data_b)


def sha256_pair(x: Buffer, y: Buffer) -> tuple[bytes, bytes]:
    """``(SHA-256(x), SHA-256(y))``, computed side by side where the CPU allows."""
    if ACCELERATED:
        return _sha256x.sha256_pair(x, y)
    return hashlib.sha256(x).digest(), hashlib.sha256(y).digest()
