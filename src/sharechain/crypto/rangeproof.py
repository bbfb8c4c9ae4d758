"""Range proofs: a Pedersen commitment holds a value in ``[0, 2^bits)``, and nothing more is said.

The prover writes its value in binary, ``v = sum b_i 2^i``, and commits to each
bit: ``C_i = b_i * H + r_i * G`` (`sharechain.crypto.pedersen`). The blindings
are chosen so that ``sum 2^i C_i = C``, the commitment being proved; the proof
carries ``C_1 .. C_{bits-1}`` and the verifier derives ``C_0`` from ``C``, so the
bit commitments cannot add up to anything but ``C``. For each bit it then proves
"``C_i`` is a commitment to 0 *or* to 1": ``C_i = r_i G`` or ``C_i - H = r_i G``,
two Schnorr proofs of a discrete logarithm to ``G`` joined by the OR composition
of Cramer, Damgård and Schoenmakers (CDS94): the prover answers the branch it
knows honestly and simulates the other, and the two challenges must add up to
the one Fiat-Shamir challenge, so at most one can be simulated.

The structure follows the CFRG sigma-protocols draft (draft-irtf-cfrg-sigma-
protocols): a protocol identifier, a session identifier (here the caller's
*context*, e.g. session id and participant, so a proof made for one session or
participant is refused in every other), an instance label (the serialised
statement: ``bits``, ``C`` and the bit commitments), the prover's commitments,
and a *compact* proof made of the challenge and the responses, from which the
verifier recomputes the commitments and checks that they hash to the challenge.
The challenge is SHA-512 over the length-prefixed fields, reduced modulo the
group order (64 bytes, so the bias is below 2^-250); the draft's duplex-sponge
codec is still changing, so this is a documented stand-in with the same inputs.

Wire form (version 1): ``version (1) | bits (1) | C_1..C_{bits-1} (32 each) |
challenge (32) | per bit: c_0, s_0, s_1 (32 each)``; 4,098 bytes for 32 bits.

`verify` spreads one proof's multiplications over two threads (the lowest
latency); `verify_batch` checks many proofs, each whole, over one thread per
core (the highest throughput, what an aggregator checking thousands needs).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Final

from sharechain.crypto import pedersen
from sharechain.crypto import ristretto as r255
from sharechain.errors import ConfigError, EncodingError, SharechainError

__all__ = [
    "MAX_BITS",
    "PROOF_VERSION",
    "BatchProofError",
    "InvalidProofError",
    "proof_size",
    "prove",
    "prove_value",
    "session_context",
    "verify",
    "verify_batch",
]

PROOF_VERSION: Final = 1
MAX_BITS: Final = 64
PROTOCOL_ID: Final = b"sharechain/range-proof/v1 ristretto255 bit-decomposition CDS-OR SHA-512"
_S = r255.SCALAR_SIZE
_P = r255.POINT_SIZE


class InvalidProofError(SharechainError):
    """A range proof does not verify: forged, altered, for another commitment or context.

    Refuse the value it was meant to support; the prover must send a new proof.
    """


class BatchProofError(InvalidProofError):
    """One proof of a batch does not verify; ``index`` says which (the first in order)."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        """The position, in the batch, of the first proof refused."""


def session_context(session_id: bytes, participant: str, index: int) -> bytes:
    """The context of a value's proof in a joint computation: session, participant, position.

    Length-prefixed so that no two different triples give the same bytes; a
    contract and the aggregator both derive it, so it lives here.
    """
    name = participant.encode()
    return (
        len(session_id).to_bytes(2, "big")
        + session_id
        + len(name).to_bytes(2, "big")
        + name
        + index.to_bytes(4, "big")
    )


def proof_size(bits: int) -> int:
    """Bytes of a proof for ``bits`` bits."""
    return 2 + (bits - 1) * _P + _S + bits * 3 * _S


def _check_bits(bits: int) -> None:
    if not 1 <= bits <= MAX_BITS:
        raise ConfigError(f"a range proof covers 1 to {MAX_BITS} bits, not {bits}")


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _challenge(
    context: bytes, bits: int, commitment: bytes, upper: list[bytes], announced: list[bytes]
) -> r255.Scalar:
    instance = bytes([bits]) + commitment + b"".join(upper)
    digest = hashlib.sha512(
        _lp(PROTOCOL_ID) + _lp(context) + _lp(instance) + _lp(b"".join(announced))
    ).digest()
    return int.from_bytes(digest, "little") % r255.ORDER


def _lowest_bit_commitment(commitment: bytes, upper: list[bytes]) -> bytes:
    """``C_0 = C - sum_{i>=1} 2^i C_i`` by Horner's rule (additions only)."""
    if not upper:
        return commitment
    acc = upper[-1]
    for point in reversed(upper[:-1]):
        acc = r255.add(r255.add(acc, acc), point)
    return r255.sub(commitment, r255.add(acc, acc))


