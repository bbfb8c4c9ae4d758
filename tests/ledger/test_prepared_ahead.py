"""A block's first reads, done while the block before it commits (`prepare_after`).

The parse-ahead thread reads which of the next block's transactions are committed
already and the values its contracts name, through a read connection while the
COMMIT of the block before holds the store. Those reads may see the store before
or after that commit; the outcome must be exactly the inline one: replays of the
block just before and of older blocks, and keys the block just before wrote.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from ledger_kit import Kit

from sharechain.ledger import execution, pipeline
from sharechain.ledger import validation as v
from sharechain.ledger.blocks import Block, encode_block
from sharechain.ledger.execution import Prepared
from sharechain.ledger.pipeline import MIN_PIPELINED_TXS, commit_stream, start_workers


def _filler(kit: Kit, tag: str) -> list[bytes]:
    return [kit.record("regulator", f"{tag} {i}".encode()).raw for i in range(MIN_PIPELINED_TXS)]


def _blocks(kit: Kit) -> list[Block]:
    r1 = kit.record("hospital-a", b"x1")
    r2 = kit.record("hospital-a", b"x2")
    b1 = kit.add([r1.raw, *_filler(kit, "one")])
    # The block just before wrote x1's record and holds r1.
    b2 = kit.add([kit.record("hospital-b", b"x1").raw, r1.raw, r2.raw, *_filler(kit, "two")])
    # x2's record and r2 come from the block just before, x1's and r1 from two back.
    b3 = kit.add(
        [
            kit.record("hospital-b", b"x2").raw,
            kit.record("hospital-b", b"x1").raw,
            r2.raw,
            r1.raw,
            *_filler(kit, "three"),
        ]
    )
    codes = [[r.code for r in b.results[:4]] for b in (b1, b2, b3)]
    assert codes[1][:3] == ["duplicate", v.REPLAY, v.VALID]
    assert codes[2] == ["duplicate", "duplicate", v.REPLAY, v.REPLAY]
    return [b1, b2, b3]


def _recording(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Prepared]]:
    calls: list[tuple[str, Prepared]] = []
    prepare = execution.prepare_after

    def recording(*args: Any) -> Prepared:
        out = prepare(*args)
        calls.append((threading.current_thread().name, out))
        return out

    monkeypatch.setattr(pipeline, "prepare_after", recording)
    return calls


def _commit_as_the_orderer_did(tmp_path: Path, kit: Kit, *, grouped: bool = False) -> list[Block]:
    """Stream `_blocks(kit)` into a fresh peer (in one `Store.group` if `grouped`),
    check it reached the orderer's results and head, and return the blocks."""
    blocks = _blocks(kit)
    peer = kit.fresh_ledger(tmp_path / "peer.db")
    start_workers()
    with peer.store.group() if grouped else contextlib.nullcontext():
        done = list(commit_stream(peer, [encode_block(b) for b in blocks]))
    try:
        assert [ex.results for _, ex in done] == [b.results for b in blocks]
        assert peer.head == kit.ledger.head
    finally:
        for store in (peer.store, kit.store):
            store.close()
    return blocks


def test_reads_done_ahead_decide_as_inline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _recording(monkeypatch)
    blocks = _commit_as_the_orderer_did(tmp_path, Kit(tmp_path / "orderer.db"))
    # Blocks 2 and 3 were prepared while the one before committed; block 3's
    # replays were found in the store (r1) or in block 2 itself (r2).
    assert [name for name, _ in calls] == ["parse-ahead", "parse-ahead"]
    r1, r2 = blocks[0].tx_ids[0], blocks[1].tx_ids[2]
    assert calls[0][1].known == {r1}
    assert calls[1][1].known == {r1, r2}


def test_inside_a_group_execution_reads_for_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In a group the blocks before are written and not committed: a read connection
    # would see the store without them, so nothing is prepared ahead.
    calls = _recording(monkeypatch)
    _commit_as_the_orderer_did(tmp_path, Kit(tmp_path / "orderer.db"), grouped=True)
    assert calls == []


def test_a_read_that_fails_ahead_is_done_again_by_execution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed: list[str] = []

    def failing(*args: Any) -> Prepared:
        failed.append(threading.current_thread().name)
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(pipeline, "prepare_after", failing)
    _commit_as_the_orderer_did(tmp_path, Kit(tmp_path / "orderer.db"))
    assert failed == ["parse-ahead", "parse-ahead"]
