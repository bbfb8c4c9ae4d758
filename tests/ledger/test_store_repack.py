"""Store page sizes: a new store has `PAGE_SIZE` pages, an older one keeps its own,
and `sharechain node repack` rewrites a stopped one, rows and seal kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharechain.bench import store_open
from sharechain.bench.commit_scale import OLD_PAGE_SIZE, empty_database
from sharechain.cli.main import app
from sharechain.errors import ConfigError
from sharechain.ledger.store import PAGE_SIZE, Store
from sharechain.ledger.store_repack import repack
from sharechain.sharing.embedded import Embedded


def _page_size(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA page_size").fetchone()[0])
    finally:
        db.close()


def _contents(path: Path) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return [
            *db.execute("SELECT id, key, value FROM state ORDER BY id"),
            *db.execute("SELECT height, hash FROM blocks ORDER BY height"),
            *db.execute("SELECT * FROM txs ORDER BY id"),
        ]
    finally:
        db.close()


def _store_with_a_block(path: Path) -> Store:
    store = Store(path)
    store.commit_block(
        height=0,
        block_hash=b"h" * 32,
        state_root=b"r" * 32,
        timestamp=1,
        data=b"block",
        txs=[],
        writes={"k": b"v"},
        history=[],
    )
    return store


def test_a_new_store_has_small_pages(tmp_path: Path) -> None:
    Store(tmp_path / "new.db").close()
    assert _page_size(tmp_path / "new.db") == PAGE_SIZE == 4096


def test_an_older_store_keeps_its_pages_and_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    empty_database(path, OLD_PAGE_SIZE)
    _store_with_a_block(path).close()
    assert _page_size(path) == OLD_PAGE_SIZE
    store = Store(path)
    try:
        head = store.head()
        assert head is not None and head.height == 0
        assert store.get("k") == b"v"
    finally:
        store.close()


def test_repack_changes_the_pages_and_keeps_rows_and_seal(tmp_path: Path) -> None:
    node = tmp_path / "c"
    store_open.build(node, state_rows=300, index_rows=300, transactions=400)
    db = node / "ledger.db"
    rows = _contents(db)
    old = repack(db, page_size=OLD_PAGE_SIZE)  # as a store made before PAGE_SIZE
    assert (old.page_size_before, old.page_size) == (PAGE_SIZE, OLD_PAGE_SIZE)
    assert _page_size(db) == OLD_PAGE_SIZE and _contents(db) == rows
    result = CliRunner().invoke(app, ["node", "repack", "--data-dir", str(node), "--json"])
    assert result.exit_code == 0, result.output
    assert '"page_size": 4096' in result.output and '"page_size_before": 16384' in result.output
    assert _page_size(db) == PAGE_SIZE and _contents(db) == rows
    with Embedded(node) as emb:  # the open checks the seal over every row
        assert emb.store.head() is not None
    again = CliRunner().invoke(app, ["node", "repack", "--data-dir", str(node)])
    assert again.exit_code == 0 and "nothing to do" in again.output


def test_a_store_in_use_is_refused_and_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    store = _store_with_a_block(db)
    try:
        with pytest.raises(ConfigError, match=r"in use.*stop the node"):
            repack(db, page_size=OLD_PAGE_SIZE)
        assert _page_size(db) == PAGE_SIZE
        assert store.get("k") == b"v"
    finally:
        store.close()
    assert repack(db, page_size=OLD_PAGE_SIZE).page_size == OLD_PAGE_SIZE


def test_a_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no ledger database"):
        repack(tmp_path / "ledger.db")
