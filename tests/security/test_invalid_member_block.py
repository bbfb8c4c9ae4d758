"""Attack 41: a member signs an invalid block, and every node that follows the log halts.

A member's node may append to the ordering log (any member may lead). A
block it signs that fails validation (here: transactions already committed,
marked valid) used to halt every node as a faulty orderer, so one member
stopped the consortium. Now every node refuses it alike, waits a few polls
for its peers' attestations, finds no majority past that height, keeps the
signed block as evidence and voids it; the leader appends there and the
chain goes on. Real nodes on a real 3-member etcd.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))

from node_helpers import Consortium, Running, etcd_network, etcd_nodes, shutdown
from test_replication import _records, wait_until
from test_snapshot_start import _with_settings

from sharechain.ledger.blocks import decode_block, encode_block, make_block, sign_header
from sharechain.ordering.etcd_log import EtcdLog
from sharechain.ordering.etcd_process import EtcdCluster

HOSTILE = "bank-b"
HONEST = ("hospital-a", "regulator")


@pytest.fixture
def network(tmp_path: Path) -> Iterator[tuple[EtcdCluster, Consortium, dict[str, Running]]]:
    with etcd_network(tmp_path, HONEST) as started:
        yield started


def _replayed_block(consortium: Consortium, running: Running) -> tuple[int, bytes]:
    """The next height's block, signed by the hostile member with its real key, holding
    the last block's transactions again (each already committed) marked valid."""
    last = running.node.store.block_bytes(running.node.ledger.height)
    assert last is not None
    template = decode_block(last)
    header = dataclasses.replace(
        template.header,
        height=template.header.height + 1,
        prev_hash=template.hash(),
        orderer=HOSTILE,
    )
    key = consortium.keys(HOSTILE).signing
    block = make_block(header, sign_header(header, key), template.txs, template.results)
    return header.height, encode_block(block)


def test_a_member_s_invalid_block_is_voided_and_nobody_halts(
    network: tuple[EtcdCluster, Consortium, dict[str, Running]],
) -> None:
    cluster, consortium, running = network
    a = running["hospital-a"]
    wait_until(lambda: all(r.node.leader is not None for r in running.values()))
    with a.client() as client:
        assert {r.code for r in client.submit(_records(consortium, "hospital-a", 3))} == {"valid"}
    wait_until(lambda: len({r.node.ledger.height for r in running.values()}) == 1)
    height, bad = _replayed_block(consortium, a)
    with EtcdLog(cluster.endpoints) as log:
        assert log.append(height, bad)  # the hostile member's node appends it
    with a.client() as client:
        receipts = client.submit(_records(consortium, "hospital-a", 4, tag=5), timeout=30)
    assert {r.code for r in receipts} == {"valid"} and {r.height for r in receipts} == {height}
    wait_until(lambda: all(r.node.ledger.height >= height for r in running.values()))
    heads = {r.node.store.head() for r in running.values()}
    assert len(heads) == 1 and not any(r.node.halted for r in running.values())
    with EtcdLog(cluster.endpoints) as log:
        assert log.get(height) != bad
    # The hostile member's signed block is kept as evidence, and it verifies as its.
    for org in HONEST:
        (kept,) = (consortium.node_dir(org) / "evidence").glob(f"invalid-block-{height}-*")
        assert kept.read_bytes() == bad and HOSTILE in kept.name


def test_a_member_appending_invalid_blocks_without_end_fills_no_disk_with_evidence(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each voided block is evidence, but a node keeps only `evidence_bytes` of it: past
    that, the ALERT names the block by its hash and nothing more is written."""
    consortium = Consortium.make(tmp_path)
    budget = 3_000  # room for one small block, not two
    for org in HONEST:
        _with_settings(consortium.node_dir(org), evidence_bytes=budget)
    with EtcdCluster(tmp_path / "etcd", members=3) as cluster:
        running = etcd_nodes(consortium, cluster, HONEST)
        try:
            a = running["hospital-a"]
            voided = []
            for round in range(2):
                wait_until(lambda: all(r.node.leader is not None for r in running.values()))
                with a.client() as client:
                    records = _records(consortium, "hospital-a", 6, tag=10 + round)
                    assert {r.code for r in client.submit(records)} == {"valid"}
                wait_until(lambda: len({r.node.ledger.height for r in running.values()}) == 1)
                height, bad = _replayed_block(consortium, a)
                assert len(bad) < budget < 2 * len(bad)
                with EtcdLog(cluster.endpoints) as log:
                    assert log.append(height, bad)
                with a.client() as client:
                    records = _records(consortium, "hospital-a", 2, tag=20 + round)
                    assert {r.height for r in client.submit(records, timeout=30)} == {height}
                voided.append((height, bad))
            assert not any(r.node.halted for r in running.values())
            (first, _), (second, bad) = voided
            for org in HONEST:
                folder = consortium.node_dir(org) / "evidence"
                assert [p.name.split("-")[2] for p in folder.glob("*.block")] == [str(first)]
                assert sum(p.stat().st_size for p in folder.iterdir()) <= budget
            digest = hashlib.sha256(bad).hexdigest()
            named = [m for m in caplog.messages if f"signed block {second}," in m]
            assert len(named) == len(HONEST)
            assert all("not kept as evidence" in m and digest in m for m in named)
        finally:
            for started in running.values():
                shutdown(started)
