"""Attack 9: junk, a non-member's block, or a member's signed header over a body
that is not its own, in the ordering keyspace, halts nobody.

Real nodes in this process on a real etcd cluster with mutual TLS. Someone
holding an etcd client certificate writes at the next height before the
leader does, so the compare-and-set append finds the height taken. Every
node refuses the value with a logged reason, voids the height, and the
leader's block lands there after all.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))

from node_helpers import ORGS, Consortium, Running, shutdown_all
from test_replication import _records, wait_until

from sharechain.crypto.signing import SigningKey
from sharechain.ledger.blocks import decode_block, encode_block, make_block, sign_header
from sharechain.node.server import ServerThread
from sharechain.node.service import Node, NodeConfig
from sharechain.ordering.etcd_log import EtcdLog
from sharechain.ordering.etcd_process import EtcdCluster, free_ports
from sharechain.storage.datadir import init_consortium

NODES = ("hospital-a", "bank-b")


@pytest.fixture
def consortium(tmp_path: Path) -> Consortium:
    init_consortium(tmp_path / "consortium", ORGS, consortium="test")
    return Consortium(tmp_path / "consortium", tmp_path)


@pytest.fixture
def nodes(
    consortium: Consortium, tmp_path: Path
) -> Iterator[tuple[EtcdCluster, dict[str, Running]]]:
    with EtcdCluster(tmp_path / "etcd", members=3, tls=True) as cluster:
        ports = dict(zip(NODES, free_ports(len(NODES)), strict=True))
        running: dict[str, Running] = {}
        try:
            for org in NODES:
                node = Node(
                    NodeConfig(
                        data_dir=consortium.node_dir(org),
                        org=org,
                        ordering="etcd",
                        etcd_endpoints=cluster.endpoints,
                        etcd_tls=cluster.client_tls(org),
                        peers=tuple(
                            (o, f"http://127.0.0.1:{p}") for o, p in ports.items() if o != org
                        ),
                        max_wait=0.01,
                        poll_interval=0.5,
                    )
                )
                node.start()
                running[org] = Running(
                    node, ServerThread(node, port=ports[org]).start(), consortium
                )
            yield cluster, running
        finally:
            shutdown_all(running.values())


def _leader(running: dict[str, Running]) -> Running:
    wait_until(lambda: all(r.node.leader is not None for r in running.values()))
    org = running[NODES[0]].node.leader
    assert org is not None
    return running[org.org]


def _foreign_block(leader: Running, height: int) -> bytes:
    """A well-formed block for `height`, linked to the chain, signed by a non-member."""
    last = leader.node.store.block_bytes(height - 1)
    assert last is not None
    template = decode_block(last)
    header = dataclasses.replace(
        template.header, height=height, prev_hash=template.hash(), orderer="mallory"
    )
    stranger = SigningKey.generate()
    return encode_block(
        make_block(header, sign_header(header, stranger), template.txs, template.results)
    )


def _swapped_body(leader: Running, height: int) -> bytes:
    """A header for `height` signed with a member's real key, over a body that is not the
    one its `tx_root` names: the signature covers the header alone."""
    last = leader.node.store.block_bytes(height - 1)
    assert last is not None
    template = decode_block(last)
    header = dataclasses.replace(template.header, height=height, prev_hash=template.hash())
    key = leader.consortium.keys(leader.node.org).signing
    return encode_block(
        make_block(header, sign_header(header, key), template.txs[:1], template.results[:1])
    )


@pytest.mark.parametrize("kind", ["junk", "non-member block", "swapped body"])
def test_a_foreign_value_is_refused_voided_and_the_chain_goes_on(
    nodes: tuple[EtcdCluster, dict[str, Running]], kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    cluster, running = nodes
    leader = _leader(running)
    with leader.client() as client:
        assert {r.code for r in client.submit(_records(leader.consortium, leader.node.org, 3))} == {
            "valid"
        }
    wait_until(lambda: len({r.node.ledger.height for r in running.values()}) == 1)
    height = leader.node.ledger.height + 1
    forge = {"non-member block": _foreign_block, "swapped body": _swapped_body}.get(kind)
    value = b"\x00not a block" if forge is None else forge(leader, height)
    intruder = cluster.client_tls("intruder")
    with EtcdLog(cluster.endpoints, tls=intruder) as log:
        assert log.append(height, value)
    caplog.set_level(logging.ERROR, logger="sharechain.node")
    started = time.monotonic()
    with leader.client() as client:
        receipts = client.submit(_records(leader.consortium, leader.node.org, 4, tag=5))
    assert {r.code for r in receipts} == {"valid"} and {r.height for r in receipts} == {height}
    assert time.monotonic() - started < 20.0
    wait_until(lambda: all(r.node.ledger.height >= height for r in running.values()))
    for r in running.values():
        assert r.node.halted is None and r.node.ready
    alerts = [rec.getMessage() for rec in caplog.records if "foreign value" in rec.getMessage()]
    assert alerts and all(f"at height {height}" in a for a in alerts)
    assert {
        "junk": "not a block",
        "non-member block": "'mallory', not an active member",
        "swapped body": f"transactions or results are not those {leader.node.org} signed",
    }[kind] in alerts[0]
    with EtcdLog(cluster.endpoints, tls=intruder) as log:
        stored = log.get(height)
    # The chain's block replaced it: the one every node committed there. Its orderer is
    # whoever led then (under load the lease may pass to another member meanwhile).
    assert stored is not None
    block = decode_block(stored)
    assert block.header.orderer in running
    for r in running.values():
        meta = r.node.store.block_meta(height)
        assert meta is not None and meta.hash == block.hash()
