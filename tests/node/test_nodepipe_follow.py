"""A follower validating arriving blocks through the ledger's pipeline (`node.follow_pipeline`)
ends where one validating them block by block does, and refuses a bad block alike."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from node_helpers import Consortium, Running
from test_replication import _records

from sharechain.crypto.merkle import merkle_root
from sharechain.ledger.blocks import decode_block, encode_block, make_block, sign_header
from sharechain.ledger.blocks import results_root as block_results_root
from sharechain.ledger.pipeline import MIN_PIPELINED_TXS, workers_cpu_seconds
from sharechain.node.arrivals import apply_remote_blocks
from sharechain.node.service import Node, NodeConfig

TXS = MIN_PIPELINED_TXS + 44
"""Per block: enough for the pipeline to hand the checks to its worker."""


def _peer(consortium: Consortium, org: str, *, pipelined: bool) -> Node:
    node = Node(NodeConfig(data_dir=consortium.node_dir(org), org=org, verify_on_start=False))
    if pipelined:
        node.pipeline.start()
    return node


@pytest.fixture
def peers(consortium: Consortium) -> Iterator[tuple[Node, Node]]:
    """(pipelined, plain): two followers holding genesis only and running no loops."""
    pipelined = _peer(consortium, "bank-b", pipelined=True)
    plain = _peer(consortium, "regulator", pipelined=False)
    try:
        yield pipelined, plain
    finally:
        pipelined.stop()
        plain.stop()


def _blocks(orderer: Running, count: int) -> list[tuple[int, bytes]]:
    for tag in range(count):
        raws = _records(orderer.consortium, "hospital-a", TXS, tag=tag)
        orderer.node.submit_batch(raws).result(30)
    out = []
    for h in range(1, orderer.node.ledger.height + 1):
        data = orderer.node.store.block_bytes(h)
        assert data is not None
        out.append((h, data))
    return out


def _forged(orderer: Running, data: bytes, index: int) -> bytes:
    """The block re-signed by its orderer, transaction `index`'s signature spoiled."""
    block = decode_block(data)
    txs = list(block.txs)
    txs[index] = txs[index][:-1] + bytes([txs[index][-1] ^ 1])
    draft = make_block(block.header, b"", txs, block.results)
    header = dataclasses.replace(
        block.header,
        tx_root=merkle_root(draft.tx_ids),
        results_root=block_results_root(draft.tx_ids, block.results),
    )
    signature = sign_header(header, orderer.consortium.keys("hospital-a").signing)
    return encode_block(make_block(header, signature, txs, block.results))


def test_a_pipelined_follower_ends_with_the_same_head_and_state_root(
    orderer: Running, peers: tuple[Node, Node]
) -> None:
    pipelined, plain = peers
    blocks = _blocks(orderer, 3)
    assert all(len(decode_block(d).txs) >= MIN_PIPELINED_TXS for _, d in blocks)
    before = workers_cpu_seconds() or 0.0
    assert apply_remote_blocks(pipelined, blocks[:1]) == 1  # alone
    assert apply_remote_blocks(pipelined, blocks[1:]) == len(blocks) - 1  # a group
    assert apply_remote_blocks(plain, blocks) == len(blocks)
    assert pipelined.pipeline.on and (workers_cpu_seconds() or 0.0) > before
    want = orderer.node.store.head()
    assert pipelined.store.head() == plain.store.head() == want
    assert [a.height for a in pipelined.book.own()] == [b for b, _ in blocks]
    assert pipelined.halted is None


def test_a_pipelined_follower_refuses_a_bad_block_as_a_plain_one_does(
    orderer: Running, peers: tuple[Node, Node]
) -> None:
    blocks = _blocks(orderer, 3)
    bad = [*blocks[:2], (3, _forged(orderer, blocks[2][1], 7))]
    for node in peers:
        assert apply_remote_blocks(node, bad) == 2
        assert node.ledger.height == 2
    pipelined, plain = peers
    assert pipelined.halted is not None
    assert "transaction 7 re-executes to 'bad_signature'" in pipelined.halted
    assert pipelined.halted == plain.halted
    assert pipelined.store.head() == plain.store.head()
    assert pipelined.pipeline.on
