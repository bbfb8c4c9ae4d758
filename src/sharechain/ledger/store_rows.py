"""The store's records and its bulk INSERT (`ledger/store.py` re-exports the records).

What a read of the store returns (`Head`, `TxLocation`, `HistoryEntry`), what
its sealer is shown of each block (`BlockChange`, `RowChange`), and the
multi-row INSERT its one write path uses: the parts of the store that hold
no connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

from sharechain.ledger.schema import RECENT, RECENT_KEY
from sharechain.ledger.validation import REPLAY

__all__ = [
    "BlockChange",
    "Cursor",
    "Head",
    "HistoryEntry",
    "RowChange",
    "TxLocation",
    "blobs",
    "first",
    "insert_index_rows",
    "insert_rows",
    "not_merged",
]


@dataclass(frozen=True, slots=True)
class Head:
    """The tip of the stored chain."""

    height: int
    """Height of the last committed block."""
    hash: bytes
    """Its header hash."""
    state_root: bytes
    """Running hash over every block's state delta hash up to this block."""
    timestamp: int
    """Its block time (ms)."""


@dataclass(frozen=True, slots=True)
class TxLocation:
    """Where a transaction was committed."""

    height: int
    """Block height."""
    index: int
    """Position in the block."""
    code: str
    """Its validation code."""
    type: str
    """Transaction type."""
    sender: str
    """Sending organisation."""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One transaction that concerned a state key."""

    height: int
    """Block height."""
    index: int
    """Position in the block."""
    tx_id: bytes
    """The transaction id."""


RowChange = tuple[str, str, bytes | None, bytes | None]
"""One state row a block changed: (table, key, value before, value after); None: absent."""


@dataclass(frozen=True, slots=True)
class BlockChange:
    """What one block changed, as the store's sealer sees it (inside the block's transaction)."""

    head: Head
    """The block just written: the new head."""
    rows: tuple[RowChange, ...]
    """Every state row it wrote or deleted, with the value it replaced."""
    tx_rows: int
    """Rows it added to the transaction index."""
    history_rows: int
    """Rows it added to the history index."""


first = itemgetter(0)
"""The first field of a row (the sort key of the rows a block inserts)."""

_ROWS_PER_INSERT = 128
"""Rows one INSERT statement writes (`insert_rows`)."""


def blobs(values: Iterable[bytes]) -> list[bytearray]:
    """`values` as bytearrays, to bind: the same BLOBs to SQLite, bound faster.

    Python's sqlite3 binds str, int, float and bytearray directly but sends
    every other type, bytes included, through its adapter registry first:
    about 500 ns a value (CPython 3.11, measured), against some 70 ns to copy
    a value of a few hundred bytes into a bytearray. A block binds several
    per transaction (its state values, its ids in the two indexes), so
    `Store.commit_block` makes its rows' bytes columns bytearrays as it
    builds them."""
    return [bytearray(x) for x in values]


def insert_rows(
    db: sqlite3.Connection, head: str, width: int, rows: Sequence[Any], tail: str = ""
) -> int:
    """`INSERT ... VALUES` of `rows` (each `width` values) in their order, 128 rows a
    statement, and the number of rows the inserts changed.

    The same rows, in the same order, as `executemany` of a one-row statement
    (an OR IGNORE or ON CONFLICT clause acts on each row in turn either way),
    at a fifth less CPU: one statement step per 128 rows instead of one per row.
    """
    one = "(" + ",".join("?" * width) + ")"
    full = len(rows) - len(rows) % _ROWS_PER_INSERT
    changed = 0
    if full:
        q = f"{head} VALUES {','.join([one] * _ROWS_PER_INSERT)} {tail}"
        for i in range(0, full, _ROWS_PER_INSERT):
            values = list(chain.from_iterable(rows[i : i + _ROWS_PER_INSERT]))
            changed += db.execute(q, values).rowcount
    if full < len(rows):
        changed += db.executemany(f"{head} VALUES {one} {tail}", rows[full:]).rowcount
    return changed


def not_merged(db: sqlite3.Connection, tx_rows: list[Any]) -> list[Any]:
    """`tx_rows` less the replays whose original the main `txs` table holds (the
    index keeps pointing at the original; one in the recent table is kept by
    OR IGNORE). Only a replay can repeat an id: execution found every other
    id in neither table, against this head (`Store._check_extends`)."""
    replays = [r[0] for r in tx_rows if r[5] == REPLAY]
    found: set[bytes] = set()
    for i in range(0, len(replays), 500):
        chunk = replays[i : i + 500]
        q = f"SELECT id FROM txs WHERE id IN ({','.join('?' * len(chunk))})"
        found.update(bytes(r[0]) for r in db.execute(q, chunk))
    return [r for r in tx_rows if bytes(r[0]) not in found] if found else tx_rows


Cursor = tuple[Any, ...] | None
"""Where the last move of rows out of a recent table stopped: the primary key of
the last row moved (None: start from the first row)."""


def insert_index_rows(
    db: sqlite3.Connection,
    table: str,
    width: int,
    rows: Sequence[Any],
    merge_rows: int,
    held: int | None = None,
    cursor: Cursor = None,
) -> tuple[int, int, Cursor]:
    """Insert a block's rows of the index `table` into its recent table (OR IGNORE:
    a row already there stays); past `merge_rows`, move the excess into the main table.

    `held`: the rows the recent table holds before these, as the caller counted
    them (None: count them here; a COUNT(*) walks the whole table, 0.7 ms at
    16k rows, at every block). `cursor`: where the last move stopped. Returns
    the rows added, the rows the recent table then holds, and the cursor. The
    count only decides how many rows move: a wrong one moves too many or too
    few, never loses or doubles a row.

    The rows moved are the next ones in key order after `cursor`, from the
    start again once the end is passed: a block's move touches the main
    table's pages over one stretch of keys, and a whole sweep writes each
    page about once, as a merge of the whole recent table at once did, but a
    little every block, where that merge stalled the block that triggered it
    on every node at the same height (15-45 ms of CPU each, the p99 of a
    loaded network)."""
    recent = RECENT[table]
    added = insert_rows(db, f"INSERT OR IGNORE INTO {recent}", width, rows)
    if held is None:
        held = int(db.execute(f"SELECT COUNT(*) FROM {recent}").fetchone()[0])
    else:
        held += added
    for _ in range(2):  # up to the end, then on from the start
        if held <= merge_rows:
            break
        moved, cursor = _move(db, table, held - merge_rows, cursor)
        held -= moved
    return added, held, cursor


def _move(db: sqlite3.Connection, table: str, count: int, cursor: Cursor) -> tuple[int, Cursor]:
    """Move up to `count` rows of `table`'s recent table, the first after `cursor` in
    key order, into the main table; returns how many moved and where they stopped
    (None once they reached the end)."""
    recent, key = RECENT[table], RECENT_KEY[table]
    cols = ", ".join(key)
    after = f"({cols}) > ({', '.join('?' * len(key))})" if cursor is not None else "1"
    start = tuple(cursor) if cursor is not None else ()
    last = db.execute(
        f"SELECT {cols} FROM {recent} WHERE {after} ORDER BY {cols} LIMIT 1 OFFSET ?",
        (*start, count - 1),
    ).fetchone()
    where, params = after, start
    if last is not None:
        where = f"{after} AND ({cols}) <= ({', '.join('?' * len(key))})"
        params = (*start, *last)
    # Key order: each page of the main table is written once. Plain INSERT: a row
    # in both tables is a damaged store, refused.
    db.execute(f"INSERT INTO {table} SELECT * FROM {recent} WHERE {where} ORDER BY {cols}", params)
    moved = db.execute(f"DELETE FROM {recent} WHERE {where}", params).rowcount
    return moved, (tuple(last) if last is not None else None)
