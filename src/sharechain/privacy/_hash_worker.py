"""A process that hashes tokens in bulk: `python -m sharechain.privacy._hash_worker`.

Hashing one value at a time from Python holds the interpreter lock for about
0.43 µs a value, the longest part of masking a large table; in a process of
its own it runs on another core while the masking process goes on. It
imports nothing heavy, so it starts in a few tens of milliseconds.

The protocol on stdin/stdout, repeated until stdin closes: a request is a
header (`<IIII`: key length, algorithm length, value count n, data length)
then the key, the algorithm's name, n + 1 native unsigned 32-bit offsets and
the data (value i is `data[offsets[i]:offsets[i + 1]]`); the answer is the n
raw tokens, `TOKEN_SIZE` bytes each, concatenated.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from collections.abc import Callable, Iterable
from typing import BinaryIO, Final

__all__ = ["HEADER", "TOKEN_SIZE", "digest_all", "hasher", "serve"]

TOKEN_SIZE: Final = 16
"""Bytes of a token before hex encoding (128 bits: collisions are negligible)."""
HEADER: Final = struct.Struct("<IIII")
"""Key length, algorithm length, value count, data length."""


def hasher(key: bytes, algorithm: str) -> Callable[[bytes | memoryview], bytes]:
    """One value's token as raw bytes.

    The keyed state is set up once and copied per value, which halves the cost
    of a million calls (a new keyed hasher per value spends most of its time on
    the key).
    """
    if algorithm == "blake2b":
        keyed = hashlib.blake2b(key=key, digest_size=TOKEN_SIZE).copy

        def blake(data: bytes | memoryview) -> bytes:
            h = keyed()
            h.update(data)
            return h.digest()

        return blake

    # HMAC as RFC 2104 defines it, H((K ^ opad) || H((K ^ ipad) || m)), with the
    # two padded-key blocks hashed once; `hmac.digest` agrees (tested).
    block = key.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block)).copy
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block)).copy

    def hmac_sha256(data: bytes | memoryview) -> bytes:
        i = inner()
        i.update(data)
        o = outer()
        o.update(i.digest())
        return o.digest()[:TOKEN_SIZE]

    return hmac_sha256


def digest_all(key: bytes, algorithm: str, values: Iterable[bytes | memoryview]) -> bytes:
    """The raw tokens of `values`, concatenated.

    The loop is written out rather than mapped over `hasher`: at a million
    values a Python call per value is a fifth of the time.
    """
    if algorithm != "blake2b":
        return b"".join(map(hasher(key, algorithm), values))
    keyed = hashlib.blake2b(key=key, digest_size=TOKEN_SIZE).copy
    out: list[bytes] = []
    append = out.append
    for data in values:
        h = keyed()
        h.update(data)
        append(h.digest())
    return b"".join(out)


def _exactly(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    if len(data) < n:
        return None
    return data


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """Answer requests until `requests` ends."""
    while (header := _exactly(requests, HEADER.size)) is not None:
        key_len, algo_len, n, data_len = HEADER.unpack(header)
        body = _exactly(requests, key_len + algo_len + 4 * (n + 1) + data_len)
        if body is None:
            return
        view = memoryview(body)
        key = bytes(view[:key_len])
        algorithm = bytes(view[key_len : key_len + algo_len]).decode()
        start = key_len + algo_len
        ends = view[start : start + 4 * (n + 1)].cast("I")
        data = view[start + 4 * (n + 1) :]
        values = (data[ends[i] : ends[i + 1]] for i in range(n))
        answers.write(digest_all(key, algorithm, values))
        answers.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
