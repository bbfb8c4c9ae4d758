"""The fault schedule's node faults: a clock skewed (the node restarted with its wall clock
off) and a disk filled to the last byte (a tmpfs per node, never the real disk). They run
in `test_schedule.py`'s short run; here, how they are drawn."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sharechain.faults.schedule import NODE_KINDS, random_schedule


def can_mount_tmpfs(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)],
        capture_output=True,
        check=False,
    )
    if done.returncode == 0:
        subprocess.run(["umount", str(probe)], check=False)
    return done.returncode == 0


def test_skew_and_fill_are_drawn_for_nodes_only_with_a_tolerated_skew() -> None:
    targets = ("a", "b", "c", "etcd-0", "etcd-1")
    faults = random_schedule(5, targets, targets, seconds=600, count=300)
    drawn = [f for f in faults if f.kind in NODE_KINDS]
    assert {f.kind for f in drawn} == set(NODE_KINDS)
    assert all(not f.org.startswith("etcd-") for f in drawn)
    skews = [f.amount for f in faults if f.kind == "skew"]
    assert all(2.0 <= abs(a) <= 10.0 for a in skews) and min(skews) < 0 < max(skews)
    old = random_schedule(5, targets, targets, seconds=600, count=300, kinds=("kill", "pause"))
    assert {f.kind for f in old} == {"kill", "pause"}
