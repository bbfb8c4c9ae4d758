"""A stream of blocks pauses the garbage collector across blocks, never for good.

`commit_stream` keeps the collector paused from one block to the next and
runs the young collection itself every `_PAUSE_BLOCKS` blocks (one walk of the
objects in flight instead of one per block); whatever way the stream ends
(all committed, a bad block, the caller stopping early) the collector runs
again, and a caller that paused it itself finds it still paused. The
shortcuts taken on the way (writes already in key order, values loaded ahead
kept as the block's reads) give the same hashes as the general path.
"""

from __future__ import annotations

import gc
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ledger_kit import Kit

from sharechain.codec import encode
from sharechain.errors import EncodingError
from sharechain.ledger import pipeline
from sharechain.ledger.blocks import TxResult, delta_hash, encode_block
from sharechain.ledger.pipeline import commit_stream
from sharechain.ledger.state import BlockState


def _blocks(kit: Kit, n: int) -> list[bytes]:
    return [
        encode_block(kit.add([kit.record("hospital-a", f"{h}/{i}".encode()).raw for i in range(3)]))
        for h in range(n)
    ]


def _young_collections() -> tuple[list[int], Any]:
    """The collections this thread runs from now on (the collector is the process's, and a
    thread another test left behind may collect meanwhile: not the stream's doing)."""
    seen: list[int] = []
    here = threading.get_ident()

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and threading.get_ident() == here:
            seen.append(info["generation"])

    gc.callbacks.append(callback)
    return seen, callback


def test_the_collector_stays_paused_between_blocks_and_collects_every_few(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert gc.isenabled()
    monkeypatch.setattr(pipeline, "_PAUSE_SECONDS", 3600.0)  # count blocks only, however slow
    kit = Kit(tmp_path / "orderer.db")
    blocks = _blocks(kit, pipeline._PAUSE_BLOCKS + 2)
    peer = kit.fresh_ledger(tmp_path / "peer.db")
    collections, callback = _young_collections()
    try:
        paused = [not gc.isenabled() for _ in commit_stream(peer, blocks)]
    finally:
        gc.callbacks.remove(callback)
    assert paused == [True] * len(blocks)
    assert collections == [0]  # the stream's own, after `_PAUSE_BLOCKS` blocks
    assert gc.isenabled()
    assert peer.head == kit.ledger.head
    for store in (peer.store, kit.store):
        store.close()


def test_the_collector_runs_again_however_the_stream_ends(tmp_path: Path) -> None:
    kit = Kit(tmp_path / "orderer.db")
    blocks = _blocks(kit, 3)

    stopped = kit.fresh_ledger(tmp_path / "stopped.db")
    stream = commit_stream(stopped, blocks)
    next(stream)
    assert not gc.isenabled()
    stream.close()
    assert gc.isenabled() and stopped.height == 1

    failed = kit.fresh_ledger(tmp_path / "failed.db")
    with pytest.raises(EncodingError):
        for _ in commit_stream(failed, [*blocks[:2], b"\x00junk"]):
            pass
    assert gc.isenabled() and failed.height == 2

    def source() -> Iterator[bytes]:
        yield blocks[0]
        raise RuntimeError("the source broke")

    broken = kit.fresh_ledger(tmp_path / "broken.db")
    with pytest.raises(RuntimeError, match="the source broke"):
        list(commit_stream(broken, source()))
    assert gc.isenabled()

    # A caller that paused the collector itself keeps it paused.
    own = kit.fresh_ledger(tmp_path / "own.db")
    gc.disable()
    try:
        assert len(list(commit_stream(own, blocks))) == 3
        assert not gc.isenabled()
    finally:
        gc.enable()
    for store in (stopped.store, failed.store, broken.store, own.store, kit.store):
        store.close()


def test_writes_in_key_order_hash_as_the_general_path() -> None:
    writes = {f"k/{i:03d}": None if i % 7 == 0 else encode({"i": i}) for i in range(50)}
    shuffled = dict(sorted(writes.items(), key=lambda kv: hashlib.sha256(kv[0].encode()).digest()))
    ordered = dict(sorted(writes.items()))
    results = [TxResult("valid", ""), TxResult("denied", "no")]
    general = delta_hash(results, shuffled)
    assert delta_hash(results, ordered, in_key_order=True) == general
    assert delta_hash(results, ordered) == general


class _Store:
    """A store that must not be read: every value comes from `recent` or `preloaded`."""

    def get(self, key: str) -> bytes | None:
        raise AssertionError(f"read {key!r} from the store")


def test_values_loaded_ahead_are_the_blocks_reads() -> None:
    state = BlockState(_Store(), {"recent/a": 1}, {"loaded/b": {"x": 2}, "loaded/none": None})
    assert state.get("recent/a") == 1
    assert state.get("loaded/b") == {"x": 2}
    assert state.get("loaded/none") is None
    state.writes["loaded/b"] = {"x": 3}
    # As of the block's end: what it read or wrote, its writes over its reads.
    assert state.after() == {"recent/a": 1, "loaded/b": {"x": 3}, "loaded/none": None}
