"""Pedersen commitments on ristretto255: commit to a number now, open it later, or never.

``commit(v, r) = v * H + r * G`` where ``G`` is the standard ristretto255
generator and ``H`` is a second generator nobody knows the discrete logarithm
of: it is ``hash_to_group`` (RFC 9380) of the fixed message `H_MESSAGE` under
the domain tag `H_DST`, so anyone can recompute it and check that it was not
chosen with a trapdoor.

- *Hiding*: with ``r`` uniform, the commitment is a uniform group element
  whatever ``v`` is.
- *Binding*: opening one commitment to two values would reveal ``log_G(H)``.
- *Additive*: ``commit(a, r) + commit(b, s) = commit(a + b, r + s)``, which is
  what lets an aggregator check a sum against the participants' commitments.

The blinding factor sits on ``G`` (not ``H``, as some texts write it) because
libsodium has a precomputed table only for ``G``: the range proofs prove
knowledge of discrete logarithms with respect to the blinding generator, and
this placement makes each of their scalar multiplications by it three times
faster. Both placements are equally hiding and binding.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from sharechain.crypto import ristretto as r255
from sharechain.errors import ConfigError, IntegrityError

__all__ = [
    "H_DST",
    "H_MESSAGE",
    "H",
    "Opening",
    "commit",
    "commit_with",
    "sum_commitments",
    "verify_opening",
]

H_DST: Final = b"sharechain-pedersen-v1-ristretto255-generator"
H_MESSAGE: Final = b"sharechain Pedersen commitments: second generator H"
H: Final = r255.hash_to_group(H_MESSAGE, H_DST)
"""The value generator; its discrete logarithm to ``G`` is unknown to everyone."""


@dataclass(frozen=True, slots=True)
class Opening:
    """What opens a commitment; kept secret by the committer until (if ever) it opens it."""

    value: int
    """The committed number, ``0 <= value < ORDER``."""
    blinding: r255.Scalar
    """The uniform random blinding factor."""

    def __repr__(self) -> str:  # never print the secret parts
        return "Opening(...)"


def commit_with(value: int, blinding: r255.Scalar) -> r255.Point:
    """``value * H + blinding * G``."""
    if not 0 <= value < r255.ORDER:
        raise ConfigError("a committed value must be in [0, group order)")
    if not 0 <= blinding < r255.ORDER:
        raise ConfigError("a blinding factor must be reduced modulo the group order")
    return r255.add(r255.mul(value, H), r255.base_mul(blinding))


def commit(value: int, rng: Callable[[int], bytes] = os.urandom) -> tuple[r255.Point, Opening]:
    """Commit to ``value`` with a fresh blinding factor; returns the commitment and its opening."""
    blinding = r255.random_scalar(rng)
    return commit_with(value, blinding), Opening(value, blinding)


def verify_opening(commitment: bytes, opening: Opening) -> None:
    """Raise `IntegrityError` unless ``opening`` opens ``commitment``."""
    expected = commit_with(opening.value, opening.blinding)
    if not hmac.compare_digest(expected, commitment):
        raise IntegrityError("the opening does not match the commitment")


def sum_commitments(commitments: Iterable[bytes]) -> r255.Point:
    """The sum of commitments (a commitment to the sum of the values and of the blindings)."""
    total = r255.IDENTITY
    for commitment in commitments:
        total = r255.add(total, r255.decode_point(commitment, "commitment"))
    return total
