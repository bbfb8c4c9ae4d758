"""`Store.shrink_wal`: a busy store's write-ahead log given back to the disk.

A writer that is never idle never lets SQLite start the WAL over, so it keeps
the size it grew to (up to its limit, `wal_limit_for`); a node on a disk running short hands
it back (`node/service.py`, the disk watch). The store must stay whole, and a
reader that holds an old snapshot must keep it.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sharechain.ledger.store import Store


def _grow(store: Store, mib: int) -> None:
    for i in range(mib * 4):
        store.set_meta(f"filler-{i}", os.urandom(256 * 1024))


def test_the_log_is_copied_back_and_truncated_and_nothing_is_lost(tmp_path: Path) -> None:
    store = Store(tmp_path / "ledger.db")
    _grow(store, 8)
    assert store.wal_bytes() >= 8 << 20
    kept = store.meta("filler-3")
    freed = store.shrink_wal()
    assert freed >= 8 << 20
    assert store.wal_bytes() == 0
    store.set_meta("after", b"x")  # the store still takes writes
    store.close()
    again = Store(tmp_path / "ledger.db")
    try:
        assert again.meta("filler-3") == kept
        assert again.meta("after") == b"x"
        assert again.integrity_check() == "ok"
    finally:
        again.close()


def test_a_reader_holding_a_snapshot_keeps_it_and_the_log(tmp_path: Path) -> None:
    store = Store(tmp_path / "ledger.db")
    try:
        _grow(store, 4)
        reader = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None)
        reader.execute("BEGIN")
        before = reader.execute("SELECT COUNT(*) FROM meta").fetchone()[0]
        store.set_meta("newer", b"y")  # after the reader's snapshot
        size = store.wal_bytes()
        assert store.shrink_wal(wait=0.1) == 0  # the reader still needs the log
        assert store.wal_bytes() == size
        assert reader.execute("SELECT COUNT(*) FROM meta").fetchone()[0] == before
        reader.execute("COMMIT")
        reader.close()
        assert store.shrink_wal() >= size - 4096 and store.wal_bytes() == 0
        assert store.meta("newer") == b"y"
    finally:
        store.close()


def test_an_in_memory_store_has_no_log_to_give_back() -> None:
    store = Store(":memory:")
    try:
        assert store.wal_bytes() == 0 and store.shrink_wal() == 0
    finally:
        store.close()
