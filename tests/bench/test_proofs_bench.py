"""bench/proofs.py: the bundle half runs and meets its size goal (the network half is
`make bench`'s, and so is the verification time's goal: a time measured beside the
rest of the suite is the machine's load, not the code's; one run took 7.2 ms here
against 0.6-1.1 ms alone)."""

from __future__ import annotations

from pathlib import Path

from sharechain.bench import proofs


def test_bundle_figures_meet_the_size_goal(tmp_path: Path) -> None:
    got = proofs._bundles(tmp_path / "chain", rounds=5)
    assert got["bundle_bytes"] < got["bundle_bytes_goal"]
    assert 0 < got["bundle_verify_ms"] <= got["bundle_verify_median_ms"]
    assert got["bundle_with_membership_bytes"] > got["bundle_bytes"]
