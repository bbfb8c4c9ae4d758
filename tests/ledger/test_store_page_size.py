"""A new store has `PAGE_SIZE` pages; a store made with larger ones keeps them and works."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sharechain.bench.commit_scale import OLD_PAGE_SIZE
from sharechain.ledger.store import PAGE_SIZE, Store


def _page_size(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA page_size").fetchone()[0])
    finally:
        db.close()


def test_a_new_store_has_small_pages(tmp_path: Path) -> None:
    Store(tmp_path / "new.db").close()
    assert _page_size(tmp_path / "new.db") == PAGE_SIZE == 4096


def test_an_older_store_keeps_its_pages_and_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA page_size={OLD_PAGE_SIZE}")
    db.execute("CREATE TABLE fix_page_size (a)")  # the first write fixes the size
    db.execute("DROP TABLE fix_page_size")
    db.commit()
    db.close()
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
    store.close()
    assert _page_size(path) == OLD_PAGE_SIZE
    store = Store(path)
    try:
        head = store.head()
        assert head is not None and head.height == 0
        assert store.get("k") == b"v"
    finally:
        store.close()