def _announce(s: r255.Scalar, c: r255.Scalar, y: bytes) -> bytes:
    """``s * G - c * Y``: a Schnorr commitment recomputed from its response and challenge."""
    return r255.sub(r255.base_mul(s), r255.mul(c, y))


def _recompute(
    points: list[bytes], responses: list[tuple[int, ...]], e: r255.Scalar
) -> list[bytes]:
    """The verifier's Schnorr commitments ``A_i0, A_i1`` for these bits."""
    announced: list[bytes] = []
    for point, (c0, s0, s1) in zip(points, responses, strict=True):
        announced.append(_announce(s0, c0, point))
        announced.append(_announce(s1, (e - c0) % r255.ORDER, r255.sub(point, pedersen.H)))
    return announced


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="rangeproof")


def _prove(
    opening: pedersen.Opening, bits: int, context: bytes, rng: Callable[[int], bytes]
) -> bytes:
    """Build the proof without checking the range; `prove` is the public entry point.

    The prover knows every bit and blinding, so it writes each Schnorr
    commitment from them directly instead of from the bit commitments: the
    simulated branch ``s G - c Y`` is ``t G +- c H`` with ``t = s - c r_i``
    uniform (``Y = C_i`` or ``C_i - H``, and ``C_i = b_i H + r_i G``). That is
    one scalar multiplication by ``H`` per bit and no point subtraction; the
    proof is the same as one built from the points (the verifier cannot tell).
    """
    commitment = pedersen.commit_with(opening.value, opening.blinding)
    bit_values = [(opening.value >> i) & 1 for i in range(bits)]
    blindings = [0] + [r255.random_scalar(rng) for _ in range(1, bits)]
    blindings[0] = (
        opening.blinding - sum(r << i for i, r in enumerate(blindings) if i)
    ) % r255.ORDER
    upper = [
        r255.add(r255.base_mul(r), pedersen.H) if b else r255.base_mul(r)
        for b, r in zip(bit_values[1:], blindings[1:], strict=True)
    ]
    announced: list[bytes] = []
    secrets: list[tuple[r255.Scalar, r255.Scalar, r255.Scalar]] = []
    for bit, r_i in zip(bit_values, blindings, strict=True):
        nonce = r255.random_scalar(rng)
        fake_c, t = r255.random_scalar(rng), r255.random_scalar(rng)
        # Branch 1 - bit is simulated: Y = r_i G - H (bit 0) or r_i G + H (bit 1).
        c_h = r255.mul(fake_c if bit else r255.ORDER - fake_c, pedersen.H)
        pair = [b"", b""]
        pair[bit] = r255.base_mul(nonce)
        pair[1 - bit] = r255.sub(r255.base_mul(t), c_h)
        announced += pair
        secrets.append((nonce, fake_c, (t + fake_c * r_i) % r255.ORDER))
    e = _challenge(context, bits, commitment, upper, announced)
    responses = []
    for bit, r_i, (nonce, fake_c, fake_s) in zip(bit_values, blindings, secrets, strict=True):
        real_c = (e - fake_c) % r255.ORDER
        real_s = (nonce + real_c * r_i) % r255.ORDER
        c0, s0, s1 = (real_c, real_s, fake_s) if bit == 0 else (fake_c, fake_s, real_s)
        responses.append(r255.encode_scalar(c0) + r255.encode_scalar(s0) + r255.encode_scalar(s1))
    return (
        bytes([PROOF_VERSION, bits]) + b"".join(upper) + r255.encode_scalar(e) + b"".join(responses)
    )


