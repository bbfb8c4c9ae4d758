"""`rangeproof.verify_batch`: the checks of `verify` over threads; the first refusal named."""

from __future__ import annotations

import os

import pytest

from sharechain.crypto import pedersen, rangeproof
from sharechain.crypto import ristretto as r255


def batch(n: int, bits: int = 8) -> list[tuple[bytes, bytes, bytes]]:
    items = []
    for i in range(n):
        context = b"batch/%d" % i
        commitment, _, proof = rangeproof.prove_value((i * 37) % (1 << bits), bits, context)
        items.append((commitment, proof, context))
    return items


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_a_good_batch_verifies_and_the_first_bad_proof_is_named(workers: int) -> None:
    items = batch(12)
    rangeproof.verify_batch(items, 8, workers=workers)
    rangeproof.verify_batch([], 8, workers=workers)
    bad = list(items)
    bad[9] = (items[9][0], items[9][1], b"batch/other")  # a proof for another context
    bad[5] = (items[4][0], items[5][1], items[5][2])  # a proof for another commitment
    with pytest.raises(rangeproof.BatchProofError, match="does not verify") as err:
        rangeproof.verify_batch(bad, 8, workers=workers)
    assert err.value.index == 5


def test_a_value_at_the_bound_is_refused_in_a_batch() -> None:
    excess = 1 << 8
    opening = pedersen.Opening(excess, r255.random_scalar())
    commitment = pedersen.commit_with(excess, opening.blinding)
    proof = rangeproof._prove(opening, 8, b"batch/over", os.urandom)
    items = [*batch(3), (commitment, proof, b"batch/over")]
    with pytest.raises(rangeproof.BatchProofError) as err:
        rangeproof.verify_batch(items, 8)
    assert err.value.index == 3
    with pytest.raises(rangeproof.InvalidProofError, match="does not verify"):
        rangeproof.verify(commitment, proof, b"batch/over", 8)


def test_malformed_items_and_ranges_are_refused() -> None:
    items = batch(2)
    with pytest.raises(rangeproof.BatchProofError, match="identity") as err:
        rangeproof.verify_batch([items[0], (r255.IDENTITY, items[1][1], items[1][2])], 8)
    assert err.value.index == 1
    with pytest.raises(rangeproof.BatchProofError, match="for 16 bits"):
        rangeproof.verify_batch(items, 16)
    with pytest.raises(rangeproof.BatchProofError, match="bytes"):
        rangeproof.verify_batch([(items[0][0], items[0][1][:-1], items[0][2])], 8)
