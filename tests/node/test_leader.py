"""etcd mode: one leader builds blocks, the others forward; the lease moves when it dies."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from node_helpers import Consortium, Running, run_node, shutdown, shutdown_all

from sharechain.contracts import default_registry
from sharechain.errors import OrderingError
from sharechain.ledger.blocks import encode_block
from sharechain.ledger.contract import BlockContext, ContractRegistry, State
from sharechain.ledger.transactions import SignedTransaction, sign_transaction
from sharechain.node.replication import apply_remote
from sharechain.node.server import ServerThread
from sharechain.node.service import Node, NodeConfig
from sharechain.ordering.etcd_lease import Election, Leader
from sharechain.ordering.etcd_log import EtcdLog
from sharechain.ordering.etcd_process import EtcdCluster, free_ports

ORGS = ("hospital-a", "bank-b", "regulator")


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)


def _records(consortium: Consortium, org: str, n: int, tag: int) -> list[bytes]:
    key = consortium.keys(org).signing
    return [
        sign_transaction(key, "notary.record", org, {"digest": bytes([tag, i % 256]) * 16}).raw
        for i in range(n)
    ]


def _won(running: Running, outcome: str = "won") -> float:
    value = running.node.metrics.registry.get_sample_value(
        "sharechain_blocks_appended_total", {"outcome": outcome}
    )
    return value or 0.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    with EtcdCluster(tmp_path / "etcd", members=3) as running:
        yield running


def test_election_campaign_keepalive_takeover_and_expiry(cluster: EtcdCluster) -> None:
    with EtcdLog(cluster.endpoints, prefix="election-test/") as log:
        election = Election(log, ttl=1)
        assert election.current() is None
        first = election.grant()
        assert election.campaign("hospital-a", first) == Leader("hospital-a", first)
        # Another organisation finds the key taken and learns who holds it.
        other = election.grant()
        assert election.campaign("bank-b", other) == Leader("hospital-a", first)
        assert election.keep_alive(first) >= 1
        # The same organisation restarted (new lease) takes its own key over at once.
        again = election.grant()
        assert election.campaign("hospital-a", again) == Leader("hospital-a", again)
        # Revoking the lease frees the key; an expired lease cannot be renewed.
        election.revoke(again)
        assert election.current() is None
        assert election.campaign("bank-b", other) == Leader("bank-b", other)
        time.sleep(3.5)  # no keepalive: etcd ends the lease and deletes the key
        assert election.keep_alive(other) == 0
        assert election.current() is None


def _start(
    consortium: Consortium, cluster: EtcdCluster, ports: dict[str, int], org: str
) -> Running:
    peers = tuple((o, f"http://127.0.0.1:{p}") for o, p in ports.items() if o != org)
    node = Node(
        NodeConfig(
            data_dir=consortium.node_dir(org),
            org=org,
            ordering="etcd",
            etcd_endpoints=cluster.endpoints,
            peers=peers,
            max_wait=0.01,
            max_block_txs=50,
            poll_interval=0.5,
        )
    )
    node.start()
    return Running(node, ServerThread(node, port=ports[org]).start(), consortium)


def test_only_the_leader_builds_and_a_new_one_takes_over(
    consortium: Consortium, cluster: EtcdCluster
) -> None:
    ports = dict(zip(ORGS, free_ports(len(ORGS)), strict=True))
    nodes = {org: _start(consortium, cluster, ports, org) for org in ORGS}
    try:
        wait_until(lambda: all(r.node.leader is not None for r in nodes.values()))
        leaders = {r.node.leader for r in nodes.values()}
        assert len(leaders) == 1
        (leader,) = leaders
        assert leader is not None
        # Every organisation submits through its own node; only the leader appends.
        for i, (org, running) in enumerate(nodes.items()):
            with running.client() as client:
                receipts = client.submit(_records(consortium, org, 60, tag=i))
            assert {r.code for r in receipts} == {"valid"}
        wait_until(lambda: len({r.node.ledger.height for r in nodes.values()}) == 1)
        height = nodes[leader.org].node.ledger.height
        assert _won(nodes[leader.org]) == height  # every block after genesis
        assert all(
            _won(r) == 0 and _won(r, "lost") == 0 for o, r in nodes.items() if o != leader.org
        )

        # The leader stops: its lease is revoked, another node leads, submissions go on.
        shutdown(nodes.pop(leader.org))
        wait_until(
            lambda: all(
                r.node.leader is not None and r.node.leader.org != leader.org
                for r in nodes.values()
            ),
            timeout=10,
        )
        for i, (org, running) in enumerate(nodes.items()):
            with running.client() as client:
                receipts = client.submit(_records(consortium, org, 30, tag=10 + i))
            assert {r.code for r in receipts} == {"valid"}
        wait_until(lambda: len({r.node.store.head() for r in nodes.values()}) == 1)
        new_leader = next(iter(nodes.values())).node.leader
        assert new_leader is not None
        assert _won(nodes[new_leader.org]) > 0
    finally:
        shutdown_all(nodes.values())


def test_a_leader_holding_the_log_pauses_its_watch_and_resumes_on_a_foreign_block(
    consortium: Consortium, cluster: EtcdCluster
) -> None:
    running = run_node(
        consortium,
        "hospital-a",
        ordering="etcd",
        etcd_endpoints=cluster.endpoints,
        max_wait=0.01,
        max_block_txs=50,
    )
    outsider = Node(NodeConfig(data_dir=consortium.node_dir("bank-b"), org="bank-b"))
    try:
        node = running.node
        wait_until(lambda: node.leader is not None and node.leader.org == "hospital-a")
        with running.client() as client:
            receipts = client.submit(_records(consortium, "hospital-a", 20, tag=1))
        assert {r.code for r in receipts} == {"valid"}
        # Every block in the log is one the leader appended and committed: its watch rests.
        wait_until(lambda: node.log_is_mine and node.watch_paused)
        head = node.ledger.height

        # Another writer (a leader that has not noticed it was replaced) appends a block.
        for h in range(1, head + 1):
            data = node.store.block_bytes(h)
            assert data is not None and apply_remote(outsider, h, data)
        block, _ = outsider.ledger.build_block(
            _records(consortium, "bank-b", 5, tag=2),
            orderer="bank-b",
            key=consortium.keys("bank-b").signing,
            timestamp=int(time.time() * 1000),
        )
        with EtcdLog(cluster.endpoints) as log:
            assert log.append(head + 1, encode_block(block))

        # The leader's next append loses that height; it commits the foreign block
        # from the resumed watch and puts its transactions in the block after.
        with running.client() as client:
            receipts = client.submit(_records(consortium, "hospital-a", 10, tag=3))
        assert {r.code for r in receipts} == {"valid"}
        assert {r.height for r in receipts} == {head + 2}
        foreign = node.store.block_meta(head + 1)
        assert foreign is not None and foreign.hash == block.hash()
        assert _won(running, "lost") == 1
    finally:
        outsider.store.close()
        shutdown(running)


def _exits(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    raise SystemExit("a builder that must die")


def test_a_leader_whose_builder_dies_gives_up_the_lease_at_once(
    consortium: Consortium, cluster: EtcdCluster
) -> None:
    registry = default_registry().merged(ContractRegistry({"test.exit": _exits}))
    node = Node(
        NodeConfig(
            data_dir=consortium.node_dir("hospital-a"),
            org="hospital-a",
            ordering="etcd",
            etcd_endpoints=cluster.endpoints,
            max_wait=0.01,
        ),
        registry=registry,
    )
    node.start()
    try:
        wait_until(lambda: node.leader is not None and node.leader.org == "hospital-a")
        key = consortium.keys("hospital-a").signing
        doomed = node.submit_batch([sign_transaction(key, "test.exit", "hospital-a", {}).raw])
        with pytest.raises(OrderingError, match="builder stopped"):
            doomed.result(timeout=10)
        died = time.monotonic()
        with EtcdLog(cluster.endpoints, prefix=node.config.etcd_prefix) as log:
            election = Election(log)
            # Well within the lease's TTL: the key was revoked, not left to expire.
            wait_until(lambda: election.current() is None, timeout=election.ttl / 2)
            assert time.monotonic() - died < election.ttl
            time.sleep(1.0)  # two election rounds: the node does not campaign again
            assert election.current() is None
        assert not node.may_lead and node.leader is None
    finally:
        node.stop()
