"""Attack 43: a member stamps its block with a time far from everyone's clock.

Any member's node may append a block to the ordering log. A block whose time
is more than the bound (`max_clock_skew`) away from a node's clock is refused
by that node; before this defence every node then halted, so one member
stopped the consortium by signing an otherwise valid block stamped an hour
ahead, or stamped with its parent's time after the chain had been idle. Now
every node refuses it, waits for its peers, finds none committed it, keeps it
as evidence and voids it; the leader appends there and the chain goes on.

Clocks differ a little, so a block near the bound is *uncertain*: no node
commits it before its peers had time to refuse it, and a node whose own clock
is wrong (its peers all commit the blocks it refuses) halts as before rather
than voiding honest blocks. Real nodes on a real 3-member etcd.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))

from node_helpers import Consortium, Running, etcd_network, etcd_nodes, run_node, shutdown
from test_replication import _records, wait_until

from sharechain.faults.proxy import LinkProxy
from sharechain.ledger.blocks import decode_block, encode_block
from sharechain.ordering.etcd_log import EtcdLog
from sharechain.ordering.etcd_process import EtcdCluster, free_ports

HOSTILE = "bank-b"
HONEST = ("hospital-a", "regulator")
SKEW = 6.0
"""The nodes' bound in seconds; a block between 3 and 6 s away is uncertain."""
POLL = 0.5
"""Seconds between a node's polls of its peers (`etcd_nodes` polls as often)."""

Network = tuple[EtcdCluster, Consortium, dict[str, Running]]


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    with etcd_network(tmp_path, HONEST, max_clock_skew=SKEW) as started:
        yield started


def _settle(consortium: Consortium, running: dict[str, Running]) -> Running:
    """Commit a few records; the leader's node once every node holds them."""
    wait_until(lambda: all(r.node.leader is not None for r in running.values()))
    a = running["hospital-a"]
    with a.client() as client:
        assert {r.code for r in client.submit(_records(consortium, "hospital-a", 3))} == {"valid"}
    wait_until(lambda: len({r.node.ledger.height for r in running.values()}) == 1)
    return a


def _hostile_block(consortium: Consortium, at: Running, timestamp_ms: int) -> tuple[int, bytes]:
    """The next height's block, built and signed by the hostile member with its real key
    and valid in every way but its time (`Ledger.build_block` keeps it at or after its
    parent's)."""
    with at.node.commit_lock:
        block, _ = at.node.ledger.build_block(
            [], orderer=HOSTILE, key=consortium.keys(HOSTILE).signing, timestamp=timestamp_ms
        )
    return block.height, encode_block(block)


def _goes_on(consortium: Consortium, running: dict[str, Running], height: int) -> None:
    """Honest records commit at `height`, every node agrees and none halted."""
    with running["hospital-a"].client() as client:
        receipts = client.submit(_records(consortium, "hospital-a", 4, tag=5), timeout=30)
    assert {r.code for r in receipts} == {"valid"} and {r.height for r in receipts} == {height}
    wait_until(lambda: all(r.node.ledger.height >= height for r in running.values()))
    assert len({r.node.store.head() for r in running.values()}) == 1
    assert not any(r.node.halted for r in running.values())


def _voided(cluster: EtcdCluster, consortium: Consortium, height: int, bad: bytes) -> None:
    with EtcdLog(cluster.endpoints) as log:
        assert log.get(height) != bad
    for org in HONEST:  # kept as evidence, naming the hostile member
        (kept,) = (consortium.node_dir(org) / "evidence").glob(f"invalid-block-{height}-*")
        assert kept.read_bytes() == bad and HOSTILE in kept.name


def test_a_member_s_block_stamped_an_hour_ahead_is_voided_and_nobody_halts(
    network: Network,
) -> None:
    cluster, consortium, running = network
    a = _settle(consortium, running)
    height, bad = _hostile_block(consortium, a, int((time.time() + 3600) * 1000))
    with EtcdLog(cluster.endpoints) as log:
        assert log.append(height, bad)  # the hostile member's node appends it
    _goes_on(consortium, running, height)
    _voided(cluster, consortium, height, bad)