def prove(
    opening: pedersen.Opening,
    bits: int,
    context: bytes,
    rng: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """Prove that the commitment opened by ``opening`` holds a value in ``[0, 2^bits)``."""
    _check_bits(bits)
    if not 0 <= opening.value < 1 << bits:
        raise ConfigError(f"the value is outside [0, 2^{bits}): no range proof exists for it")
    return _prove(opening, bits, context, rng)


def prove_value(
    value: int, bits: int, context: bytes, rng: Callable[[int], bytes] = os.urandom
) -> tuple[bytes, pedersen.Opening, bytes]:
    """Commit to ``value`` and prove its range: ``(commitment, opening, proof)``."""
    _check_bits(bits)
    if not 0 <= value < 1 << bits:
        raise ConfigError(f"the value is outside [0, 2^{bits}): no range proof exists for it")
    commitment, opening = pedersen.commit(value, rng)
    return commitment, opening, _prove(opening, bits, context, rng)


def _parse(proof: bytes, bits: int) -> tuple[list[bytes], r255.Scalar, list[tuple[int, ...]]]:
    if len(proof) != proof_size(bits) or proof[0] != PROOF_VERSION or proof[1] != bits:
        raise InvalidProofError(
            f"not a version {PROOF_VERSION} range proof for {bits} bits "
            f"({proof_size(bits)} bytes); got {len(proof)} bytes"
        )
    at = 2
    upper = []
    for i in range(1, bits):
        upper.append(r255.decode_point(proof[at : at + _P], f"bit commitment {i}"))
        at += _P
    e = r255.decode_scalar(proof[at : at + _S], "challenge")
    at += _S
    responses = []
    for _ in range(bits):
        responses.append(
            tuple(r255.decode_scalar(proof[at + k * _S : at + (k + 1) * _S]) for k in range(3))
        )
        at += 3 * _S
    return upper, e, responses


def _statement(
    commitment: bytes, proof: bytes, bits: int
) -> tuple[list[bytes], r255.Scalar, list[tuple[int, ...]]]:
    try:
        r255.decode_point(commitment, "commitment")
        return _parse(proof, bits)
    except EncodingError as exc:
        raise InvalidProofError(f"range proof refused: {exc}") from None


def _check(
    commitment: bytes,
    context: bytes,
    bits: int,
    upper: list[bytes],
    e: r255.Scalar,
    announced: list[bytes],
) -> None:
    expected = _challenge(context, bits, commitment, upper, announced)
    if not hmac.compare_digest(r255.encode_scalar(expected), r255.encode_scalar(e)):
        raise InvalidProofError(
            "range proof refused: it does not verify for this commitment, range and context"
        )


def verify(commitment: bytes, proof: bytes, context: bytes, bits: int) -> None:
    """Raise `InvalidProofError` unless ``proof`` shows ``commitment`` holds a value below 2^bits.

    ``bits`` and ``context`` are the verifier's own expectations, never read from
    the proof: a proof for a wider range or another context is refused.
    """
    _check_bits(bits)
    upper, e, responses = _statement(commitment, proof, bits)
    # The upper half of the bits goes to another core while this thread derives
    # C_0 and does the lower half: libsodium runs without the GIL (ctypes).
    half = bits * 2 // 5 + 1
    upper_half = _pool().submit(_recompute, upper[half - 1 :], responses[half:], e)
    points = [_lowest_bit_commitment(commitment, upper), *upper[: half - 1]]
    announced = _recompute(points, responses[:half], e) + upper_half.result()
    _check(commitment, context, bits, upper, e, announced)


def _verify_alone(commitment: bytes, proof: bytes, context: bytes, bits: int) -> None:
    """`verify` in the calling thread only (`verify_batch` spreads whole proofs instead)."""
    upper, e, responses = _statement(commitment, proof, bits)
    points = [_lowest_bit_commitment(commitment, upper), *upper]
    _check(commitment, context, bits, upper, e, _recompute(points, responses, e))


def verify_batch(
    items: Sequence[tuple[bytes, bytes, bytes]], bits: int, workers: int | None = None
) -> None:
    """`verify` every ``(commitment, proof, context)``; `BatchProofError` names the first refused.

    Each proof is checked whole in one thread and the proofs are spread over
    ``workers`` threads (default one per core): for many proofs this keeps every
    core busy without the hand-off `verify` makes inside each proof. There is no
    shortcut: every proof gets exactly the checks `verify` makes.
    """
    _check_bits(bits)
    workers = max(1, os.cpu_count() or 1) if workers is None else workers

    def first_refused(start: int, stop: int) -> tuple[int, str] | None:
        for index in range(start, stop):
            commitment, proof, context = items[index]
            try:
                _verify_alone(commitment, proof, context, bits)
            except InvalidProofError as exc:
                return index, str(exc)
        return None

    step = max(1, -(-len(items) // (workers * 4)))
    spans = [(i, min(i + step, len(items))) for i in range(0, len(items), step)]
    if workers <= 1 or len(spans) <= 1:
        found = [first_refused(a, b) for a, b in spans]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rangeproofs") as pool:
            found = list(pool.map(lambda span: first_refused(*span), spans))
    for refused in found:
        if refused is not None:
            raise BatchProofError(*refused)
