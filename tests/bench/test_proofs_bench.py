"""bench/proofs.py: the bundle half runs and meets its goals (the network half is
`make bench`'s)."""

from __future__ import annotations

from pathlib import Path

from sharechain.bench import proofs


def test_bundle_figures_meet_their_goals(tmp_path: Path) -> None:
    got = proofs._bundles(tmp_path / "chain", rounds=5)
    assert got["bundle_bytes"] < got["bundle_bytes_goal"]
    assert got["bundle_verify_ms"] < got["bundle_verify_ms_goal"]
    assert got["bundle_with_membership_bytes"] > got["bundle_bytes"]
