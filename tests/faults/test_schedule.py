"""A real network under load and faults, judged by the history checker.

The short run (in `make test`): 3 nodes, solo ordering, a follower restarted
with its clock 8 s ahead, a follower killed and restarted, another paused and
resumed, a follower's disk filled and freed (where a tmpfs can be mounted: once
while it runs, once while it is down, so that it exits on restart and the run's
supervisor starts it again), a
follower's link to the orderer slowed and then cut; beside the load, a
regulated flow on the ledger and one through the data plane (a real dataset
sealed, fetched by its grantee, refused to an outsider and after its
revocation), and the plaintext searched for in every file. The soak run (`make soak`):
4 nodes on 3 etcd members, a random schedule whose seed is printed (set
SHARECHAIN_SOAK_SEED to replay one).
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import time
from pathlib import Path

import pytest
from test_clock_and_disk_faults import can_mount_tmpfs

from sharechain.errors import ConfigError
from sharechain.faults.dataflow import DATA_FLOW
from sharechain.faults.schedule import (
    FLOW_CODES,
    KINDS,
    RESTART_SECONDS,
    Fault,
    ProxiedNetwork,
    _Supervisor,
    random_schedule,
    run_soak,
)


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
    faults = [
        Fault(0.5, "skew", "regulator", 2.5, amount=8.0),  # its wall clock 8 s ahead
        Fault(2.5, "kill", "hospital-b", 1.5),
        Fault(4.5, "pause", "regulator", 1.5),
        Fault(6.5, "delay", "hospital-b", 1.0, peer="hospital-a"),
        Fault(8.0, "cut", "regulator", 1.5, peer="hospital-a"),
    ]
    small_disks = can_mount_tmpfs(tmp_path)
    if small_disks:  # a tmpfs per node (root only): the disk filled up
        faults.append(Fault(0.5, "fill", "hospital-b", 1.5))  # while the node runs
        # While it is down: restarted at 4.0 on a full disk, it either starts
        # refusing work or, when it cannot create a database file, exits and the
        # run's supervisor starts it again 5 s later (as systemd would); either
        # way it catches up.
        faults.append(Fault(3.0, "fill", "hospital-b", 2.0))
    result = run_soak(tmp_path / "net", seed=1, faults=faults, seconds=10.0)
    report = result.report
    assert result.flow == FLOW_CODES
    assert result.data_flow == DATA_FLOW
    # The scan found the plaintext where it belongs (the owner's source, the
    # grantee's copy), so finding it nowhere else means something.
    assert result.plaintext_copies >= 2 and result.data_keys >= 1
    assert report.nodes == 3 and report.revoked_grants == 2
    assert report.acknowledged > 100
    # The faults were felt: some submissions went unanswered and were retried.
    assert report.acknowledged < report.operations


def test_keys_no_node_writes_are_swept_under_load_on_etcd(tmp_path: Path) -> None:
    # Threat 45 under load: twice a member's etcd credentials write junk under
    # `blocks/`, outside it, into `head` and a lease-less `leader`; the nodes
    # mend and sweep by themselves (the run checks `foreign_keys_swept`), and no
    # acknowledged transaction is lost.
    faults = [Fault(1.0, "junk", "bank-c", 0.5), Fault(4.0, "junk", "hospital-b", 0.5)]
    result = run_soak(tmp_path / "net", seed=2, faults=faults, seconds=8.0, ordering="etcd")
    assert result.flow == FLOW_CODES and result.data_flow == DATA_FLOW
    assert result.report.nodes == 3 and result.report.acknowledged > 50
    with pytest.raises(ConfigError, match="need etcd ordering"):
        run_soak(tmp_path / "solo", seed=2, faults=faults, seconds=1.0)


def test_a_node_that_exits_on_its_own_is_started_again_like_systemd_would(
    tmp_path: Path,
) -> None:
    # A node that cannot start (a disk full at that moment: `make soak` seed
    # 565058250) exits with an error; deployed, systemd starts it again 5 s later
    # (`Restart=on-failure`). The soak's supervisor does the same, and leaves alone
    # a node the schedule killed (its restart is the schedule's).
    net = ProxiedNetwork(tmp_path / "net", orgs=3)
    try:
        net.up(timeout=90)
        supervisor = _Supervisor(net)
        os.kill(net.pid("hospital-b"), signal.SIGTERM)  # exits on its own
        net.kill("regulator")
        t0 = time.monotonic()
        supervisor.sleep_until(t0 + 2.0)
        assert net.exited("hospital-b") is not None and supervisor.restarts == 0
        supervisor.sleep_until(t0 + RESTART_SECONDS + 2.0)
        assert supervisor.restarts == 1 and net.is_running("hospital-b")
        assert not net.is_running("regulator") and net.exited("regulator") is None
        net.restart("regulator")
        net.wait_ready(timeout=60)
    finally:
        net.down()
        net.close_links()


def test_proxied_links_keep_the_targets_scheme(tmp_path: Path) -> None:
    # etcd members speak mutual TLS; the proxy relays bytes, so a node must still be
    # told https:// (told http://, every node of the soak failed to start).
    net = ProxiedNetwork(tmp_path / "net", orgs=2, ordering="etcd")
    try:
        command = net.node_command(net.nodes[0])
        endpoints = command[command.index("--etcd-endpoints") + 1].split(",")
        proxies = {net.link(net.nodes[0].org, f"etcd-{i}").url for i in range(3)}
        assert len(endpoints) == 3
        for url in endpoints:
            assert url.startswith("https://127.0.0.1:")
            assert url.replace("https://", "http://") in proxies
        (peer,) = [a for a in command if a.startswith(f"{net.nodes[1].org}=")]
        assert peer.split("=", 1)[1] == net.link(net.nodes[0].org, net.nodes[1].org).url
    finally:
        net.close_links()


@pytest.mark.soak
def test_soak_random_schedule_on_etcd(tmp_path: Path) -> None:
    seed = int(os.environ.get("SHARECHAIN_SOAK_SEED", random.randrange(1 << 32)))
    print(f"soak seed {seed} (SHARECHAIN_SOAK_SEED={seed} replays it)")
    orgs = ("hospital-a", "hospital-b", "bank-c", "regulator")
    peers = (*orgs, "etcd-0", "etcd-1", "etcd-2")
    seconds = float(os.environ.get("SHARECHAIN_SOAK_SECONDS", "120"))
    # The fill fault needs a tmpfs per node (root); without one it is left out of the draw.
    kinds = KINDS if can_mount_tmpfs(tmp_path) else tuple(k for k in KINDS if k != "fill")
    faults = random_schedule(seed, peers, peers, seconds=seconds, count=1000, kinds=kinds)
    result = run_soak(
        tmp_path / "net", seed=seed, faults=faults, seconds=seconds, orgs=4, ordering="etcd"
    )
    assert result.flow == FLOW_CODES
    assert result.data_flow == DATA_FLOW and result.plaintext_copies >= 2
    assert result.data_keys >= 1
    kinds_seen = sorted({f.kind for f in faults})
    print(
        f"soak seed {seed}: {len(faults)} faults ({', '.join(kinds_seen)}), "
        f"{result.report.operations} operations, "
        f"{result.report.acknowledged} acknowledged, height {result.report.height}, "
        "lost 0, diverged 0, plaintext only at the owner and the grantee, "
        f"no data key in the clear ({result.data_keys} searched), "
        f"{result.restarts} nodes restarted after exiting on their own"
    )
