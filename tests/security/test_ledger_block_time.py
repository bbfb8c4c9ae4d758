"""Nobody moves the consortium's clock: block time is bounded.

Attacks: a faulty orderer stamps a block far in the future (every grant
expires at once, risk windows roll over) or keeps time standing still in the
past (an expired grant stays usable); in the embedded mode, a submitter
tries to set block time through its transaction. Defences: peers refuse a
live block more than `max_skew` from their clock or earlier than its parent;
the builder takes block time from its own clock only.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from sharechain.contracts import default_registry, notary
from sharechain.errors import ChainError
from sharechain.ledger.blocks import Block, decode_block, make_block, sign_header
from sharechain.ledger.blocktime import DEFAULT_MAX_SKEW, BlockClock
from sharechain.ledger.chain import Ledger
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import sign_transaction
from sharechain.node.service import Node, NodeConfig
from sharechain.sharing.embedded import Embedded
from sharechain.storage.datadir import OrgSpec, init_consortium

ORGS = (OrgSpec("hospital-a", ("member", "admin")), OrgSpec("regulator", ("supervisor",)))
NOW = 1_800_000_000.0


def _chain(tmp_path: Path) -> tuple[Embedded, Ledger]:
    """An orderer's store at genesis, and a follower holding the same genesis."""
    init_consortium(tmp_path / "c", ORGS, consortium="test", now=lambda: NOW - 3600)
    emb = Embedded(tmp_path / "c", now=lambda: NOW)
    follower = Ledger(Store(tmp_path / "follower.db"), default_registry())
    genesis = emb.store.block_bytes(0)
    assert genesis is not None
    follower.commit(decode_block(genesis), data=genesis)
    return emb, follower


def _block_at(emb: Embedded, when_ms: int) -> Block:
    keys = emb.keys("hospital-a")
    raw = sign_transaction(
        keys.signing, notary.RECORD, "hospital-a", {"digest": hashlib.sha256(b"f").digest()}
    ).raw
    block, _ = emb.ledger.build_block(
        [raw], orderer="hospital-a", key=keys.signing, timestamp=when_ms
    )
    return block


def test_a_block_from_the_future_is_refused(tmp_path: Path) -> None:
    emb, follower = _chain(tmp_path)
    follower.clock = BlockClock(lambda: NOW, 30.0)
    with pytest.raises(ChainError, match="ahead of this node's clock"):
        follower.commit(_block_at(emb, int((NOW + 31) * 1000)))
    assert follower.height == 0
    follower.commit(_block_at(emb, int((NOW + 29) * 1000)))  # within the skew
    assert follower.height == 1


def test_a_block_from_the_past_is_refused_while_live(tmp_path: Path) -> None:
    emb, follower = _chain(tmp_path)
    live = [True]
    follower.clock = BlockClock(lambda: NOW, 30.0, live=lambda: live[0])
    old = _block_at(emb, int((NOW - 60) * 1000))
    with pytest.raises(ChainError, match="behind this node's clock"):
        follower.commit(old)
    live[0] = False  # catching up: old blocks are expected
    follower.commit(old)
    assert follower.height == 1


def test_a_block_between_half_the_bound_and_the_bound_is_uncertain(tmp_path: Path) -> None:
    emb, _ = _chain(tmp_path)
    live = [True]
    clock = BlockClock(lambda: NOW, 30.0, live=lambda: live[0])
    at = {s: _block_at(emb, int((NOW + s) * 1000)).header for s in (-31, -16, -14, 14, 16, 30, 31)}
    assert [s for s, h in at.items() if clock.uncertain(h)] == [-16, 16, 30]
    live[0] = False  # catching up: an old block is expected, neither uncertain nor refused
    assert not clock.uncertain(at[-16])
    clock.check(at[-31])


def test_a_settled_block_is_not_held_to_the_bound_again(tmp_path: Path) -> None:
    """A node that waited for its peers on an uncertain block commits it even if the
    wait took it past the bound; nothing else passes."""
    emb, follower = _chain(tmp_path)
    settled: set[int] = set()
    follower.clock = BlockClock(
        lambda: NOW, 30.0, settled=lambda h: (h.height, h.timestamp) in settled
    )
    late = _block_at(emb, int((NOW - 31) * 1000))
    ahead = _block_at(emb, int((NOW + 31) * 1000))
    assert not follower.clock.uncertain(late.header)  # past the bound: refused, not uncertain
    with pytest.raises(ChainError, match="ahead of this node's clock"):
        follower.commit(ahead)
    settled.add((ahead.header.height, ahead.header.timestamp))
    assert not follower.clock.uncertain(ahead.header)
    follower.commit(ahead)
    assert follower.height == 1


def test_a_block_earlier_than_its_parent_is_refused(tmp_path: Path) -> None:
    emb, follower = _chain(tmp_path)
    genesis_time = follower.head.timestamp if follower.head else 0
    with pytest.raises(ChainError, match="timestamp goes backwards"):
        follower.commit(_block_at_raw(emb, genesis_time - 1))


def _block_at_raw(emb: Embedded, when_ms: int) -> Block:
    # build_block never goes below the parent's time, so forge the header directly.
    block = _block_at(emb, when_ms)
    header = replace(block.header, timestamp=when_ms)
    key = emb.keys("hospital-a").signing
    return make_block(header, sign_header(header, key), block.txs, block.results)


def test_embedded_block_time_is_the_store_clock_not_the_transaction(tmp_path: Path) -> None:
    emb, _ = _chain(tmp_path)
    keys = emb.keys("hospital-a")
    future = sign_transaction(
        keys.signing,
        notary.RECORD,
        "hospital-a",
        {"digest": hashlib.sha256(b"g").digest()},
        now=lambda: NOW + 10 * 365 * 86400,  # the transaction claims ten years ahead
    )
    (receipt,) = emb.submit_raw([future.raw], orderer="hospital-a")
    # The block keeps the store's time, and the transaction from the future is refused.
    assert receipt.code == "tx_from_future"
    head = emb.store.head()
    assert head is not None and head.timestamp == int(NOW * 1000)


def test_a_node_bounds_block_time_by_default(tmp_path: Path) -> None:
    init_consortium(tmp_path / "c", ORGS, consortium="test")
    node = Node(NodeConfig(data_dir=tmp_path / "c", org="hospital-a"))
    try:
        clock = node.ledger.clock
        assert clock is not None and clock.max_skew == DEFAULT_MAX_SKEW == 30.0
    finally:
        node.stop()
