"""Private set intersection: which of my elements are also in your set, and nothing else.

Two banks match blacklists. The *client* learns which of its own elements the
*holder* also has, and how many elements the holder has; the holder learns only
how many elements the client sent. The protocol is the OPRF protocol of
RFC 9497 (`sharechain.crypto.oprf`) under a fresh holder key per session::

    client (set X)                                holder (set Y, fresh key k)
    x' = normalise(x); r_x random
    B_x = r_x * HashToGroup(x')      -- request: B_x for each x -->
                                                   E_x = k * B_x          (in order)
                                                   T_y = tag(F(k, y'))    (sorted)
                                     <-- response: E_x ..., T_y ... --
    F(k, x') = Finalize(x', r_x, E_x)
    x is in Y  <=>  tag(F(k, x')) is among the T_y

A tag is the first `TAG_SIZE` bytes of the 64-byte OPRF output: the compact form
of the holder's set. Two different elements collide with probability
``|X| * |Y| / 2^128``, negligible at any size this is used for. Tags are sent
sorted so their order says nothing about the holder's records.

Normalisation makes ``"Zoë "`` and ``"zoe\u0308"`` the same element: Unicode NFC,
surrounding whitespace trimmed, then the column's case rule (``fold`` applies
``str.casefold``, ``exact`` keeps case; names and emails fold, identifiers whose
case is significant keep it). Both parties must use the same rule for a column.

These are pure protocol steps: the messages are records with a byte encoding;
carrying them between nodes is the caller's job.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Literal

from sharechain.crypto import oprf
from sharechain.crypto import ristretto as r255
from sharechain.errors import EncodingError, SharechainError

__all__ = [
    "TAG_SIZE",
    "CaseRule",
    "ClientState",
    "PsiLimitError",
    "PsiRequest",
    "PsiResponse",
    "PsiResult",
    "client_finish",
    "client_request",
    "holder_respond",
    "normalise",
]

TAG_SIZE: Final = 16
CaseRule = Literal["fold", "exact"]
_COUNT = 4
_VERSION = b"\x01"


class PsiLimitError(SharechainError):
    """A set is larger than the session allows; split it or ask for a higher cap."""


def normalise(value: str, case: CaseRule = "fold") -> bytes:
    """The canonical UTF-8 bytes of one element: NFC, trimmed, then the case rule."""
    text = unicodedata.normalize("NFC", value).strip()
    if case == "fold":
        # casefold can leave decomposed sequences ("ß" -> "ss" is fine, but some
        # letters gain combining marks), so normalise once more after folding.
        text = unicodedata.normalize("NFC", text.casefold())
    elif case != "exact":
        raise EncodingError(f"unknown case rule {case!r}: use 'fold' or 'exact'")
    return text.encode("utf-8")


@dataclass(frozen=True, slots=True)
class PsiRequest:
    """Client to holder: one blinded element per distinct client element."""

    blinded: tuple[bytes, ...]
    """The blinded OPRF inputs, 32 bytes each; uniformly random to the holder."""

    def encode(self) -> bytes:
        """``version (1) | count (4) | blinded elements``."""
        return _VERSION + len(self.blinded).to_bytes(_COUNT, "big") + b"".join(self.blinded)

    @classmethod
    def decode(cls, data: bytes) -> PsiRequest:
        """Parse; every element is checked when the holder evaluates it."""
        return cls(_split(_unversioned(data, "PSI request"), r255.POINT_SIZE, "PSI request"))


@dataclass(frozen=True, slots=True)
class PsiResponse:
    """Holder to client: the evaluated elements and the tags of the holder's set."""

    evaluated: tuple[bytes, ...]
    """``k * B`` for each blinded element, in request order."""
    tags: tuple[bytes, ...]
    """`TAG_SIZE`-byte prefixes of the holder's OPRF outputs, sorted."""

    def encode(self) -> bytes:
        """``version (1) | count (4) | evaluated | count (4) | tags``."""
        head = _VERSION + len(self.evaluated).to_bytes(_COUNT, "big") + b"".join(self.evaluated)
        return head + len(self.tags).to_bytes(_COUNT, "big") + b"".join(self.tags)

    @classmethod
    def decode(cls, data: bytes) -> PsiResponse:
        """Parse the two length-prefixed lists."""
        data = _unversioned(data, "PSI response")
        if len(data) < _COUNT:
            raise EncodingError("PSI response is truncated")
        cut = _COUNT + int.from_bytes(data[:_COUNT], "big") * r255.POINT_SIZE
        evaluated = _split(data[:cut], r255.POINT_SIZE, "PSI response")
        return cls(evaluated, _split(data[cut:], TAG_SIZE, "PSI response tags"))


