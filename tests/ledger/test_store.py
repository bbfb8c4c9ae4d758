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


def test_values_and_ids_are_stored_as_blobs_whatever_type_binds_them(tmp_path: Path) -> None:
    # The store binds bytes as bytearrays (`store_rows.blobs`, a faster path in
    # sqlite3): SQLite must still hold BLOBs, which the seal and readers expect.
    store = Store(tmp_path / "l.db")
    many = {f"k/{i:03}": b"v%d" % i for i in range(300)}  # past one 128-row INSERT
    hist = [(k, 0, b"\x07" * 32) for k in many]
    _commit(store, 0, writes=many, history=hist)
    db = sqlite3.connect(tmp_path / "l.db")
    types = {
        q: {t for (t,) in db.execute(q)}
        for q in (
            "SELECT typeof(value) FROM state",
            "SELECT typeof(id) FROM txs UNION ALL SELECT typeof(id) FROM txs_recent",
            "SELECT typeof(tx_id) FROM history UNION ALL SELECT typeof(tx_id) FROM history_recent",
        )
    }
    db.close()
    assert all(found == {"blob"} for found in types.values()), types
    assert store.get_many(list(many)) == many
    tx0 = bytes([0, 0]) * 16
    assert store.known_txs([tx0]) == {tx0}
    assert type(store.get("k/000")) is bytes
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
    # The second value cannot be stored (past the connection's length limit): the
    # commit fails after the block row, the tx rows and the first write went in,
    # and all of them are undone.
    store._db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 100)
    with pytest.raises(sqlite3.Error):
        _commit(store, 1, writes={"a-first": b"1", "z-late": b"x" * 500})
    store._db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1_000_000_000)
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


def test_iter_blocks_reads_large_blocks_a_few_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path / "l.db", durable=False)
    sizes = [10, 400, 400, 5000, 10, 10, 10, 900, 100]
    datas = [bytes([h]) * size for h, size in enumerate(sizes)]
    for h, data in enumerate(datas):
        _commit(store, h, txs=[], history=[], writes={}, data=data)
    monkeypatch.setattr("sharechain.ledger.store.PAGE_BYTES", 1000)
    reads: list[str] = []
    store._db.set_trace_callback(reads.append)  # no writer: reads go through it
    # Every block once, in order, a block larger than a page on its own.
    assert list(store.iter_blocks(1)) == list(enumerate(datas))[1:]
    fetched = [q for q in reads if q.startswith("SELECT height, data")]
    assert len(fetched) == 4  # [1, 2] [3] [4..7] [8]


def test_not_a_database_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match=str(path)) as refused:
        Store(path)
    assert "restore it or re-sync" in str(refused.value)  # a damaged file: restore it


def test_a_store_that_cannot_be_created_says_where_to_look_not_to_restore(
    tmp_path: Path,
) -> None:
    path = tmp_path / "no-such-dir" / "ledger.db"
    with pytest.raises(ConfigError, match="unable to open database file") as refused:
        Store(path)
    message = str(refused.value)
    assert "check that its directory exists" in message and "restore" not in message
    assert not path.parent.exists()  # nothing made on the way


_KEYS = {
    "dataset/1": b"d1",
    "id": b"a",
    "idw": b"b",
    "idx": b"c",
    "idx/ds-owner/org/1": b"\x01",
    "idx/ds-owner/org/2": b"\x01",
    "idx/inbox/org/r": b"\x01",
    "idx0": b"d",
    "idy/1": b"e",
}


def _reads(store: Store) -> dict[str, object]:
    prefixes = ("", "i", "id", "idx", "idx/", "idx/ds-owner/", "idx0", "idy", "dataset/")
    out: dict[str, object] = {p: store.scan(p) for p in prefixes}
    out.update({k: store.get(k) for k in (*_KEYS, "idx/none", "none")})
    return out


def test_index_keys_live_in_their_own_table_and_read_as_before(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.db")
    _commit(store, 0, writes=_KEYS)
    _commit(store, 1, writes={"idx/inbox/org/r": None, "idx/inbox/org/s": b"\x01", "idw": None})
    expected = dict(_KEYS)
    del expected["idx/inbox/org/r"], expected["idw"]
    expected["idx/inbox/org/s"] = b"\x01"
    assert store.scan("") == sorted(expected.items())
    assert store.scan("idx") == [(k, v) for k, v in sorted(expected.items()) if k.startswith("idx")]
    assert store.scan("idx/inbox/") == [("idx/inbox/org/s", b"\x01")]
    assert store.get("idx/inbox/org/r") is None and store.get("idx/inbox/org/s") == b"\x01"
    with sqlite3.connect(tmp_path / "l.db") as db:
        in_state = [k for (k,) in db.execute("SELECT key FROM state ORDER BY key")]
        in_idx = [k for (k,) in db.execute("SELECT key FROM state_idx ORDER BY key")]
    db.close()
    assert in_idx == ["idx/ds-owner/org/1", "idx/ds-owner/org/2", "idx/inbox/org/s"]
    assert in_state == ["dataset/1", "id", "idx", "idx0", "idy/1"]


def test_a_store_of_the_old_layout_moves_its_index_keys_on_open(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    store = Store(path)
    _commit(store, 0, writes=_KEYS)
    before = _reads(store)
    store.close()
    # The layout before `state_idx`: every key in `state`, no `state_idx` table.
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO state (key, value) SELECT key, value FROM state_idx")
        db.execute("DROP TABLE state_idx")
    db.close()
    store = Store(path)
    assert _reads(store) == before
    with sqlite3.connect(path) as db:
        left = db.execute("SELECT COUNT(*) FROM state WHERE key LIKE 'idx/%'").fetchone()[0]
        moved = db.execute("SELECT COUNT(*) FROM state_idx").fetchone()[0]
    db.close()
    assert (left, moved) == (0, 3)
    _commit(store, 1, writes={"idx/ds-owner/org/1": None})
    assert store.scan("idx/ds-owner/") == [("idx/ds-owner/org/2", b"\x01")]
    store.close()
    assert Store(path).scan("idx/") == [
        ("idx/ds-owner/org/2", b"\x01"),
        ("idx/inbox/org/r", b"\x01"),
    ]
