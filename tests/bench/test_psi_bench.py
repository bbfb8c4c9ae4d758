"""The PSI benchmark's pieces, on small inputs: both PSIs find the same intersection."""

from __future__ import annotations

from sharechain.bench import psi as bench


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
