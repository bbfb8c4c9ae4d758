"""A real network under load and faults, judged by the history checker.

The short run (in `make test`): 3 nodes, solo ordering, a follower killed and
restarted, another paused and resumed, a follower's link to the orderer slowed
and then cut. The soak run (`make soak`): 4 nodes on 3 etcd members, a random
schedule whose seed is printed (set SHARECHAIN_SOAK_SEED to replay one).
"""

from __future__ import annotations

import itertools
import os
import random
from pathlib import Path

import pytest

from sharechain.faults.schedule import FLOW_CODES, KINDS, Fault, random_schedule, run_soak


def test_random_schedules_are_reproducible_and_bounded() -> None:
    orgs = ("a", "b", "c")
    one = random_schedule(7, orgs, orgs, seconds=30, count=12)
    assert one == random_schedule(7, orgs, orgs, seconds=30, count=12)
    assert one != random_schedule(8, orgs, orgs, seconds=30, count=12)
    assert one and {f.kind for f in one} <= set(KINDS)
    for before, after in itertools.pairwise(one):
        assert before.at + before.duration <= after.at  # no two faults at once
    assert one[-1].at + one[-1].duration <= 30
    assert all(f.peer not in ("", f.org) for f in one if f.kind in ("delay", "cut"))
    members = random_schedule(3, (*orgs, "etcd-0"), (*orgs, "etcd-0"), seconds=300, count=200)
    assert {f.org for f in members if f.kind in ("kill", "pause")} >= {"etcd-0", "a"}
    assert all(not f.org.startswith("etcd-") for f in members if f.kind in ("delay", "cut"))


def test_short_run_with_a_kill_a_pause_a_delay_and_a_cut(tmp_path: Path) -> None:
    faults = (
        Fault(1.0, "kill", "hospital-b", 2.0),
        Fault(4.0, "pause", "regulator", 1.5),
        Fault(6.0, "delay", "hospital-b", 1.0, peer="hospital-a"),
        Fault(7.5, "cut", "regulator", 1.5, peer="hospital-a"),
    )
    result = run_soak(tmp_path / "net", seed=1, faults=faults, seconds=10.0)
    report = result.report
    assert result.flow == FLOW_CODES
    assert report.nodes == 3 and report.revoked_grants == 1
    assert report.acknowledged > 100
    # The faults were felt: some submissions went unanswered and were retried.
    assert report.acknowledged < report.operations


@pytest.mark.soak
def test_soak_random_schedule_on_etcd(tmp_path: Path) -> None:
    seed = int(os.environ.get("SHARECHAIN_SOAK_SEED", random.randrange(1 << 32)))
    print(f"soak seed {seed} (SHARECHAIN_SOAK_SEED={seed} replays it)")
    orgs = ("hospital-a", "hospital-b", "bank-c", "regulator")
    peers = (*orgs, "etcd-0", "etcd-1", "etcd-2")
    seconds = float(os.environ.get("SHARECHAIN_SOAK_SECONDS", "120"))
    faults = random_schedule(seed, peers, peers, seconds=seconds, count=1000)
    result = run_soak(
        tmp_path / "net", seed=seed, faults=faults, seconds=seconds, orgs=4, ordering="etcd"
    )
    assert result.flow == FLOW_CODES
    print(
        f"soak seed {seed}: {len(faults)} faults, {result.report.operations} operations, "
        f"{result.report.acknowledged} acknowledged, height {result.report.height}, "
        "lost 0, diverged 0"
    )
