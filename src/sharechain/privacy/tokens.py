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

import binascii
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sharechain import codec
from sharechain.privacy._hash_worker import HEADER, TOKEN_SIZE, digest_all, hasher

__all__ = [
    "KEY_SIZE",
    "TOKEN_SIZE",
    "HashWorker",
    "TokenKey",
    "derive_token_key",
    "tokenize",
    "tokenize_array",
]

KEY_SIZE: Final = 32
"""Bytes of a tokenisation key."""
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


def tokenize(key: bytes, value: str, algorithm: str = "blake2b") -> str:
    """The token of one value (its UTF-8 bytes) under `key`."""
    return hasher(key, algorithm)(value.encode()).hex()


def _hex_strings(digests: bytes, n: int) -> pa.Array:
    """`n` concatenated digests as a string array of hex tokens, without a Python loop."""
    text = binascii.hexlify(digests)
    offsets = np.arange(0, 2 * TOKEN_SIZE * (n + 1), 2 * TOKEN_SIZE, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))


class HashWorker:
    """A process hashing tokens (`privacy._hash_worker`), for `tokenize_array(..., worker=)`.

    Use as a context manager; it is stopped on exit. Threads may share it
    (one request at a time).
    """

    def __init__(self) -> None:
        # The child finds sharechain where this process did.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "sharechain.privacy._hash_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._lock = threading.Lock()

    def __enter__(self) -> HashWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process.stdout.close()

    def digests(self, key: bytes, algorithm: str, binary: pa.Array) -> bytes:
        """The raw tokens of every value of a binary array, concatenated."""
        n = len(binary)
        offsets = np.frombuffer(binary.buffers()[1], np.int32)[
            binary.offset : binary.offset + n + 1
        ]
        data = binary.buffers()[2]
        start, end = int(offsets[0]), int(offsets[-1])
        ends = (offsets - start).astype(np.uint32)
        payload = memoryview(data)[start:end] if data is not None else memoryview(b"")
        name = algorithm.encode()
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        with self._lock:
            try:
                process.stdin.write(HEADER.pack(len(key), len(name), n, end - start))
                process.stdin.write(key + name)
                process.stdin.write(ends.tobytes())
                process.stdin.write(payload)
                process.stdin.flush()
                out = process.stdout.read(n * TOKEN_SIZE)
            except (BrokenPipeError, ValueError):
                out = b""
        if len(out) != n * TOKEN_SIZE:
            raise OSError(f"the token hashing process stopped (exit code {process.poll()})")
        return out


def _tokens(
    key: bytes, algorithm: str, text: pa.Array, worker: HashWorker | None = None
) -> pa.Array:
    """Tokens of every value of a string array (nulls hashed as empty, then put back)."""
    binary = pc.cast(pc.fill_null(text, ""), pa.binary())
    if worker is not None:
        raw = worker.digests(key, algorithm, binary)
    else:
        raw = digest_all(key, algorithm, binary.to_pylist())
    tokens = _hex_strings(raw, len(binary))
    if text.null_count:
        tokens = pc.if_else(pc.is_valid(text), tokens, pa.scalar(None, pa.string()))
    return tokens


def tokenize_array(
    key: bytes, values: pa.Array, algorithm: str = "blake2b", *, worker: HashWorker | None = None
) -> pa.Array:
    """Tokens of a column (values in their text form); nulls stay null.

    A column that repeats (names, cities) has each distinct value hashed once;
    one of mostly distinct values (identifiers) is hashed value by value,
    sparing the cost of building a dictionary that saves nothing, and in
    `worker`'s process when one is given.
    """
    text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
    sample = text.slice(0, _SAMPLE)
    if len(sample) and pc.count_distinct(sample).as_py() > len(sample) // 2:
        return _tokens(key, algorithm, text, worker)
    encoded = pc.dictionary_encode(text)
    return pc.take(_tokens(key, algorithm, encoded.dictionary), encoded.indices)
