"""The aggregation benchmark's pieces, on small inputs: real sessions, sums checked."""

from __future__ import annotations

from pathlib import Path

from sharechain.bench import aggregation as bench
from sharechain.crypto import rangeproof


def test_a_session_is_measured_per_party_and_its_sums_are_exact(tmp_path: Path) -> None:
    figures = bench.session_figures(tmp_path / "c", participants=3, length=2)
    assert figures["aggregation_participants"] == 3 and figures["aggregation_values"] == 2
    assert figures["aggregation_dropped"] == 0 and figures["aggregation_sums_exact"] is True
    assert (
        0 < figures["aggregation_participant_cpu_s"] <= figures["aggregation_participant_cpu_max_s"]
    )
    assert figures["aggregation_aggregator_cpu_s"] > 0 and figures["aggregation_total_wall_s"] > 0


def test_dropouts_within_the_limit_are_measured_with_exact_sums(tmp_path: Path) -> None:
    figures = bench.session_figures(tmp_path / "c", participants=4, length=2, dropouts=1)
    assert figures["aggregation_dropouts_dropped"] == 1
    assert figures["aggregation_dropouts_sums_exact"] is True


def test_rangeproof_figures() -> None:
    proof = bench.rangeproof_figures(rounds=3)
    assert proof["rangeproof_32bit_bytes"] == rangeproof.proof_size(32)
    assert proof["rangeproof_verify_32bit_ms"] > 0 and proof["rangeproof_verify_32bit_cpu_ms"] > 0
    assert proof["rangeproof_verify_32bit_goal_ms"] == bench.GOAL_VERIFY_MS
    assert proof["rangeproof_verify_batch_32bit_cpu_ms"] > 0