def test_a_member_s_block_stamped_with_an_idle_chain_s_old_time_is_voided(
    network: Network,
) -> None:
    cluster, consortium, running = network
    a = _settle(consortium, running)
    time.sleep(SKEW + 1)  # the chain idles past the bound; the parent's time is now too old
    height, bad = _hostile_block(consortium, a, 0)  # stamped with its parent's time
    with EtcdLog(cluster.endpoints) as log:
        assert log.append(height, bad)
    _goes_on(consortium, running, height)
    _voided(cluster, consortium, height, bad)


def test_a_block_near_the_bound_is_committed_after_the_peers_had_time_to_refuse_it(
    network: Network, caplog: pytest.LogCaptureFixture
) -> None:
    cluster, consortium, running = network
    a = _settle(consortium, running)
    stamped = time.time() + SKEW - 1.0  # within the bound, more than half of it ahead
    height, near = _hostile_block(consortium, a, int(stamped * 1000))
    with EtcdLog(cluster.endpoints) as log:
        assert log.append(height, near)
    wait_until(lambda: all(r.node.ledger.height >= height for r in running.values()), timeout=30)
    took = time.time() - (stamped - SKEW + 1.0)
    for r in running.values():  # every node committed the hostile member's block itself
        assert r.node.store.block_bytes(height) == near and r.node.halted is None
    waited = [m for m in caplog.messages if f"block {height} signed by {HOSTILE}" in m]
    assert len(waited) == len(HONEST) and all("near the" in m for m in waited)
    assert took >= 2.0  # nobody committed it before a refusing peer would have voided it
    assert not (consortium.node_dir("hospital-a") / "evidence").exists()
    _goes_on(consortium, running, height + 1)


def _wrong_clock_node(
    consortium: Consortium,
    cluster: EtcdCluster,
    running: dict[str, Running],
    beside: list[Running],
    urls: dict[str, str] | None = None,
) -> Running:
    """The regulator's node, its clock an hour ahead (every live block looks an hour
    old to it), caught up with `running` (reached at `urls` where given); added to
    `beside`, to be stopped with them."""
    urls = urls or {}
    wrong = run_node(
        consortium,
        "regulator",
        ordering="etcd",
        etcd_endpoints=cluster.endpoints,
        peers=tuple((org, urls.get(org, r.url)) for org, r in running.items()),
        max_wait=0.01,
        poll_interval=POLL,
        max_clock_skew=SKEW,
        now=lambda: time.time() + 3600,
    )
    beside.append(wrong)
    wait_until(lambda: wrong.node.caught_up)
    return wrong


@contextmanager
def _honest_pair(
    tmp_path: Path,
) -> Iterator[tuple[EtcdCluster, Consortium, dict[str, Running], list[Running]]]:
    """hospital-a's and bank-b's nodes on a 3-member etcd, settled, and a list for the
    nodes a test starts beside them: all are stopped at the end."""
    consortium = Consortium.make(tmp_path)
    with EtcdCluster(tmp_path / "etcd", members=3) as cluster:
        running = etcd_nodes(consortium, cluster, ("hospital-a", "bank-b"), max_clock_skew=SKEW)
        beside: list[Running] = []
        try:
            _settle(consortium, running)
            yield cluster, consortium, running, beside
        finally:
            for started in [*running.values(), *beside]:
                shutdown(started)


def test_a_node_whose_own_clock_is_wrong_halts_rather_than_void_honest_blocks(
    tmp_path: Path,
) -> None:
    with _honest_pair(tmp_path) as (cluster, consortium, running, beside):
        a = running["hospital-a"]
        wrong = _wrong_clock_node(consortium, cluster, running, beside)
        height = a.node.ledger.height + 1
        with a.client() as client:
            receipts = client.submit(_records(consortium, "hospital-a", 2, tag=7), timeout=30)
        assert {r.height for r in receipts} == {height}
        wait_until(lambda: wrong.node.halted is not None, timeout=30)
        assert "behind this node's clock" in str(wrong.node.halted)
        assert wrong.node.ledger.height == height - 1
        with EtcdLog(cluster.endpoints) as log:  # the honest block stays in the log
            assert decode_block(log.get(height) or b"").header.orderer in running
        assert not (consortium.node_dir("regulator") / "evidence").exists()
        with a.client() as client:  # and the others go on
            more = client.submit(_records(consortium, "hospital-a", 2, tag=8), timeout=30)
        assert {r.code for r in more} == {"valid"}


