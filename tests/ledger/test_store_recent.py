"""The transaction and history indexes in two tables: a small recent one, whose rows
move into the main one a few each block once it is full. Every read sees one index,
wherever its rows are."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from ledger_kit import Kit

from sharechain.contracts import notary
from sharechain.ledger import validation as v
from sharechain.ledger.chain import verify_chain
from sharechain.ledger.schema import union_query
from sharechain.ledger.store import Store
from sharechain.storage.snapshot import write_snapshot


def _rows(store: Store, table: str, columns: str, order: str) -> list[tuple[object, ...]]:
    return list(store._db.execute(union_query(table, columns, tail=f"ORDER BY {order}")))


def _count(store: Store, table: str) -> int:
    return int(store._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _grow(kits: list[Kit], blocks: int) -> list[bytes]:
    """The same blocks of records (and an endorsement each) on every kit; their ids."""
    ids = []
    for b in range(blocks):
        first = kits[0].record("hospital-a", f"r{b}".encode())
        raws = [
            first.raw,
            kits[0].record("hospital-b", f"s{b}".encode()).raw,
            kits[0].sign("regulator", notary.ENDORSE, {"record": first.id}).raw,
        ]
        block = kits[0].build(raws)
        for k in kits:
            k.ledger.commit(block)
        ids += [hashlib.sha256(r).digest() for r in raws]
    return ids


@pytest.fixture
def pair(tmp_path: Path) -> list[Kit]:
    """Two peers of one chain: the first merges every few rows, the second never does."""
    merging, plain = Kit(tmp_path / "merging.db"), Kit(tmp_path / "plain.db")
    merging.store.merge_rows = 7
    plain.store.merge_rows = 10**9
    plain.keys, plain._nonce = merging.keys, merging._nonce
    yield [merging, plain]
    for k in (merging, plain):
        k.store.close()


def test_merging_changes_no_read(pair: list[Kit], tmp_path: Path) -> None:
    merging, plain = pair
    ids = _grow(pair, 6)
    # The merging store did move rows, and keeps its recent tables at the threshold.
    assert _count(merging.store, "txs") > 0 and _count(merging.store, "history") > 0
    assert _count(merging.store, "txs_recent") == 7 and _count(merging.store, "history_recent") == 7
    assert _count(plain.store, "txs") == 0
    for a, b in ((merging.store, plain.store),):
        assert a.tx_count() == b.tx_count() == len(ids) + 1  # genesis too
        assert a.known_txs(ids) == b.known_txs(ids) == set(ids)
        assert [a.tx_location(i) for i in ids] == [b.tx_location(i) for i in ids]
        assert all(a.tx_location(i) is not None for i in ids)
        for key in ("org/hospital-a", "config/consortium"):
            assert a.history(key) == b.history(key)
        assert a.history_prefix("notary/") == b.history_prefix("notary/")
        assert len(a.history_prefix("notary/")) == len(ids)  # every one touched a record
        for table, cols, order in (
            ("txs", "id, height, idx, type, sender, code", "1"),
            ("history", "key, height, idx, tx_id", "1, 2, 3"),
        ):
            assert _rows(a, table, cols, order) == _rows(b, table, cols, order)
    # A snapshot of either is the same file.
    infos = [
        write_snapshot(k.store._db, tmp_path / f"{n}.snap", k.genesis.hash())
        for n, k in enumerate(pair)
    ]
    assert infos[0] == infos[1]
    assert (tmp_path / "0.snap").read_bytes() == (tmp_path / "1.snap").read_bytes()
    assert verify_chain(merging.store, merging.registry).ok


def test_the_merge_comes_when_a_recent_table_fills_even_after_a_rollback(
    pair: list[Kit],
) -> None:
    """The store counts the recent tables' rows itself (no COUNT(*) per block); a block
    that rolls back after its inserts must not leave its rows in that count."""
    merging, plain = pair
    store = merging.store
    model = {t: _count(store, f"{t}_recent") for t in ("txs", "history")}
    merged = {t: 0 for t in model}

    def grow_and_check() -> None:
        before = {t: _count(plain.store, f"{t}_recent") for t in model}
        _grow(pair, 1)
        for t in model:  # the plain store never merges: its growth is the block's rows
            model[t] += _count(plain.store, f"{t}_recent") - before[t]
            if model[t] > store.merge_rows:  # the excess moved to the main table
                model[t], merged[t] = store.merge_rows, merged[t] + 1
            assert _count(store, f"{t}_recent") == model[t], t

    grow_and_check()

    def failing_seal(*_: object) -> None:
        raise RuntimeError("the seal failed after the block's inserts")

    store.sealer = failing_seal  # called inside the block's transaction, after its rows
    with pytest.raises(RuntimeError, match="after the block's inserts"):
        _grow(pair, 1)  # the merging store fails first: neither commits the block
    store.sealer = None
    assert {t: _count(store, f"{t}_recent") for t in model} == model  # rolled back
    for _ in range(6):
        grow_and_check()
    assert merged["txs"] >= 2 and merged["history"] >= 2
    assert verify_chain(store, merging.registry).ok


def test_once_full_each_block_moves_what_it_added_and_the_sweep_reaches_every_row(
    pair: list[Kit],
) -> None:
    merging, plain = pair
    store = merging.store
    _grow(pair, 4)  # past the threshold: both recent tables are full
    waiting = {t: set(store._db.execute(f"SELECT * FROM {t}_recent")) for t in ("txs", "history")}
    for _ in range(8):
        main = {t: _count(store, t) for t in waiting}
        before = {t: _count(plain.store, f"{t}_recent") for t in waiting}
        _grow(pair, 1)
        for t in waiting:
            added = _count(plain.store, f"{t}_recent") - before[t]
            # No block merges the whole table: it moves as many rows as it added.
            assert _count(store, t) - main[t] == added > 0, t
            assert _count(store, f"{t}_recent") == store.merge_rows, t
    for t, rows in waiting.items():  # nothing starves in the recent table
        still = set(store._db.execute(f"SELECT * FROM {t}_recent"))
        assert not rows & still, t
        assert rows <= set(store._db.execute(f"SELECT * FROM {t}"))
    assert verify_chain(store, merging.registry).ok


def test_a_replay_of_a_merged_transaction_adds_no_row(pair: list[Kit]) -> None:
    merging, _ = pair
    first = merging.record("hospital-a", b"original")
    merging.add([first.raw])
    db = merging.store._db
    for _ in range(12):  # until the sweep moves the original's row into the main table
        _grow([merging], 1)
        if db.execute("SELECT 1 FROM txs WHERE id=?", (first.id,)).fetchone():
            break
    assert db.execute("SELECT height FROM txs WHERE id=?", (first.id,)).fetchone() == (1,)
    block = merging.add([first.raw, merging.record("hospital-b", b"fresh").raw])
    assert [r.code for r in block.results] == [v.REPLAY, v.VALID]
    assert merging.store.tx_location(first.id).height == 1  # type: ignore[union-attr]
    n = merging.store._db.execute(union_query("txs", "COUNT(*)", "id=?1"), (first.id,)).fetchall()
    assert sum(r[0] for r in n) == 1
    assert verify_chain(merging.store, merging.registry).ok


@pytest.mark.parametrize(
    ("query", "what"),
    [
        ("UPDATE txs SET code='invalid' WHERE height=1", "transaction index"),
        ("DELETE FROM history WHERE height=2", "history index"),
        ("INSERT INTO txs_recent SELECT * FROM txs WHERE height=1", "transaction index"),
    ],
    ids=["merged-tx-code", "merged-history", "row-in-both"],
)
def test_an_edit_of_the_merged_rows_is_found(pair: list[Kit], query: str, what: str) -> None:
    merging, _ = pair
    _grow([merging], 5)
    db = sqlite3.connect(merging.path, isolation_level=None)
    assert db.execute(query).rowcount > 0
    db.close()
    report = verify_chain(merging.store, merging.registry)
    assert not report.ok and what in report.reason


def test_a_row_in_both_tables_stops_the_merge_and_its_block(pair: list[Kit]) -> None:
    merging, _ = pair
    _grow([merging], 3)
    head = merging.store.head()
    assert head is not None
    # A damaged store: a merged row copied back into the recent table. The move
    # that reaches it refuses it and nothing of that block is written.
    copied = merging.store._db.execute("INSERT INTO txs_recent SELECT * FROM txs LIMIT 1")
    assert copied.rowcount == 1
    recent = _count(merging.store, "txs_recent")
    with pytest.raises(sqlite3.IntegrityError):
        for _ in range(8):
            _grow([merging], 1)
    last = merging.store.head()
    assert last is not None and last.height >= head.height
    assert merging.store.block_bytes(last.height + 1) is None
    assert _count(merging.store, "txs_recent") >= recent  # the failed merge rolled back


def test_a_store_of_the_older_layout_gets_the_recent_tables(tmp_path: Path) -> None:
    kit = Kit(tmp_path / "old.db")
    ids = _grow([kit], 2)
    kit.store.close()
    # The layout before the recent tables: every index row in the main tables.
    db = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    for table in ("txs", "history"):
        db.execute(f"INSERT INTO {table} SELECT * FROM {table}_recent")
        db.execute(f"DROP TABLE {table}_recent")
    db.close()
    store = Store(tmp_path / "old.db")
    try:
        assert _count(store, "txs_recent") == 0 and _count(store, "history_recent") == 0
        assert store.tx_count() == len(ids) + 1 and store.known_txs(ids) == set(ids)
        assert verify_chain(store, notary.registry()).ok
    finally:
        store.close()
