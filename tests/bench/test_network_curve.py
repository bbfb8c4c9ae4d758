"""The network benchmark's bounded figures: the heaviest load whose p99 meets the target."""

from __future__ import annotations

from typing import Any

from sharechain.bench.ledger import ceiling_figures
from sharechain.bench.network import P99_TARGET_MS, _bounded_figures, _within_target

RATE = 18_000.0
"""Verifications a second per core the shares are judged against."""


def _run(batch: int, tx_per_s: float, p99_ms: float | None) -> dict[str, Any]:
    """The figures `_measure` returns for one lighter run (one client per organisation)."""
    return {
        "batch": batch,
        "clients": 4,
        "network_tx_per_s": tx_per_s,
        "network_p50_ms": None if p99_ms is None else p99_ms / 2,
        "network_p99_ms": p99_ms,
        "cpu_us_per_tx": 900,
        "transactions": 10_000,
        "blocks": 40,
        "peers": 4,
    }


def test_the_fastest_load_under_the_target_is_reported_with_the_whole_curve() -> None:
    curve = [_run(50, 1_250.0, 350.0), _run(100, 1_715.0, 450.0), _run(150, 1_850.0, 606.0)]
    figures = _bounded_figures(curve, RATE)
    assert figures["network_bounded_tx_per_s"] == 1_715.0
    assert figures["network_bounded_p99_ms"] == 450.0
    assert figures["network_bounded_in_flight"] == 400  # 100 a client, four organisations
    assert figures["network_bounded_within_target"] is True
    assert figures["network_bounded_p99_target_ms"] == P99_TARGET_MS
    expected = ceiling_figures(1_715.0, RATE, sharing=4)["share"]
    assert figures["network_bounded_share_of_ceiling"] == expected
    points = figures["network_bounded_curve"]
    assert [p["in_flight"] for p in points] == [200, 400, 600]
    assert [p["p99_ms"] for p in points] == [350.0, 450.0, 606.0]
    assert points[2]["share_of_ceiling"] > expected  # faster, but over the target: not taken
    assert all(p["tx_per_block"] == 250 for p in points)


def test_a_faster_light_load_wins_over_a_slower_heavier_one() -> None:
    # The host slowed during the second run: throughput fell although both met the target.
    curve = [_run(50, 1_400.0, 300.0), _run(100, 1_300.0, 480.0), _run(150, 1_900.0, 700.0)]
    figures = _bounded_figures(curve, RATE)
    assert figures["network_bounded_tx_per_s"] == 1_400.0
    assert figures["network_bounded_in_flight"] == 200


def test_no_load_under_the_target_reports_the_lightest_and_says_so() -> None:
    curve = [_run(50, 900.0, 650.0)]
    figures = _bounded_figures(curve, RATE)
    assert figures["network_bounded_within_target"] is False
    assert figures["network_bounded_tx_per_s"] == 900.0
    assert figures["network_bounded_p99_ms"] == 650.0


def test_a_run_without_latency_samples_does_not_meet_the_target() -> None:
    assert not _within_target(_run(50, 0.0, None))
    assert not _within_target(_run(50, 1_000.0, P99_TARGET_MS))  # under, not at
    assert _within_target(_run(50, 1_000.0, P99_TARGET_MS - 0.1))
