"""The SQLite store: atomic block commits, reads, indexes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sharechain.errors import ChainError, ConfigError
from sharechain.ledger.store import HistoryEntry, Store, TxLocation


def _commit(store: Store, height: int, **over: object) -> None:
    args: dict[str, object] = {
        "height": height,
        "block_hash": bytes([height % 256]) * 32,
        "state_root": bytes([(height + 100) % 256]) * 32,
        "timestamp": 1000 + height,
        "data": b"block%d" % height,
        "txs": [(bytes([height % 256, 0]) * 16, 0, "t", "org", "valid")],
        "writes": {f"k/{height}": b"v%d" % height},
        "history": [(f"k/{height}", 0, bytes([height % 256, 0]) * 16)],
    }
    args.update(over)
    store.commit_block(**args)  # type: ignore[arg-type]  # test helper passes a dict


def test_commit_and_read(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.db")
    assert store.head() is None
    _commit(store, 0)
    _commit(store, 1, writes={"k/0": None, "k/x": b"x"}, history=[("k/0", 0, b"\x09" * 32)])
    head = store.head()
    assert head is not None and head.height == 1 and head.hash == b"\x01" * 32
    assert store.block_bytes(0) == b"block0" and store.block_bytes(5) is None
    assert store.get("k/0") is None and store.get("k/x") == b"x"
    assert store.scan("k/") == [("k/x", b"x")]
    assert [h for h, _ in store.iter_blocks()] == [0, 1]
    tx0 = bytes([0, 0]) * 16
    assert store.tx_location(tx0) == TxLocation(0, 0, "valid", "t", "org")
    assert store.known_txs([tx0, b"\xff" * 32]) == {tx0}
    assert store.history("k/0") == [HistoryEntry(0, 0, tx0), HistoryEntry(1, 0, b"\x09" * 32)]
    assert len(store.history_prefix("k/")) == 2
    assert store.tx_count() == 2
    assert store.integrity_check() == "ok"
    store.close()


@pytest.mark.parametrize("height", [0, 2, 5])
def test_height_must_extend_the_head(tmp_path: Path, height: int) -> None:
    store = Store(tmp_path / "l.db")
    _commit(store, 0)
    with pytest.raises(ChainError) as err:
        _commit(store, height, writes={"other": b"1"})
    assert err.value.height == height
    assert store.head().height == 0  # type: ignore[union-attr]
    assert store.get("other") is None  # nothing of the refused block was written


def test_failed_commit_rolls_back_everything(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.db")
    _commit(store, 0)
    # The second value cannot be stored: the commit fails after the block row,
    # the tx rows and the first write went in, and all of them are undone.
    with pytest.raises(sqlite3.Error):
        _commit(store, 1, writes={"a-first": b"1", "z-late": object()})
    assert store.head().height == 0  # type: ignore[union-attr]
    assert store.block_bytes(1) is None and store.get("a-first") is None
    assert store.tx_location(bytes([1, 0]) * 16) is None
    _commit(store, 1)  # and the store is still usable
    assert store.head().height == 1  # type: ignore[union-attr]


def test_replayed_tx_id_keeps_the_original_location(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.db")
    _commit(store, 0)
    original = bytes([0, 0]) * 16
    _commit(
        store, 1, txs=[(original, 0, "t", "org", "replay"), (b"\x01" * 32, 1, "t", "o", "valid")]
    )
    assert store.tx_location(original) == TxLocation(0, 0, "valid", "t", "org")
    assert store.tx_count() == 2


def test_iter_blocks_pages(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.db", durable=False)
    for h in range(300):
        _commit(store, h, txs=[], history=[], writes={}, block_hash=h.to_bytes(32, "big"))
    assert [h for h, _ in store.iter_blocks(10)] == list(range(10, 300))


def test_not_a_database_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match=str(path)):
        Store(path)
