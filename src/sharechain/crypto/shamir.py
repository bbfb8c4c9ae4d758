"""Shamir secret sharing of a data key: any t of n shares rebuild it, fewer reveal nothing.

In the ``threshold`` custody mode a dataset's 32-byte data key is split among n
consortium nodes so that any ``threshold`` of them can give the grantee enough to
rebuild it, while ``threshold - 1`` of them (the supervisor included) learn nothing
about it. Each byte of the key is the constant term of its own random polynomial
of degree ``threshold - 1`` over GF(2^8) (the AES field, polynomial 0x11b); share
``i`` holds every polynomial's value at ``x = i`` (1..255).

Every share also carries a *check value*, ``SHA-256("sharechain/shamir/v1/check" ||
threshold || key)``, the same in all shares of one split. After interpolating, the
combiner recomputes it: a tampered share, or a share from another split, yields
another key and the check fails. The check reveals nothing useful because the
split refuses anything but a 32-byte key, which must be uniformly random: guessing
a 256-bit key against its hash is hopeless. Extra shares beyond the threshold are
checked too, and a share that does not lie on the others' polynomials is named.

Wire form of a share (67 bytes): ``version (1) | index (1) | threshold (1) |
check (32) | value (32)``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations, islice
from math import comb
from typing import Final

from sharechain.errors import (
    ConfigError,
    EncodingError,
    InsufficientSharesError,
    IntegrityError,
)

__all__ = ["SECRET_SIZE", "SHARE_SIZE", "SHARE_VERSION", "Share", "combine", "split"]

SECRET_SIZE: Final = 32
SHARE_VERSION: Final = 1
SHARE_SIZE: Final = 3 + 32 + SECRET_SIZE
MAX_SHARES: Final = 255
_CHECK_LABEL = b"sharechain/shamir/v1/check"
_MAX_SUBSETS = 512
"""How many threshold-sized subsets `combine` tries when looking for the tampered share."""


def _tables() -> tuple[list[int], list[int]]:
    exp = [0] * 512
    log = [0] * 256
    value = 1
    for power in range(255):
        exp[power] = value
        log[value] = power
        # Multiply by the generator 3 = x + 1, reducing by the AES polynomial.
        value ^= (value << 1) ^ (0x11B if value & 0x80 else 0)
    for power in range(255, 512):
        exp[power] = exp[power - 255]
    return exp, log


_EXP, _LOG = _tables()


def _mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def _div(a: int, b: int) -> int:
    # b is never 0 here: it is a difference of distinct share indexes.
    if a == 0:
        return 0
    return _EXP[_LOG[a] - _LOG[b] + 255]


@dataclass(frozen=True, slots=True)
class Share:
    """One holder's share of a split key."""

    index: int
    """The x coordinate, 1..255; distinct within a split."""
    threshold: int
    """How many shares rebuild the key."""
    check: bytes
    """SHA-256 commitment to the key and threshold, equal in every share of a split."""
    value: bytes
    """The 32 polynomial values at ``index``, one per key byte."""

    def encode(self) -> bytes:
        """The 67-byte wire form."""
        return bytes([SHARE_VERSION, self.index, self.threshold]) + self.check + self.value

    @classmethod
    def decode(cls, data: bytes) -> Share:
        """Parse the wire form; raises `EncodingError` if it is not a share."""
        if len(data) != SHARE_SIZE or data[0] != SHARE_VERSION:
            raise EncodingError(f"not a version {SHARE_VERSION} key share of {SHARE_SIZE} bytes")
        index, threshold = data[1], data[2]
        if index == 0 or threshold == 0:
            raise EncodingError("a key share's index and threshold must be at least 1")
        return cls(index, threshold, data[3:35], data[35:])

    def __repr__(self) -> str:  # never print share values
        return f"Share(index={self.index}, threshold={self.threshold})"


def _check_value(secret: bytes, threshold: int) -> bytes:
    return hashlib.sha256(_CHECK_LABEL + bytes([threshold]) + secret).digest()


