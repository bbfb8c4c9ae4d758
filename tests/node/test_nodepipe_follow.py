"""A follower validating arriving blocks through the ledger's pipeline (`node.follow_pipeline`)
ends where one validating them block by block does, and refuses a bad block alike."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from node_helpers import Consortium, Running
from test_replication import _records

from sharechain.crypto.merkle import merkle_root
from sharechain.ledger import pipeline
from sharechain.ledger.blocks import decode_block, encode_block, make_block, sign_header
from sharechain.ledger.blocks import results_root as block_results_root
from sharechain.ledger.pipeline import MIN_PIPELINED_TXS, workers_cpu_seconds
from sharechain.node import arrivals
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


@pytest.fixture
def in_pairs(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Backlogs committed in groups of two blocks (so five blocks make three groups)."""
    monkeypatch.setattr(arrivals, "GROUP_BLOCKS", 2)
    return monkeypatch


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


def test_a_backlog_of_several_groups_goes_through_one_pipeline(
    orderer: Running, peers: tuple[Node, Node], in_pairs: pytest.MonkeyPatch
) -> None:
    blocks = _blocks(orderer, 5)
    pipelined, plain = peers
    streams: list[int] = []
    groups: list[tuple[int, list[int]]] = []
    stream, commit_many = pipelined.pipeline.stream, pipelined.commit_many

    def spy_stream(ledger, run):  # type: ignore[no-untyped-def]
        streams.append(len(run))
        return stream(ledger, run)

    def spy_commit_many(group, s=None):  # type: ignore[no-untyped-def]
        # What was announced before this group: every group before it, whole.
        groups.append((len(group), [a.height for a in pipelined.book.own()]))
        commit_many(group, s)

    pipelined.pipeline.stream = spy_stream  # type: ignore[method-assign]
    pipelined.commit_many = spy_commit_many  # type: ignore[method-assign]
    assert apply_remote_blocks(pipelined, blocks) == 5
    assert apply_remote_blocks(plain, blocks) == 5
    # One stream over the five blocks, committed and announced two at a time.
    assert streams == [5]
    assert groups == [(2, []), (2, [1, 2]), (1, [1, 2, 3, 4])]
    assert [a.height for a in pipelined.book.own()] == [1, 2, 3, 4, 5]
    assert pipelined.store.head() == plain.store.head() == orderer.node.store.head()
    assert pipelined.pipeline.on and pipelined.halted is None


def test_a_bad_block_in_a_later_group_of_the_stream_is_refused_as_a_plain_one_is(
    orderer: Running, peers: tuple[Node, Node], in_pairs: pytest.MonkeyPatch
) -> None:
    blocks = _blocks(orderer, 5)
    bad = [*blocks[:4], (5, _forged(orderer, blocks[4][1], 3))]
    for node in peers:
        assert apply_remote_blocks(node, bad) == 4
        assert node.ledger.height == 4
        assert [a.height for a in node.book.own()] == [1, 2, 3, 4]
    pipelined, plain = peers
    assert pipelined.halted is not None and pipelined.halted == plain.halted
    assert "transaction 3 re-executes to 'bad_signature'" in pipelined.halted
    assert pipelined.store.head() == plain.store.head()


def test_a_worker_dying_in_a_stream_leaves_the_rest_to_the_plain_way(
    orderer: Running, peers: tuple[Node, Node], in_pairs: pytest.MonkeyPatch
) -> None:
    blocks = _blocks(orderer, 4)
    pipelined, _ = peers
    # This process would check every chunk itself when no worker answers: it must not.
    in_pairs.setattr(pipeline._Pool, "steal", lambda self, check_here=True: False)
    for worker in pipeline._pools[0].workers:
        worker.proc.kill()
        worker.proc.wait()
    try:
        assert apply_remote_blocks(pipelined, blocks) == 4
    finally:
        in_pairs.undo()
        pipeline.start_workers()  # a new pool for the tests after this one
    assert not pipelined.pipeline.on  # the rest of its life without the pipeline
    assert pipelined.halted is None
    assert [a.height for a in pipelined.book.own()] == [1, 2, 3, 4]
    assert pipelined.store.head() == orderer.node.store.head()
