"""The verification ceiling the ledger and network benchmarks report their share of."""

from __future__ import annotations

import os
import time

import pytest

from sharechain.bench import ledger
from sharechain.bench.ledger import (
    bracketing_rate,
    ceiling_figures,
    cores,
    cpu_ticks,
    ed25519_verify_per_s_per_core,
    idle_share,
)
from sharechain.crypto import signing


def test_the_rate_counts_real_verifications(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = signing.verify

    def counting(*args: bytes) -> None:
        calls.append(1)
        real(*args)

    monkeypatch.setattr("sharechain.bench.ledger.verify", counting)
    rate = ed25519_verify_per_s_per_core(seconds=0.05)
    assert len(calls) >= 200 and rate > 0
    # Every check went through libsodium with a valid signature (a failure would raise).


def test_shares_of_the_ceiling() -> None:
    assert cores() == len(os.sched_getaffinity(0)) >= 1
    one_peer = ceiling_figures(10_000, 25_000)
    assert one_peer == {
        "ed25519_verify_per_s_per_core": 25_000,
        "share": round(10_000 / (25_000 * cores()), 3),
    }
    four_peers = ceiling_figures(10_000, 25_000, sharing=4)
    assert four_peers["share"] == pytest.approx(4 * one_peer["share"], abs=0.002)


def test_the_machines_idle_share() -> None:
    # Read from /proc/stat: ticks only grow, idle within the total.
    before = cpu_ticks()
    assert before is not None and before[1] >= before[0] >= 0
    until = time.perf_counter() + 0.1
    while time.perf_counter() < until:  # let the clock tick
        pass
    after = cpu_ticks()
    assert after is not None and after[0] >= before[0] and after[1] > before[1]
    share = idle_share(before, after)
    assert share is not None and 0.0 <= share <= 1.0
    # Two cores over 100 ticks, one of them idle for 60: 0.3 of the machine idled.
    assert idle_share((1_000, 5_000), (1_060, 5_200)) == 0.3
    assert idle_share(before, before) is None and idle_share(None, after) is None


def test_a_run_is_judged_against_the_faster_of_two_samples_around_it() -> None:
    # A sample taken in a slow moment of the host must not flatter the share.
    assert bracketing_rate(15_000.0, 18_000.0) == bracketing_rate(18_000.0, 15_000.0) == 18_000.0
    slow = ceiling_figures(9_000, 15_000.0)["share"]
    judged = ceiling_figures(9_000, bracketing_rate(15_000.0, 18_000.0))["share"]
    assert judged < slow


def test_the_ledger_benchmark_reports_both_samples_and_its_share_of_the_faster() -> None:
    figures = ledger.run(transactions=600, block_size=300, orgs=2)
    before = figures["ed25519_verify_per_s_per_core_before"]
    after = figures["ed25519_verify_per_s_per_core_after"]
    assert before > 0 and after > 0
    assert figures["ed25519_verify_per_s_per_core"] == max(before, after)
    assert figures["commit_share_of_ceiling"] == pytest.approx(
        figures["commit_tx_per_s"] / (max(before, after) * cores()), abs=0.002
    )