def test_a_node_whose_own_clock_is_wrong_waits_for_a_late_peer_and_halts(tmp_path: Path) -> None:
    """Its one judge (the peer that did not order the block) says nothing for three
    times as long as the node used to wait: the node waits for that peer's word
    instead of voiding the honest block, and halts once the peer shows it committed it."""
    with _honest_pair(tmp_path) as (cluster, consortium, running, beside):
        leader = running["hospital-a"].node.leader
        assert leader is not None
        orderer = running[leader.org]
        judge = next(r for org, r in running.items() if org != leader.org)
        port = urlsplit(judge.url).port
        assert port is not None
        # The wrong node reaches the judge through a link that can be cut.
        with LinkProxy(port) as link:
            wrong = _wrong_clock_node(
                consortium, cluster, running, beside, {judge.node.org: link.url}
            )
            wait_until(lambda: judge.node.org in {p.org for p in wrong.node.book.peers()})
            link.cut()  # the judge is loaded, or its answers are lost, for a while
            height = orderer.node.ledger.height + 1
            with orderer.client() as client:
                records = _records(consortium, leader.org, 2, tag=7)
                assert {r.height for r in client.submit(records, timeout=30)} == {height}
            honest = orderer.node.store.block_bytes(height)
            time.sleep(3 * (2 * POLL + 1.0))  # the old wait was two polls and a second
            assert wrong.node.halted is None and wrong.node.ledger.height == height - 1
            with EtcdLog(cluster.endpoints) as log:
                assert log.get(height) == honest  # not voided: the wrong node still waits
            link.restore()
            wait_until(lambda: wrong.node.halted is not None, timeout=30)
        assert "behind this node's clock" in str(wrong.node.halted)
        with EtcdLog(cluster.endpoints) as log:
            assert log.get(height) == honest
        sample = wrong.node.metrics.registry.get_sample_value
        labels = {"orderer": leader.org, "outcome": "halted"}
        assert sample("sharechain_member_blocks_judged_total", labels) == 1
        waited = sample("sharechain_member_block_judging_seconds_sum") or 0.0
        assert waited >= 3 * (2 * POLL + 1.0)  # it waited for the silent judge
        assert not (consortium.node_dir("regulator") / "evidence").exists()


def test_a_leader_whose_own_clock_is_wrong_is_left_behind_and_halts(tmp_path: Path) -> None:
    """Its followers' signed forwards look an hour old to it and are refused, so they
    doubt it at once (threat 40) and append their own blocks, on which it halts."""
    consortium = Consortium.make(tmp_path)
    with EtcdCluster(tmp_path / "etcd", members=3) as cluster:
        orgs = ("regulator", "hospital-a", "bank-b")
        ports = dict(zip(orgs, free_ports(len(orgs)), strict=True))

        def start(org: str, **options: object) -> Running:
            return run_node(
                consortium,
                org,
                port=ports[org],
                ordering="etcd",
                etcd_endpoints=cluster.endpoints,
                peers=tuple((o, f"http://127.0.0.1:{p}") for o, p in ports.items() if o != org),
                max_wait=0.01,
                poll_interval=0.5,
                max_clock_skew=SKEW,
                **options,
            )

        started = [start("regulator", now=lambda: time.time() + 3600)]
        try:
            wrong = started[0]
            wait_until(lambda: wrong.node.leader is not None)
            assert wrong.node.leader is not None and wrong.node.leader.org == "regulator"
            started += [start("hospital-a"), start("bank-b")]
            a = started[1]
            with a.client() as client:
                receipts = client.submit(_records(consortium, "hospital-a", 2), timeout=30)
            assert {r.code for r in receipts} == {"valid"}
            wait_until(lambda: wrong.node.halted is not None)
            assert "behind this node's clock" in str(wrong.node.halted)
            wait_until(lambda: started[2].node.ledger.height == a.node.ledger.height)
            assert a.node.store.head() == started[2].node.store.head()
            assert a.node.halted is None and started[2].node.halted is None
        finally:
            for node in started:
                shutdown(node)
