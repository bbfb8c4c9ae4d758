"""The verification ceiling the ledger and network benchmarks report their share of."""

from __future__ import annotations

import os

import pytest

from sharechain.bench.ledger import ceiling_figures, cores, ed25519_verify_per_s_per_core
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