def split(
    secret: bytes, threshold: int, count: int, rng: Callable[[int], bytes] = os.urandom
) -> tuple[Share, ...]:
    """Split a 32-byte key into ``count`` shares, any ``threshold`` of which rebuild it."""
    if len(secret) != SECRET_SIZE:
        raise ConfigError(f"only {SECRET_SIZE}-byte random keys can be split, got {len(secret)}")
    if not 1 <= threshold <= count <= MAX_SHARES:
        raise ConfigError(
            f"need 1 <= threshold <= count <= {MAX_SHARES}, got {threshold} of {count}"
        )
    random = rng(SECRET_SIZE * (threshold - 1))
    if len(random) != SECRET_SIZE * (threshold - 1):
        raise ConfigError("rng returned too few bytes")
    # coefficients[k][b]: coefficient of x^(k+1) in the polynomial of key byte b.
    coefficients = [random[k * SECRET_SIZE : (k + 1) * SECRET_SIZE] for k in range(threshold - 1)]
    check = _check_value(secret, threshold)
    shares = []
    for x in range(1, count + 1):
        value = bytearray(SECRET_SIZE)
        for b in range(SECRET_SIZE):
            # Horner's rule from the highest coefficient down to the key byte.
            y = 0
            for k in range(threshold - 2, -1, -1):
                y = _mul(y, x) ^ coefficients[k][b]
            value[b] = _mul(y, x) ^ secret[b]
        shares.append(Share(x, threshold, check, bytes(value)))
    return tuple(shares)


def _weights(xs: Sequence[int], at: int) -> list[int]:
    """Lagrange basis values l_i(at) for the points ``xs``."""
    weights = []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if i != j:
                num = _mul(num, at ^ xj)
                den = _mul(den, xi ^ xj)
        weights.append(_div(num, den))
    return weights


def _interpolate(shares: Sequence[Share], at: int) -> bytes:
    weights = _weights([s.index for s in shares], at)
    out = bytearray(SECRET_SIZE)
    for weight, share in zip(weights, shares, strict=True):
        if weight:
            log_w = _LOG[weight]
            for b, y in enumerate(share.value):
                if y:
                    out[b] ^= _EXP[log_w + _LOG[y]]
    return bytes(out)


def _subsets(shares: Sequence[Share], threshold: int) -> Iterator[tuple[Share, ...]]:
    """The first ``threshold`` shares, then (if affordable) every other choice of them."""
    yield tuple(shares[:threshold])
    if len(shares) > threshold and comb(len(shares), threshold) <= _MAX_SUBSETS:
        # combinations() starts with shares[:threshold], already tried.
        yield from islice(combinations(shares, threshold), 1, None)


def combine(shares: Sequence[Share]) -> bytes:
    """Rebuild the key from at least ``threshold`` shares of one split.

    Raises `InsufficientSharesError` when too few distinct shares are given, and
    `IntegrityError` for duplicate indexes, shares of different splits, or a tampered
    share (named when the others are enough to tell which).
    """
    if not shares:
        raise InsufficientSharesError("no key shares given")
    first = shares[0]
    for share in shares:
        if (
            len(share.value) != SECRET_SIZE
            or len(share.check) != 32
            or not 1 <= share.index <= MAX_SHARES
        ):
            raise IntegrityError(f"key share {share.index} is malformed")
        if share.threshold != first.threshold or share.check != first.check:
            raise IntegrityError(
                f"key shares {first.index} and {share.index} come from different splits "
                "(threshold or check value differ): drop the share that is not from this key"
            )
    indexes = [share.index for share in shares]
    duplicates = sorted({i for i in indexes if indexes.count(i) > 1})
    if duplicates:
        raise IntegrityError(f"key share index {duplicates} given more than once")
    threshold = first.threshold
    if len(shares) < threshold:
        raise InsufficientSharesError(
            f"{len(shares)} key shares given, {threshold} needed: ask more share holders"
        )
    ordered = sorted(shares, key=lambda s: s.index)
    for subset in _subsets(ordered, threshold):
        secret = _interpolate(subset, 0)
        if not hmac.compare_digest(_check_value(secret, threshold), first.check):
            continue
        bad = [
            s.index for s in ordered if s not in subset and _interpolate(subset, s.index) != s.value
        ]
        if bad:
            raise IntegrityError(
                f"key shares {bad} do not fit the others: tampered or corrupted, "
                "combine without them"
            )
        return secret
    raise IntegrityError(
        "key shares are tampered or inconsistent: the rebuilt key fails its check value"
    )
