"""Soundness and completeness tests of the bit-decomposition range proofs."""

from __future__ import annotations

import os
import random

import pytest

from sharechain.crypto import pedersen, rangeproof
from sharechain.crypto import ristretto as r255
from sharechain.errors import ConfigError

CONTEXT = b"session-7/bank-a"


@pytest.mark.parametrize(("value", "bits"), [(0, 32), (1, 32), (2**32 - 1, 32), (5, 3), (0, 1)])
def test_values_in_range_verify(value: int, bits: int) -> None:
    commitment, opening, proof = rangeproof.prove_value(value, bits, CONTEXT)
    assert len(proof) == rangeproof.proof_size(bits)
    rangeproof.verify(commitment, proof, CONTEXT, bits)
    pedersen.verify_opening(commitment, opening)


def test_prover_refuses_values_out_of_range() -> None:
    with pytest.raises(ConfigError, match="outside"):
        rangeproof.prove_value(2**8, 8, CONTEXT)
    with pytest.raises(ConfigError, match="outside"):
        rangeproof.prove(pedersen.Opening(2**8, 1), 8, CONTEXT)
    with pytest.raises(ConfigError, match="bits"):
        rangeproof.prove_value(1, 65, CONTEXT)


@pytest.mark.parametrize("excess", [2**16, 2**16 + 3, r255.ORDER - 1])
def test_a_value_at_or_above_the_bound_cannot_produce_an_accepted_proof(excess: int) -> None:
    # Run the honest prover's steps on an out-of-range value (bypassing its check):
    # the lowest bit commitment then hides 2^bits more than a bit and fails.
    opening = pedersen.Opening(excess, r255.random_scalar())
    commitment = pedersen.commit_with(excess, opening.blinding)
    proof = rangeproof._prove(opening, 16, CONTEXT, os.urandom)
    with pytest.raises(rangeproof.InvalidProofError, match="does not verify"):
        rangeproof.verify(commitment, proof, CONTEXT, 16)


def test_every_modified_byte_is_refused() -> None:
    commitment, _, proof = rangeproof.prove_value(123, 8, CONTEXT)
    for i in range(len(proof)):
        forged = bytearray(proof)
        forged[i] ^= 1 << (i % 8)
        with pytest.raises(rangeproof.InvalidProofError):
            rangeproof.verify(commitment, bytes(forged), CONTEXT, 8)


def test_proof_is_bound_to_context_commitment_and_range() -> None:
    commitment, _, proof = rangeproof.prove_value(77, 8, CONTEXT)
    with pytest.raises(rangeproof.InvalidProofError, match="does not verify"):
        rangeproof.verify(commitment, proof, b"session-7/bank-b", 8)
    other, _ = pedersen.commit(77)
    with pytest.raises(rangeproof.InvalidProofError, match="does not verify"):
        rangeproof.verify(other, proof, CONTEXT, 8)
    with pytest.raises(rangeproof.InvalidProofError, match="for 16 bits"):
        rangeproof.verify(commitment, proof, CONTEXT, 16)
    with pytest.raises(rangeproof.InvalidProofError, match="identity"):
        rangeproof.verify(r255.IDENTITY, proof, CONTEXT, 8)
    with pytest.raises(rangeproof.InvalidProofError, match="bytes"):
        rangeproof.verify(commitment, proof[:-1], CONTEXT, 8)


def test_random_forgeries_are_refused() -> None:
    rng = random.Random(7)
    commitment, _, proof = rangeproof.prove_value(3, 4, CONTEXT)
    for _ in range(50):
        forged = proof[:2] + rng.randbytes(len(proof) - 2)
        with pytest.raises(rangeproof.InvalidProofError):
            rangeproof.verify(commitment, forged, CONTEXT, 4)
