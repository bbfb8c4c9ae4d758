"""Streaming authenticated encryption of payloads: the data plane's AEAD.

A payload of any size is cut into fixed-size *segments* and each segment is
sealed with AES-256-GCM. The nonce of a segment is its index and a flag saying
whether it is the last one, so a reader notices any segment that was dropped,
repeated, moved or cut off, and anything appended after the last one (the
STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár, 2015). At most 16
segments (and 16 MiB beyond two) are held in memory, whatever the payload's size.

Layout (all integers big-endian; see ``docs/data-plane.md``)::

    header   version (1) | key epoch (8) | segment size (4) | salt (32)   = 45 bytes
    segment  AES-256-GCM(subkey, nonce(i, last), plaintext_i, aad=header) = len_i + 16

The data key is never used with AES-GCM directly: every stream derives its own
``subkey = HKDF-SHA256(ikm=data key, salt=salt, info=label || header)`` from a
fresh 256-bit salt, so one data key can seal any number of streams without a
random-nonce birthday bound, and the per-segment nonce can be the plain counter
``0^7 || index (4) || last (1)``. The header is also the associated data of every
segment, so a changed version, epoch, segment size or salt fails like a flipped
bit in the data would.

Sealing and opening both produce :class:`StreamDigests`: SHA-256 of the
plaintext, SHA-256 of the whole ciphertext (header included, hence equal to the
blob store's address of it) and the RFC 6962 Merkle root over the SHA-256 of
each ciphertext segment, which lets a single segment be proved to belong to a
registered payload (`sharechain.crypto.segment_tree`). Writing, the two running
digests and the segment digests run on worker threads (`sharechain.crypto._pipeline`;
hashing and file writes release the GIL), overlapping the reading and sealing of the
next segments; the digests are computed two streams at a time
(`sharechain.crypto.digests`). An opener that checks the segment root against a
trusted record may skip the whole-stream digest (``ciphertext_sha256=False``).

Decryption authenticates each segment before writing it; a failure raises the
single opaque :class:`~sharechain.errors.DecryptionError`. Segments written
before a failure were authentic but the stream as a whole is not: write to a
temporary place and keep the output only when decryption returns.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, Final, Literal, overload

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sharechain.crypto._pipeline import Pipeline, Totals, write_all
from sharechain.crypto.segment_tree import (
    Digest,
    inclusion_proof,
    merkle_root,
    verify_inclusion,
)
from sharechain.errors import ConfigError, DecryptionError, IntegrityError

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "KEY_SIZE",
    "MAX_SEGMENT_SIZE",
    "TAG_SIZE",
    "Digest",
    "StreamDigests",
    "StreamHeader",
    "decrypt_bytes",
    "decrypt_stream",
    "encrypt_bytes",
    "encrypt_stream",
    "inclusion_proof",
    "merkle_root",
    "parse_header",
    "sealed_size",
    "segment_digests",
    "segment_offset",
    "verify_inclusion",
]

FORMAT_VERSION: Final = 1
DEFAULT_SEGMENT_SIZE: Final = 1 << 20
MAX_SEGMENT_SIZE: Final = 1 << 24
"""Upper bound on the segment size, so a forged header cannot make a reader allocate much."""
KEY_SIZE: Final = 32
TAG_SIZE: Final = 16
SALT_SIZE: Final = 32
MAX_SEGMENTS: Final = 1 << 32
"""The index is four bytes in the nonce; at 1 MiB segments this caps a stream at 4 PiB."""

_HEADER = struct.Struct(">BQI32s")
HEADER_SIZE: Final = _HEADER.size
_KDF_LABEL = b"sharechain/stream/v1/aes-256-gcm"
_NONCE_PAD = bytes(7)
_MAX_SLOTS = 16
"""At most this many segments in flight: one being read and sealed, the others being hashed."""
_IN_FLIGHT_BYTES = 16 << 20
"""Plaintext bytes in flight at most (beyond the minimum of two segments), bounding memory."""
_PARALLEL_MIN_SEGMENT = 64 * 1024
"""Below this segment size, handing hashes to threads costs more than it saves."""


@dataclass(frozen=True, slots=True)
class StreamHeader:
    """The authenticated header at the start of every sealed stream."""

    version: int
    """Format version; only ``FORMAT_VERSION`` is understood."""
    epoch: int
    """Key epoch of the dataset whose data key sealed the stream (unsigned 64-bit)."""
    segment_size: int
    """Plaintext bytes per segment; every segment but the last is exactly this long."""
    salt: bytes
    """32 random bytes from which the per-stream subkey is derived."""

    def encode(self) -> bytes:
        """The 45 header bytes as they appear on the wire."""
        return _HEADER.pack(self.version, self.epoch, self.segment_size, self.salt)


@dataclass(frozen=True, slots=True)
class StreamDigests:
    """What the chain records about a sealed payload; identical when sealing and opening."""

    plaintext_sha256: Digest
    """SHA-256 of the plaintext."""
    ciphertext_sha256: Digest
    """SHA-256 of the whole sealed stream, header included (its blob address).

    Empty when the stream was opened with ``ciphertext_sha256=False``."""
    segment_root: Digest
    """RFC 6962 Merkle root over the SHA-256 of each ciphertext segment, tag included."""
    size: int
    """Plaintext length in bytes."""
    segment_count: int
    """Number of segments; at least 1 (an empty payload is one empty final segment)."""


def parse_header(data: bytes) -> StreamHeader:
    """Decode a stream header; raises `DecryptionError` if it is not one this version reads."""
    if len(data) != HEADER_SIZE:
        raise DecryptionError()
    version, epoch, segment_size, salt = _HEADER.unpack(data)
    if version != FORMAT_VERSION or not 1 <= segment_size <= MAX_SEGMENT_SIZE:
        raise DecryptionError()
    return StreamHeader(version, epoch, segment_size, salt)


def sealed_size(plain_size: int, segment_size: int) -> int:
    """Bytes of the sealed stream of a `plain_size`-byte payload in `segment_size` segments:
    the header, the payload, and a tag per segment (an empty payload is one empty segment)."""
    segments = max(1, -(-plain_size // segment_size))
    return HEADER_SIZE + plain_size + segments * TAG_SIZE


def segment_offset(segment_size: int, index: int) -> int:
    """Byte offset of segment ``index`` in a sealed stream (for range reads)."""
    return HEADER_SIZE + index * (segment_size + TAG_SIZE)


# --- sealing and opening ----------------------------------------------------------------------


@overload
def encrypt_stream(
    key: bytes,
    src: BinaryIO,
    dst: BinaryIO,
    *,
    epoch: int,
    segment_size: int = ...,
    rng: Callable[[int], bytes] = ...,
    digests: Literal[True] = ...,
) -> StreamDigests: ...
@overload
def encrypt_stream(
    key: bytes,
    src: BinaryIO,
    dst: BinaryIO,
    *,
    epoch: int,
    segment_size: int = ...,
    rng: Callable[[int], bytes] = ...,
    digests: Literal[False],
) -> None: ...
def encrypt_stream(
    key: bytes,
    src: BinaryIO,
    dst: BinaryIO,
    *,
    epoch: int,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    rng: Callable[[int], bytes] = os.urandom,
    digests: bool = True,
) -> StreamDigests | None:
    """Seal everything ``src`` yields into ``dst`` under the 32-byte data ``key``.

    With ``digests=False`` no SHA-256 is computed and nothing is returned: for callers
    that record no fingerprints (the AEAD benchmark, scratch copies).
    """
    _check_key(key)
    if not 0 <= epoch < 1 << 64:
        raise ConfigError(f"key epoch must fit in 64 unsigned bits, got {epoch}")
    if not 1 <= segment_size <= MAX_SEGMENT_SIZE:
        raise ConfigError(f"segment size must be in 1..{MAX_SEGMENT_SIZE}, got {segment_size}")
    salt = rng(SALT_SIZE)
    if len(salt) != SALT_SIZE:
        raise ConfigError(f"rng returned {len(salt)} bytes, expected {SALT_SIZE}")
    header = StreamHeader(FORMAT_VERSION, epoch, segment_size, salt).encode()
    aead = AESGCM(_subkey(key, header))
    write_all(dst, header)
    # One spare byte per read: finding one more byte is how a segment learns it is not last.
    plain = _Buffers(segment_size + 1)
    sealed = _Buffers(segment_size + TAG_SIZE)
    slots = _slot_count(segment_size)
    parallel = segment_size >= _PARALLEL_MIN_SEGMENT
    with Pipeline(dst, header, parallel=parallel, digests=digests) as pipeline:
        carry: int | None = None
        index = 0
        last = False
        while not last:
            slot = index % slots
            pipeline.drain(keep=slots - 1)
            got = _fill(src, plain[slot], carry)
            last = got <= segment_size
            length = got if last else segment_size
            carry = None if last else plain[slot][segment_size]
            if index >= MAX_SEGMENTS:
                raise ConfigError("payload too large for this segment size: use larger segments")
            pt = memoryview(plain[slot])[:length]
            ct = memoryview(sealed[slot])[: length + TAG_SIZE]
            aead.encrypt_into(_nonce(index, last), pt, header, ct)
            pipeline.add(pt, ct, out=ct)
            index += 1
        return _record(pipeline.finish())


@overload
def decrypt_stream(
    key: bytes,
    src: BinaryIO,
    dst: BinaryIO,
    *,
    expected_epoch: int | None = ...,
    digests: Literal[True] = ...,
    ciphertext_sha256: bool = ...,
) -> StreamDigests: ...
@overload
def decrypt_stream(
    key: bytes,
    src: BinaryIO,
    dst: BinaryIO,
    *,
    expected_epoch: int | None = ...,
    digests: Literal[False],
    ciphertext_sha256: bool = ...,
) -> None: ...
def decrypt_stream(
    key: bytes,
    src: BinaryIO,
    dst: BinaryIO,
    *,
    expected_epoch: int | None = None,
    digests: bool = True,
    ciphertext_sha256: bool = True,
) -> StreamDigests | None:
    """Open a sealed stream from ``src`` into ``dst``; any tampering raises `DecryptionError`.

    ``expected_epoch``, when given, must match the header's key epoch. With
    ``digests=False`` nothing is hashed and nothing returned (authenticity still holds:
    every segment's tag is checked; only the fingerprints are skipped).

    With ``ciphertext_sha256=False`` the SHA-256 of the whole stream is not computed (one
    pass of three) and the record's ``ciphertext_sha256`` is empty. For callers that
    compare ``segment_root`` with a trusted record: a matching root pins every segment,
    and the header is pinned by the segments' tags (it is their associated data and keys
    their subkey), so the stream is the one whose whole-stream digest that record names.
    """
    _check_key(key)
    header = _read_exact(src, HEADER_SIZE)
    parsed = parse_header(header)
    if expected_epoch is not None and parsed.epoch != expected_epoch:
        raise DecryptionError()
    aead = AESGCM(_subkey(key, header))
    chunk = parsed.segment_size + TAG_SIZE
    sealed = _Buffers(chunk + 1)
    plain = _Buffers(parsed.segment_size)
    slots = _slot_count(parsed.segment_size)
    parallel = parsed.segment_size >= _PARALLEL_MIN_SEGMENT
    with Pipeline(
        dst, header, parallel=parallel, digests=digests, whole_stream=ciphertext_sha256
    ) as pipeline:
        carry: int | None = None
        index = 0
        last = False
        while not last:
            slot = index % slots
            pipeline.drain(keep=slots - 1)
            got = _fill(src, sealed[slot], carry)
            last = got <= chunk
            length = got if last else chunk
            carry = None if last else sealed[slot][chunk]
            if length < TAG_SIZE or index >= MAX_SEGMENTS:
                raise DecryptionError()
            ct = memoryview(sealed[slot])[:length]
            pt = memoryview(plain[slot])[: length - TAG_SIZE]
            try:
                aead.decrypt_into(_nonce(index, last), ct, header, pt)
            except InvalidTag:
                pt[:] = bytes(len(pt))  # never leave unauthenticated plaintext lying around
                raise DecryptionError() from None
            pipeline.add(pt, ct, out=pt)  # only once authenticated
            index += 1
        return _record(pipeline.finish())


def encrypt_bytes(
    key: bytes,
    plaintext: bytes,
    *,
    epoch: int,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    rng: Callable[[int], bytes] = os.urandom,
) -> tuple[bytes, StreamDigests]:
    """Seal a small in-memory payload; returns the sealed bytes and their digests."""
    out = io.BytesIO()
    digests = encrypt_stream(
        key, io.BytesIO(plaintext), out, epoch=epoch, segment_size=segment_size, rng=rng
    )
    return out.getvalue(), digests


def decrypt_bytes(key: bytes, ciphertext: bytes, *, expected_epoch: int | None = None) -> bytes:
    """Open a small in-memory sealed payload; raises `DecryptionError` on any tampering."""
    out = io.BytesIO()
    decrypt_stream(key, io.BytesIO(ciphertext), out, expected_epoch=expected_epoch)
    return out.getvalue()


def _slot_count(segment_size: int) -> int:
    """Segments in flight: enough to keep the hashing threads busy, within a memory bound."""
    return max(2, min(_MAX_SLOTS, _IN_FLIGHT_BYTES // segment_size))


class _Buffers:
    """Reusable segment buffers, allocated on first use (a one-segment payload needs one)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._buffers: list[bytearray] = []

    def __getitem__(self, slot: int) -> bytearray:
        while len(self._buffers) <= slot:
            self._buffers.append(bytearray(self._size))
        return self._buffers[slot]


