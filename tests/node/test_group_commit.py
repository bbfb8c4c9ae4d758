"""A backlog of blocks commits in one store transaction, announced once it is durable."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from typing import cast

import pytest
from node_helpers import Consortium, Running
from test_replication import _records

from sharechain.errors import OrderingError
from sharechain.ledger.blocks import decode_block, encode_block
from sharechain.node import arrivals
from sharechain.node.arrivals import apply_remote_blocks
from sharechain.node.etcd_watch import _Paused
from sharechain.node.service import Node, NodeConfig
from sharechain.ordering.etcd_backlog import Backlog
from sharechain.ordering.etcd_log import EtcdLog, StopFlag


def _blocks(orderer: Running, count: int) -> list[tuple[int, bytes]]:
    """`count` blocks of the orderer's chain after genesis, with the raws they hold."""
    for tag in range(count):
        orderer.node.submit_batch(_records(orderer.consortium, "hospital-a", 3, tag=tag)).result(20)
    assert orderer.node.ledger.height == count
    out = []
    for h in range(1, count + 1):
        data = orderer.node.store.block_bytes(h)
        assert data is not None
        out.append((h, data))
    return out


@pytest.fixture
def peer(consortium: Consortium) -> Iterator[Node]:
    """bank-b's node, holding genesis only and running no loops."""
    node = Node(
        NodeConfig(data_dir=consortium.node_dir("bank-b"), org="bank-b", verify_on_start=False)
    )
    try:
        yield node
    finally:
        node.stop()


def test_a_backlog_commits_as_one_group_and_announces_afterwards(
    orderer: Running, peer: Node
) -> None:
    blocks = _blocks(orderer, 3)
    first = decode_block(blocks[0][1])
    waiting = peer.submit_batch(first.txs)  # receipts this node owes for block 1
    groups: list[object] = []
    seen: list[tuple[bool, list[int], int, bool]] = []
    readers: list[int] = []
    reader = threading.Thread(target=lambda: readers.append(peer.ledger.height))
    commit, group = peer.ledger.commit, peer.store.group

    def spy_group():  # type: ignore[no-untyped-def]
        groups.append(object())
        return group()

    def spy_commit(*args, **kwargs):  # type: ignore[no-untyped-def]
        ex = commit(*args, **kwargs)
        # Block by block, inside the transaction: no receipt, attestation or metric yet.
        seen.append(
            (waiting.done(), [a.height for a in peer.book.own()], len(peer.commit_times), False)
        )
        if len(seen) == 2:
            # Another thread reads the store as last committed, without waiting.
            reader.start()
            reader.join(5)
            seen[-1] = (*seen[-1][:3], reader.is_alive())
        return ex

    peer.ledger.commit = spy_commit  # type: ignore[method-assign]
    peer.store.group = spy_group  # type: ignore[method-assign]
    assert apply_remote_blocks(peer, blocks) == 3
    assert len(groups) == 1
    assert seen == [(False, [], 0, False)] * 3
    assert readers == [0]
    assert [r.height for r in waiting.result(5)] == [1, 1, 1]
    assert [a.height for a in peer.book.own()] == [1, 2, 3]
    assert [h for h, _ in peer.commit_times] == [1, 2, 3]
    assert peer.store.head() == orderer.node.store.head()


def test_blocks_as_large_as_a_group_still_commit_in_pairs(
    orderer: Running, peer: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each block holds GROUP_TXS transactions: alone, each would be a group of one,
    # committed without the block pipeline's overlap.
    monkeypatch.setattr(arrivals, "GROUP_TXS", 3)
    blocks = _blocks(orderer, 5)
    assert all(len(decode_block(d).txs) == 3 for _, d in blocks)
    sizes: list[int] = []
    commit_many = peer.commit_many

    def spy(group, stream=None):  # type: ignore[no-untyped-def]
        sizes.append(len(group))
        commit_many(group, stream)

    peer.commit_many = spy  # type: ignore[method-assign]
    assert apply_remote_blocks(peer, blocks) == 5
    assert sizes == [2, 2, 1]  # the last block has no partner left in the backlog
    assert peer.store.head() == orderer.node.store.head()


def test_an_invalid_block_in_a_group_commits_those_before_it_then_halts(
    orderer: Running, peer: Node
) -> None:
    blocks = _blocks(orderer, 3)
    bad = decode_block(blocks[2][1])
    forged = encode_block(dataclasses.replace(bad, signature=bytes(len(bad.signature))))
    assert apply_remote_blocks(peer, [*blocks[:2], (3, forged)]) == 2
    assert peer.ledger.height == 2
    assert peer.halted is not None and "height 3" in peer.halted
    assert "signature" in peer.halted
    assert [a.height for a in peer.book.own()] == [1, 2]
    # As for a single bad block: the node commits nothing more.
    assert apply_remote_blocks(peer, blocks[2:]) == 0
    assert peer.ledger.height == 2


def test_a_block_that_does_not_decode_ends_the_group_before_it(
    orderer: Running, peer: Node
) -> None:
    blocks = _blocks(orderer, 3)
    assert apply_remote_blocks(peer, [*blocks[:2], (3, b"\x00garbage")]) == 2
    assert peer.ledger.height == 2
    assert peer.halted is not None and "height 3" in peer.halted


def test_a_block_held_already_is_skipped_and_a_different_one_is_a_fork(
    orderer: Running, peer: Node
) -> None:
    blocks = _blocks(orderer, 2)
    assert apply_remote_blocks(peer, blocks[:1]) == 1
    assert apply_remote_blocks(peer, blocks) == 1
    assert peer.ledger.height == 2 and peer.halted is None
    assert apply_remote_blocks(peer, [(2, blocks[0][1])]) == 0
    assert peer.halted is not None and "fork" in peer.halted


class _FakeLog:
    """A watch that yields `ready` blocks at once, then `late` one by one, then fails."""

    def __init__(self, ready: int, late: int) -> None:
        self.ready, self.late = ready, late
        self.go = threading.Event()

    def watch_marked(
        self, start: int, stop: StopFlag | None = None
    ) -> Iterator[tuple[int, bytes, bool]]:
        for h in range(start, start + self.ready):
            yield h, b"%d" % h, False
        for h in range(start + self.ready, start + self.ready + self.late):
            while not self.go.wait(0.02):
                if stop is not None and stop.is_set():
                    return  # as EtcdLog.watch: ends when told to
            yield h, b"%d" % h, True
        raise OrderingError("etcd went away")


def test_the_watch_backlog_hands_over_what_is_ready_up_to_a_limit(peer: Node) -> None:
    log = _FakeLog(ready=6, late=1)
    backlog = Backlog(cast(EtcdLog, log), 10, _Paused(peer), name="read", depth=8)
    try:
        time.sleep(0.3)  # the reader thread fetches ahead meanwhile
        assert [h for h, _, _ in backlog.take(4) or []] == [10, 11, 12, 13]
        assert [h for h, _, _ in backlog.take(4) or []] == [14, 15]  # not waiting for 16
        log.go.set()
        assert [h for h, _, _ in backlog.take(4) or []] == [16]
        with pytest.raises(OrderingError, match="went away"):
            backlog.take(4)
    finally:
        backlog.close()


def test_the_watch_backlog_ends_when_closed(peer: Node) -> None:
    log = _FakeLog(ready=0, late=1)
    backlog = Backlog(cast(EtcdLog, log), 0, _Paused(peer), name="read", depth=8)
    started = time.monotonic()
    backlog.close()  # returns once the reader let go of the log
    assert time.monotonic() - started < 2
    assert backlog.take(4) is None
