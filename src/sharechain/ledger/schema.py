"""The layout of a peer's SQLite file, checked on every open and migrated when older.

`sharechain.ledger.store` describes the tables; this module holds their
definition, the check that the file's schema is that one (a flipped byte in
the schema page can rename a column or change a type), and the migration
of older layouts.
"""

from __future__ import annotations

import sqlite3
from functools import lru_cache

__all__ = [
    "INDEX_END",
    "INDEX_PREFIX",
    "MERGE_ROWS",
    "RECENT",
    "RECENT_KEY",
    "SCHEMA",
    "check_schema",
    "migrate",
    "union_query",
]

INDEX_PREFIX = "idx/"
"""Keys under this prefix live in the `state_idx` table."""
INDEX_END = "idx0"
"""The first string after every key under `idx/` ('0' follows '/')."""

_TXS = """(
    id BLOB PRIMARY KEY,
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    type TEXT NOT NULL,
    sender TEXT NOT NULL,
    code TEXT NOT NULL
) WITHOUT ROWID"""
"""The columns of `txs` and `txs_recent` (one layout, see `RECENT`)."""

_HISTORY = """(
    key TEXT NOT NULL,
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    tx_id BLOB NOT NULL,
    PRIMARY KEY (key, height, idx)
) WITHOUT ROWID"""
"""The columns of `history` and `history_recent`."""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    state_root BLOB NOT NULL,
    timestamp INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS txs {_TXS};
CREATE TABLE IF NOT EXISTS state (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS state_idx (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history {_HISTORY};
CREATE TABLE IF NOT EXISTS txs_recent {_TXS};
CREATE TABLE IF NOT EXISTS history_recent {_HISTORY};
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"""


RECENT = {"txs": "txs_recent", "history": "history_recent"}
"""The transaction and history indexes are each two tables: new rows go to the small
`*_recent` one, which holds at most `MERGE_ROWS`; past that, each block moves as
many rows as it added into the main table, the next ones in key order after
where the last move stopped (`store_rows.insert_index_rows`).

Their keys (transaction ids, state keys) are random, so a block's rows land
all over a B-tree: inserting them into the main table dirtied nearly every
page of it at each block, and the COMMIT wrote (and fsynced, and checkpointed)
the whole index again. The recent table stays small, so a block dirties few
pages; the moves sweep the key space, so each page of the main table is
written about once a sweep, for many blocks' rows. A row lives in exactly one
of the two; readers read both (`union_query`)."""

RECENT_KEY = {"txs": ("id",), "history": ("key", "height", "idx")}
"""The primary key of each index's two tables: the order its rows move in."""

MERGE_ROWS = 1 << 14
"""Rows a `*_recent` table holds before blocks start moving rows into the main table."""


def union_query(
    table: str, columns: str, where: str = "", tail: str = "", distinct: bool = False
) -> str:
    """A SELECT of `columns` over both tables of the index `table` (`RECENT`), or
    `table` alone for any other; `tail`: ORDER BY / LIMIT of the whole result,
    which SQLite computes by merging the two tables' ordered rows."""
    cond = f" WHERE {where}" if where else ""
    if table not in RECENT:
        return f"SELECT {'DISTINCT ' if distinct else ''}{columns} FROM {table}{cond} {tail}"
    op = "UNION" if distinct else "UNION ALL"
    return (
        f"SELECT {columns} FROM {table}{cond} {op} "
        f"SELECT {columns} FROM {RECENT[table]}{cond} {tail}"
    )


@lru_cache(maxsize=1)
def _expected_tables() -> dict[str, str]:
    db = sqlite3.connect(":memory:")
    db.executescript(SCHEMA)
    tables = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type='table'"))
    db.close()
    return tables


def check_schema(db: sqlite3.Connection) -> None:
    # A flipped byte in the schema page can rename a column or change a type;
    # SQLite would then read NULLs or fail deep inside a query. Refuse up front.
    found = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type='table'"))
    damaged = sorted(n for n, sql in _expected_tables().items() if found.get(n) != sql)
    if damaged:
        raise sqlite3.DatabaseError(f"the schema of table(s) {', '.join(damaged)} is damaged")


def _move_index_keys(db: sqlite3.Connection) -> None:
    # A store written before `state_idx` existed keeps its index keys in
    # `state`: move them, in one transaction, the first time it is opened.
    where = "FROM state WHERE key>=? AND key<?"
    bounds = (INDEX_PREFIX, INDEX_END)
    if db.execute(f"SELECT 1 {where} LIMIT 1", bounds).fetchone() is None:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(f"INSERT INTO state_idx (key, value) SELECT key, value {where}", bounds)
        db.execute(f"DELETE {where}", bounds)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def migrate(db: sqlite3.Connection) -> None:
    """Bring a file of an older layout to this one (each step in one transaction)."""
    _move_index_keys(db)
