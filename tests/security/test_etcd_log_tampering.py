"""Attack 42: a member's etcd client rewrites the log's tip, and ordering stops.

The node role may write every key (etcd 3.4 has no finer grant that still lets
any member lead). A member's etcd client deletes the newest committed block
and sets `head` back (what `EtcdLog.void` does), or sets `head` far ahead:
either way the leader's compare-and-set appends fail for ever (its next
height is "not in the log yet", or "taken" by a block that never comes). The
leader mends the log from its own store (`node/builder.py`, `_mend_log`):
the blocks it committed go back, and a `head` past every block goes back to
the last one. Real nodes on a real 3-member etcd.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))

from node_helpers import Consortium, Running, etcd_network
from test_replication import _records, wait_until

from sharechain.ordering.etcd_log import EtcdLog
from sharechain.ordering.etcd_process import EtcdCluster

NODES = ("hospital-a", "regulator")


@pytest.fixture
def network(tmp_path: Path) -> Iterator[tuple[EtcdCluster, Consortium, dict[str, Running]]]:
    with etcd_network(tmp_path, NODES) as started:
        yield started


def _set_head(log: EtcdLog, height: int) -> None:
    key = base64.b64encode(log.prefix + b"head").decode()
    log.call("/v3/kv/put", {"key": key, "value": base64.b64encode(str(height).encode()).decode()})


@pytest.mark.parametrize("tampering", ["tip deleted", "head lowered", "head raised"])
def test_the_leader_mends_a_tampered_log_and_ordering_goes_on(
    network: tuple[EtcdCluster, Consortium, dict[str, Running]], tampering: str
) -> None:
    cluster, consortium, running = network
    wait_until(lambda: all(r.node.leader is not None for r in running.values()))
    leader = running[next(iter(running.values())).node.leader.org]  # type: ignore[union-attr]
    for tag in range(3):
        with leader.client() as client:
            receipts = client.submit(_records(consortium, leader.node.org, 2, tag=tag))
        assert {r.code for r in receipts} == {"valid"}
    wait_until(lambda: len({r.node.ledger.height for r in running.values()}) == 1)
    tip = leader.node.ledger.height
    tip_bytes = leader.node.store.block_bytes(tip)
    assert tip_bytes is not None
    with EtcdLog(cluster.endpoints) as log:
        if tampering == "tip deleted":
            assert log.void(tip, tip_bytes)
        elif tampering == "head lowered":
            _set_head(log, tip - 2)
        else:
            _set_head(log, tip + 1000)
    with leader.client() as client:
        receipts = client.submit(_records(consortium, leader.node.org, 3, tag=9), timeout=30)
    assert {r.code for r in receipts} == {"valid"} and {r.height for r in receipts} == {tip + 1}
    wait_until(lambda: all(r.node.ledger.height == tip + 1 for r in running.values()))
    assert not any(r.node.halted for r in running.values())
    assert len({r.node.store.head() for r in running.values()}) == 1
    with EtcdLog(cluster.endpoints) as log:
        assert log.head() == tip + 1 and log.get(tip) == tip_bytes
