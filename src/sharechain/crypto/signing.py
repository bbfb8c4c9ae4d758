"""Ed25519 signatures, verified through libsodium.

Verification is the ledger's bottleneck, so it goes straight to libsodium's
`crypto_sign_open` (through PyNaCl's bindings). Those calls release the GIL, so
`verify_many` spreads a batch over a thread pool and uses every core without
the cost of extra processes.

Key ids are `SHA-256(public key)`. Every signature is taken over a domain tag
followed by the message, so a signature made for one purpose (a transaction)
can never be replayed as another (a block header, an API request).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
from nacl.exceptions import BadSignatureError

from sharechain.errors import InvalidSignatureError

__all__ = [
    "PUBLIC_KEY_SIZE",
    "SIGNATURE_SIZE",
    "KeyId",
    "SigningKey",
    "key_id",
    "verify",
    "verify_many",
]

KeyId = bytes
"""SHA-256 of a public key: 32 bytes."""

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
SEED_SIZE = 32


def key_id(public_key: bytes) -> KeyId:
    """The id of a public key: its SHA-256."""
    return hashlib.sha256(public_key).digest()


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An Ed25519 private key, kept as its 32-byte seed."""

    seed: bytes
    """The RFC 8032 private key (seed)."""
    public_key: bytes
    """The matching 32-byte public key."""
    _secret: bytes
    """libsodium's expanded secret key (seed || public key)."""

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        if len(seed) != SEED_SIZE:
            raise ValueError(f"an Ed25519 seed is {SEED_SIZE} bytes, got {len(seed)}")
        public, secret = crypto_sign_seed_keypair(seed)
        return cls(seed=seed, public_key=public, _secret=secret)

    @classmethod
    def generate(cls, rng: Callable[[int], bytes] = os.urandom) -> SigningKey:
        return cls.from_seed(rng(SEED_SIZE))

    @property
    def key_id(self) -> KeyId:
        return key_id(self.public_key)

    def sign(self, domain: bytes, message: bytes) -> bytes:
        """Sign `domain || message`; returns the 64-byte signature."""
        signed: bytes = crypto_sign(domain + message, self._secret)
        return signed[:SIGNATURE_SIZE]

    def __repr__(self) -> str:  # never print the seed
        return f"SigningKey(key_id={self.key_id.hex()[:16]}...)"


def verify(public_key: bytes, signature: bytes, domain: bytes, message: bytes) -> None:
    """Raise `InvalidSignatureError` unless `signature` signs `domain || message`."""
    if len(signature) != SIGNATURE_SIZE or len(public_key) != PUBLIC_KEY_SIZE:
        raise InvalidSignatureError("signature or public key has the wrong length")
    try:
        crypto_sign_open(signature + domain + message, public_key)
    except BadSignatureError:
        raise InvalidSignatureError("signature does not verify") from None


Check = tuple[bytes, bytes, bytes]
"""One verification job: (public key, signature, domain || message)."""


def _check_chunk(chunk: Sequence[Check]) -> list[bool]:
    results = []
    for public_key, signature, message in chunk:
        try:
            if len(signature) != SIGNATURE_SIZE or len(public_key) != PUBLIC_KEY_SIZE:
                raise BadSignatureError
            crypto_sign_open(signature + message, public_key)
            results.append(True)
        except BadSignatureError:
            results.append(False)
    return results


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="verify")


def verify_many(checks: Sequence[Check], min_parallel: int = 64) -> list[bool]:
    """Check many signatures at once, in parallel over all cores.

    Returns one flag per check, in order. This is the one place a boolean
    stands for a verification result: the ledger turns each `False` into a
    `bad_signature` validation code recorded in the block.
    """
    workers = os.cpu_count() or 1
    if len(checks) < min_parallel or workers == 1:
        return _check_chunk(checks)
    size = -(-len(checks) // (workers * 2))
    chunks = [checks[i : i + size] for i in range(0, len(checks), size)]
    out: list[bool] = []
    for part in _pool().map(_check_chunk, chunks):
        out.extend(part)
    return out
