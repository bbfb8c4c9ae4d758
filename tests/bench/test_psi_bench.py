"""The joint-computation benchmark's pieces, on small inputs: both PSIs agree, sums are checked."""

from __future__ import annotations

from sharechain.bench import psi as bench
from sharechain.crypto import rangeproof


def test_sets_share_half_their_elements() -> None:
    client, holder = bench.sets(101)
    assert len(set(client)) == len(set(holder)) == 101
    assert len(set(client) & set(holder)) == 50


def test_our_psi_and_openmined_find_the_same_intersection() -> None:
    client, holder = bench.sets(300)
    wall, size, found = bench.our_psi(client, holder)
    assert found == 150 and wall > 0
    assert size == (1 + 4 + 32 * 300) + (1 + 4 + 32 * 300 + 4 + 16 * 300)
    for compact in (False, True):
        _, om_size, om_found = bench.openmined_psi(client, holder, compact)
        assert om_found == 150 and om_size > 0


def test_aggregation_and_rangeproof_figures() -> None:
    figures = bench.aggregation_figures(participants=3, length=2)
    assert figures["aggregation_participants"] == 3 and figures["aggregation_values"] == 2
    assert figures["aggregation_participant_cpu_s"] >= 0
    proof = bench.rangeproof_figures(rounds=3)
    assert proof["rangeproof_32bit_bytes"] == rangeproof.proof_size(32)
    assert proof["rangeproof_verify_32bit_ms"] > 0 and proof["rangeproof_verify_32bit_cpu_ms"] > 0