@dataclass(frozen=True, slots=True)
class ClientState:
    """What the client keeps between its request and the response; never sent."""

    elements: tuple[bytes, ...]
    """The normalised elements, in request order."""
    originals: tuple[str, ...]
    """The client's own spelling of each element (the first one seen), same order."""
    blinds: tuple[r255.Scalar, ...]
    """The OPRF blind of each element, same order."""


@dataclass(frozen=True, slots=True)
class PsiResult:
    """What the client learns."""

    intersection: tuple[str, ...]
    """The client's elements (its own spelling) that the holder also has, in the client's order."""
    holder_set_size: int
    """How many distinct elements the holder has."""


def _unversioned(data: bytes, what: str) -> bytes:
    if data[:1] != _VERSION:
        raise EncodingError(f"{what} is not in wire format version {_VERSION[0]}")
    return data[1:]


def _split(data: bytes, size: int, what: str) -> tuple[bytes, ...]:
    if len(data) < _COUNT:
        raise EncodingError(f"{what} is truncated")
    count = int.from_bytes(data[:_COUNT], "big")
    if len(data) != _COUNT + count * size:
        raise EncodingError(f"{what} announces {count} items of {size} bytes but has another size")
    return tuple(data[_COUNT + i * size : _COUNT + (i + 1) * size] for i in range(count))


def _distinct(values: Iterable[str], case: CaseRule) -> dict[bytes, str]:
    seen: dict[bytes, str] = {}
    for value in values:
        seen.setdefault(normalise(value, case), value)
    return seen


def _check_cap(count: int, cap: int | None, whose: str) -> None:
    if cap is not None and count > cap:
        raise PsiLimitError(
            f"{whose} set has {count} distinct elements, more than the session's cap of {cap}"
        )


def client_request(
    values: Iterable[str],
    *,
    case: CaseRule = "fold",
    max_size: int | None = None,
    rng: Callable[[int], bytes] = os.urandom,
    workers: int | None = None,
) -> tuple[ClientState, PsiRequest]:
    """Normalise, deduplicate and blind the client's elements."""
    distinct = _distinct(values, case)
    _check_cap(len(distinct), max_size, "the client's")
    elements = tuple(distinct)
    pairs = oprf.blind_batch(elements, rng, workers)
    state = ClientState(elements, tuple(distinct.values()), tuple(b for b, _ in pairs))
    return state, PsiRequest(tuple(p for _, p in pairs))


def holder_respond(
    key: r255.Scalar,
    request: PsiRequest,
    values: Iterable[str],
    *,
    case: CaseRule = "fold",
    max_request: int | None = None,
    workers: int | None = None,
) -> PsiResponse:
    """Evaluate the client's blinded elements and tag the holder's own set.

    ``key`` must be fresh for the session (`sharechain.crypto.oprf.generate_key`):
    reusing it would let a client link its results across sessions. A request
    larger than ``max_request`` is refused before any work, and an invalid point
    or the identity in it raises `InvalidPointError` naming no other element.
    """
    _check_cap(len(request.blinded), max_request, "the client's")
    evaluated = oprf.blind_evaluate_batch(key, request.blinded, workers)
    own = list(_distinct(values, case))
    tags = sorted(out[:TAG_SIZE] for out in oprf.evaluate_batch(key, own, workers))
    return PsiResponse(tuple(evaluated), tuple(tags))


def client_finish(
    state: ClientState, response: PsiResponse, *, workers: int | None = None
) -> PsiResult:
    """Unblind the answers and look each of the client's outputs up among the holder's tags."""
    if len(response.evaluated) != len(state.elements):
        raise EncodingError(
            f"the holder answered {len(response.evaluated)} elements, the client sent "
            f"{len(state.elements)}: the response belongs to another request"
        )
    outputs = oprf.finalize_batch(state.elements, state.blinds, response.evaluated, workers)
    tags = set(response.tags)
    matched = tuple(
        original
        for original, output in zip(state.originals, outputs, strict=True)
        if output[:TAG_SIZE] in tags
    )
    return PsiResult(matched, len(tags))
