"""The oblivious pseudorandom function of RFC 9497, mode OPRF (0x00), suite ristretto255-SHA512.

An OPRF lets a client learn ``F(k, x)`` for a server's secret key ``k`` without
the server learning ``x`` and without the client learning ``k``:

    client                                   server (key k)
    r random, B = r * HashToGroup(x)   --B-->
                                       <--E--  E = k * B
    N = r^-1 * E = k * HashToGroup(x)
    output = SHA-512(len x | x | len N | N | "Finalize")

The server can compute the same output alone for inputs it holds (`evaluate`),
which is what the private set intersection compares. Domain separation follows
the RFC exactly: the context string ``"OPRFV1-" || 0x00 || "-ristretto255-SHA512"``
prefixed with ``HashToGroup-``, ``HashToScalar-`` or ``DeriveKeyPair``.

The batch functions spread the group operations over a thread pool: pysodium
calls libsodium through ctypes, which releases the GIL for the duration of each
call, so the scalar multiplications run on all cores.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar

from sharechain.crypto import ristretto as r255
from sharechain.errors import ConfigError, EncodingError

__all__ = [
    "CONTEXT_STRING",
    "OUTPUT_SIZE",
    "InvalidInputError",
    "blind",
    "blind_batch",
    "blind_evaluate",
    "blind_evaluate_batch",
    "default_workers",
    "derive_key_pair",
    "evaluate",
    "evaluate_batch",
    "finalize",
    "finalize_batch",
    "generate_key",
]

MODE_OPRF: Final = 0x00
CONTEXT_STRING: Final = b"OPRFV1-" + bytes([MODE_OPRF]) + b"-ristretto255-SHA512"
OUTPUT_SIZE: Final = 64
_HASH_TO_GROUP_DST = b"HashToGroup-" + CONTEXT_STRING
_DERIVE_KEY_PAIR_DST = b"DeriveKeyPair" + CONTEXT_STRING
_MAX_INPUT = 65535
_CHUNK = 256

T = TypeVar("T")
U = TypeVar("U")


class InvalidInputError(EncodingError):
    """An OPRF input hashes to the identity element (RFC 9497 InvalidInputError); use another."""


def default_workers() -> int:
    """Threads for the batch functions: one per core."""
    return max(1, os.cpu_count() or 1)


def _parallel(fn: Callable[[T], U], items: Sequence[T], workers: int | None) -> list[U]:
    workers = default_workers() if workers is None else workers
    if workers <= 1 or len(items) <= _CHUNK:
        return [fn(item) for item in items]
    chunks = [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = pool.map(lambda chunk: [fn(item) for item in chunk], chunks)
        return [value for part in parts for value in part]


def _input_element(data: bytes) -> r255.Point:
    if len(data) > _MAX_INPUT:
        raise ConfigError(f"an OPRF input is at most {_MAX_INPUT} bytes, got {len(data)}")
    element = r255.hash_to_group(data, _HASH_TO_GROUP_DST)
    if element == r255.IDENTITY:
        raise InvalidInputError("this input hashes to the identity element; it cannot be used")
    return element


def _output(data: bytes, unblinded: r255.Point) -> bytes:
    return hashlib.sha512(
        len(data).to_bytes(2, "big")
        + data
        + len(unblinded).to_bytes(2, "big")
        + unblinded
        + b"Finalize"
    ).digest()


def derive_key_pair(seed: bytes, info: bytes) -> tuple[r255.Scalar, r255.Point]:
    """RFC 9497 ``DeriveKeyPair``: a deterministic key from a 32-byte seed and public info."""
    if len(seed) != 32:
        raise ConfigError(f"an OPRF key seed is 32 bytes, got {len(seed)}")
    if len(info) > _MAX_INPUT:
        raise ConfigError(f"OPRF key info is at most {_MAX_INPUT} bytes")
    derive_input = seed + len(info).to_bytes(2, "big") + info
    for counter in range(256):
        key = r255.hash_to_scalar(derive_input + bytes([counter]), _DERIVE_KEY_PAIR_DST)
        if key:
            return key, r255.base_mul(key)
    raise ConfigError("DeriveKeyPair failed for this seed (probability 2^-2000): use another")


def generate_key(rng: Callable[[int], bytes] = os.urandom) -> r255.Scalar:
    """A fresh random OPRF key (one per session, so outputs cannot be linked across sessions)."""
    return derive_key_pair(rng(32), b"sharechain/oprf/v1")[0]


def blind(
    data: bytes,
    rng: Callable[[int], bytes] = os.urandom,
    *,
    blind_scalar: r255.Scalar | None = None,
) -> tuple[r255.Scalar, r255.Point]:
    """RFC 9497 ``Blind``: returns ``(blind, blinded element)``; the blind stays with the client."""
    r = r255.random_scalar(rng) if blind_scalar is None else blind_scalar
    return r, r255.mul(r, _input_element(data))


def blind_evaluate(key: r255.Scalar, blinded: bytes) -> r255.Point:
    """RFC 9497 ``BlindEvaluate``: the server's step; refuses invalid points and the identity."""
    return r255.mul(key, r255.decode_point(blinded, "blinded element"))


def finalize(data: bytes, blind_scalar: r255.Scalar, evaluated: bytes) -> bytes:
    """RFC 9497 ``Finalize``: unblind the server's answer and hash it with the input."""
    element = r255.decode_point(evaluated, "evaluated element")
    unblinded = r255.mul(pow(blind_scalar, -1, r255.ORDER), element)
    return _output(data, unblinded)


def evaluate(key: r255.Scalar, data: bytes) -> bytes:
    """RFC 9497 ``Evaluate``: the server's own output for an input it holds."""
    return _output(data, r255.mul(key, _input_element(data)))


def blind_batch(
    items: Sequence[bytes], rng: Callable[[int], bytes] = os.urandom, workers: int | None = None
) -> list[tuple[r255.Scalar, r255.Point]]:
    """`blind` of many inputs; the blinds are drawn first so ``rng`` is called in order."""
    blinds = [r255.random_scalar(rng) for _ in items]
    pairs = list(zip(items, blinds, strict=True))
    return _parallel(lambda pair: blind(pair[0], blind_scalar=pair[1]), pairs, workers)


def blind_evaluate_batch(
    key: r255.Scalar, blinded: Sequence[bytes], workers: int | None = None
) -> list[r255.Point]:
    """`blind_evaluate` of many elements across a thread pool."""
    return _parallel(lambda element: blind_evaluate(key, element), blinded, workers)


def evaluate_batch(
    key: r255.Scalar, items: Sequence[bytes], workers: int | None = None
) -> list[bytes]:
    """`evaluate` of many inputs across a thread pool."""
    return _parallel(lambda data: evaluate(key, data), items, workers)


def finalize_batch(
    items: Sequence[bytes],
    blinds: Sequence[r255.Scalar],
    evaluated: Sequence[bytes],
    workers: int | None = None,
) -> list[bytes]:
    """`finalize` of many answers, matched by position."""
    if not len(items) == len(blinds) == len(evaluated):
        raise EncodingError(
            f"{len(evaluated)} evaluated elements for {len(items)} inputs: "
            "the server must answer every blinded element, in order"
        )
    triples = list(zip(items, blinds, evaluated, strict=True))
    return _parallel(lambda t: finalize(t[0], t[1], t[2]), triples, workers)