def _record(totals: Totals | None) -> StreamDigests | None:
    return None if totals is None else StreamDigests(*totals)


def _check_key(key: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise ConfigError(f"data key must be {KEY_SIZE} bytes, got {len(key)}")


def _subkey(key: bytes, header: bytes) -> bytes:
    salt = header[-SALT_SIZE:]
    hkdf = HKDF(hashes.SHA256(), KEY_SIZE, salt=salt, info=_KDF_LABEL + header)
    return hkdf.derive(key)


def _nonce(index: int, last: bool) -> bytes:
    return _NONCE_PAD + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _fill(src: BinaryIO, buf: bytearray, carry: int | None) -> int:
    """Fill ``buf`` from ``src`` (after the carried byte, if any); returns the bytes held."""
    view = memoryview(buf)
    pos = 0
    if carry is not None:
        buf[0] = carry
        pos = 1
    readinto = getattr(src, "readinto", None)
    while pos < len(buf):
        if readinto is not None:
            got = readinto(view[pos:])
        else:
            data = src.read(len(buf) - pos)
            got = len(data)
            view[pos : pos + got] = data
        if not got:
            break
        pos += got
    return pos


def _read_exact(src: BinaryIO, size: int) -> bytes:
    buf = bytearray(size)
    if _fill(src, buf, None) != size:
        raise DecryptionError()
    return bytes(buf)


def segment_digests(src: BinaryIO) -> tuple[Digest, ...]:
    """SHA-256 of each ciphertext segment of a sealed stream, read without the key.

    Used to build inclusion proofs; says nothing about authenticity (the root does,
    once compared with the one on the chain). A malformed stream raises `IntegrityError`.
    """
    try:
        parsed = parse_header(_read_exact(src, HEADER_SIZE))
    except DecryptionError:
        raise IntegrityError("not a sealed sharechain stream") from None
    chunk = parsed.segment_size + TAG_SIZE
    digests: list[bytes] = []
    buf = bytearray(chunk)
    while True:
        got = _fill(src, buf, None)
        if got < TAG_SIZE and (got or not digests):
            raise IntegrityError("sealed stream ends inside a segment")
        if got == 0:
            break
        digests.append(hashlib.sha256(memoryview(buf)[:got]).digest())
        if got < chunk:
            break
    return tuple(digests)
