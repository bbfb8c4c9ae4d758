"""Throughput of the streaming AEAD against OpenSSL's raw AES-256-GCM on this machine.

Seals and opens a 256 MiB in-memory payload in 1 MiB segments (the default),
writing to a sink that discards, so the figures are the cost of the stream itself.
``aead_ratio_to_openssl`` compares the AEAD alone (``digests=False``: AES-256-GCM,
per-stream key derivation, nonces, buffer handling) with
``openssl speed -evp aes-256-gcm`` at 1 MiB blocks, which does no hashing either.
``aead_with_digests_mib_s`` is the same stream computing the three SHA-256 digests
the chain records (plaintext, whole ciphertext, each segment for the Merkle root):
what publishing and fetching actually pay per byte. ``sha256_mib_s`` is hashlib's
SHA-256 of one 256 MiB buffer, ``sha256_pair_mib_s`` the bytes per second of two
hashed side by side (`sharechain.crypto.digests.sha256_pair`), which is how the
stream takes its digests.

Run ``python -m sharechain.bench.aead`` to print the figures as JSON.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import time
from typing import BinaryIO, cast

from sharechain.crypto.digests import sha256_pair
from sharechain.crypto.stream import DEFAULT_SEGMENT_SIZE, decrypt_stream, encrypt_stream

__all__ = ["openssl_aes256gcm_mib_s", "run"]

PAYLOAD_MIB = 256
ROUNDS = 3
MIB = 1 << 20


class _Sink(io.RawIOBase):
    """Accepts and forgets everything, so writing costs nothing."""

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        return len(memoryview(data))  # type: ignore[arg-type]  # any buffer is accepted


_SINK = cast(BinaryIO, _Sink())


def openssl_aes256gcm_mib_s(seconds: int = 2) -> float:
    """MiB/s of ``openssl speed -evp aes-256-gcm`` at 1 MiB blocks, or 0.0 without openssl."""
    exe = shutil.which("openssl")
    if exe is None:
        return 0.0
    done = subprocess.run(
        [exe, "speed", "-evp", "aes-256-gcm", "-bytes", str(MIB), "-seconds", str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    # The summary line: "AES-256-GCM   5169637.76k" (thousands of bytes per second).
    match = re.search(r"^aes-256-gcm\s+([\d.]+)k\s*$", done.stdout, re.IGNORECASE | re.MULTILINE)
    if match is None:
        raise RuntimeError(f"cannot read openssl speed output:\n{done.stdout}")
    return float(match.group(1)) * 1000 / MIB


def _best_mib_s(action: io.BytesIO, seal: bool, key: bytes, *, digests: bool) -> float:
    best = 0.0
    for _ in range(ROUNDS):
        action.seek(0)
        start = time.perf_counter()
        if seal and digests:
            encrypt_stream(key, action, _SINK, epoch=1, segment_size=DEFAULT_SEGMENT_SIZE)
        elif seal:
            encrypt_stream(key, action, _SINK, epoch=1, digests=False)
        elif digests:
            decrypt_stream(key, action, _SINK)
        else:
            decrypt_stream(key, action, _SINK, digests=False)
        best = max(best, PAYLOAD_MIB / (time.perf_counter() - start))
    return best


def _sha256_mib_s(data: memoryview) -> tuple[float, float]:
    """Best MiB/s of hashlib on one buffer and of the paired SHA-256 on its two halves."""
    one = pair = 0.0
    half = len(data) // 2
    for _ in range(ROUNDS):
        start = time.perf_counter()
        hashlib.sha256(data).digest()
        one = max(one, PAYLOAD_MIB / (time.perf_counter() - start))
        start = time.perf_counter()
        sha256_pair(data[:half], data[half:])
        pair = max(pair, PAYLOAD_MIB / (time.perf_counter() - start))
    return one, pair


def run() -> dict[str, float]:
    """Measure sealing and opening throughput and compare with OpenSSL."""
    key = os.urandom(32)
    block = os.urandom(MIB)
    plain = io.BytesIO(block * PAYLOAD_MIB)
    sealed = io.BytesIO()
    encrypt_stream(key, plain, sealed, epoch=1)
    encrypt = _best_mib_s(plain, True, key, digests=False)
    decrypt = _best_mib_s(sealed, False, key, digests=False)
    with_digests = min(
        _best_mib_s(plain, True, key, digests=True), _best_mib_s(sealed, False, key, digests=True)
    )
    sha_one, sha_pair = _sha256_mib_s(plain.getbuffer())
    openssl = openssl_aes256gcm_mib_s()
    return {
        "sha256_mib_s": round(sha_one, 1),
        "sha256_pair_mib_s": round(sha_pair, 1),
        "aead_encrypt_mib_s": round(encrypt, 1),
        "aead_decrypt_mib_s": round(decrypt, 1),
        "aead_with_digests_mib_s": round(with_digests, 1),
        "openssl_aes256gcm_mib_s": round(openssl, 1),
        "aead_ratio_to_openssl": round(min(encrypt, decrypt) / openssl, 3) if openssl else 0.0,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
