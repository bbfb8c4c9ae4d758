"""Real processes on loopback: 4 node processes and 3 etcd members.

Covers the sharing of work between organisations over HTTP, a node killed
under load catching up to the same state hash, and etcd members failing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_replication import wait_until

from sharechain.errors import OrderingError, SharechainError
from sharechain.ledger.transactions import sign_transaction
from sharechain.node.launcher import LocalNetwork


@pytest.fixture
def etcd_network(tmp_path: Path) -> Iterator[LocalNetwork]:
    net = LocalNetwork(
        tmp_path / "net",
        orgs=4,
        ordering="etcd",
        node_options=("--log-level", "warning", "--max-wait-ms", "10"),
    )
    net.up(timeout=60)
    try:
        yield net
    finally:
        net.down()


def _raws(net: LocalNetwork, org: str, n: int, tag: int) -> list[bytes]:
    key = net.keys(org).signing
    return [
        sign_transaction(
            key, "notary.record", org, {"digest": tag.to_bytes(4, "big") + i.to_bytes(28, "big")}
        ).raw
        for i in range(n)
    ]


def _height(net: LocalNetwork, org: str) -> int:
    with net.client(org) as c:
        return int(c.status()["height"])


def _heads(net: LocalNetwork) -> set[tuple[int, str, str]]:
    out = set()
    for n in net.nodes:
        with net.client(n.org) as c:
            st = c.status()
        out.add((st["height"], st["head_hash"], st["state_root"]))
    return out


def test_four_nodes_three_etcd_kill_restart_and_member_failures(etcd_network: LocalNetwork) -> None:
    net = etcd_network
    orgs = [n.org for n in net.nodes]
    # Every organisation submits through its own node; all commit the same chain.
    for i, org in enumerate(orgs):
        with net.client(org) as c:
            assert {r.code for r in c.submit(_raws(net, org, 50, tag=i))} == {"valid"}
    wait_until(lambda: len(_heads(net)) == 1, timeout=30)
    # A regulator reads a member's audit trail through its own node.
    with net.client("regulator") as c:
        trail = c.get_json("/v1/audit", org="hospital-a")
    assert trail["entries"][0]["height"] == 0

    # SIGKILL one node while the others are under load; restart it.
    stop = threading.Event()
    errors: list[str] = []

    def load(org: str, tag: int) -> None:
        with net.client(org) as c:
            for k in range(1000):
                if stop.is_set():
                    return
                try:
                    c.submit(_raws(net, org, 40, tag=tag * 10_000 + k))
                except SharechainError as exc:
                    errors.append(str(exc))

    threads = [threading.Thread(target=load, args=(o, 100 + i)) for i, o in enumerate(orgs[1:])]
    for t in threads:
        t.start()
    victim = orgs[0]
    wait_until(lambda: _height(net, orgs[1]) > 8, timeout=30)
    net.kill_node(victim)
    wait_until(lambda: _height(net, orgs[1]) > 12, timeout=30)
    net.start_node(victim)
    net.wait_ready([victim], timeout=60)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    wait_until(lambda: len(_heads(net)) == 1, timeout=60)

    # One etcd member down: commits continue.
    assert net.etcd is not None
    net.etcd.stop_member(0)
    with net.client(orgs[1]) as c:
        assert {r.code for r in c.submit(_raws(net, orgs[1], 20, tag=7))} == {"valid"}
    # Two down: no quorum, submissions fail with a clear error and nothing forks.
    net.etcd.stop_member(1)
    height_before = max(h for h, _, _ in _heads(net))
    # Each append tried meanwhile waits out the etcd timeout (10 s) before it fails, and a
    # batch queued behind another waits for it: give the error the time of two.
    with net.client(orgs[2]) as c, pytest.raises(OrderingError, match="quorum"):
        c.submit(_raws(net, orgs[2], 5, tag=8), timeout=45)
    # Progress resumes when one member returns; the failed transactions can be resubmitted.
    # Until the nodes have read from the restored quorum they still answer "no
    # quorum" (at once, not after a wait): a client resubmits, as a user would.
    net.etcd.start_member(1)
    deadline = time.monotonic() + 60
    with net.client(orgs[2]) as c:
        while True:
            try:
                receipts = c.submit(_raws(net, orgs[2], 5, tag=9), timeout=60)
                break
            except OrderingError as exc:
                if "quorum" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    assert {r.code for r in receipts} == {"valid"}
    assert receipts[0].height > height_before
    wait_until(lambda: len(_heads(net)) == 1, timeout=60)
    with net.client(orgs[3]) as c:
        att = c.attestation_status()
    assert att["ok"] and all(p["agrees"] for p in att["peers"])
