"""The peer's SQLite store: blocks, world state and the history index.

One database file (WAL mode) holds:

- `blocks`: every block's bytes, its hash and the running state root;
- `txs`: where each transaction id sits (height, index) and its code;
- `state`: the world state, key to canonical CBOR value, except...
- `state_idx`: ...the keys under `idx/` (the contracts' secondary indexes:
  long keys, one-byte values, written and deleted by the thousand). A table
  of their own keyed by the key alone stores each key once, where `state`
  stores it twice (its rows and its key index); reads, scans and commits
  route by prefix, so the split shows nowhere else;
- `history`: for each state key, every transaction that wrote or touched it,
  so provenance and audit trails are index lookups, not scans.

`txs` and `history` each have a small `*_recent` twin that takes new rows,
which move into the main table a few each block once it is full
(`schema.RECENT`); reads see both as one index. Only
the writing thread reads through the write connection while it writes;
other threads then read through pooled connections (`store_reads`), and WAL
checkpoints run on a thread of their own.

A block and all its writes commit in one SQLite transaction, so a crash leaves
the store at height h or h+1, never in between. A node with a backlog of
blocks may commit several in one transaction (`Store.group`): a crash then
leaves it at h or h+k, still never inside a block, and the COMMIT (with its
WAL writes and fsync, the largest part of a commit's cost) is paid once.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from sharechain.errors import ChainError, ConfigError
from sharechain.ledger.schema import (
    INDEX_END,
    INDEX_PREFIX,
    MERGE_ROWS,
    RECENT,
    SCHEMA,
    check_schema,
    migrate,
    union_query,
)
from sharechain.ledger.store_reads import WAL_LIMIT, Checkpointer, ReadPool, wal_limit_for
from sharechain.ledger.store_rows import (
    BlockChange,
    Cursor,
    Head,
    HistoryEntry,
    RowChange,
    TxLocation,
    blobs,
    first,
    insert_index_rows,
    insert_rows,
    not_merged,
)

__all__ = [
    "PAGE_SIZE",
    "BlockChange",
    "Head",
    "HistoryEntry",
    "RowChange",
    "Store",
    "TxLocation",
    "is_damage",
]


PAGE_BYTES = 8 << 20
"""Bytes of blocks `Store.iter_blocks` reads at once at most: 256 blocks near the
largest size etcd orders (1.5 MiB) were 384 MiB in memory per reader."""

PAGE_SIZE = 4096
"""Bytes per SQLite page of a store this version creates (an older store keeps its own:
SQLite fixes the size when the file is made; docs/node.md says how to repack one).

Every block inserts keys at random places in the state's key index and in the
history and transaction indexes, so a COMMIT writes (and a checkpoint copies
back) one page per key once an index is larger than a block's keys, whatever
the page's size. With a million state keys and blocks of 400, 4 KiB pages write
35 KiB per transaction where 16 KiB pages wrote 78, and commit 1.3x faster
(`make bench` `commit_scale`; blocks of 2,000: 16 against 65 KiB, 1.5x); on a
new, small store they cost up to 7% (docs/node.md, "Stores that grew")."""


def _prefix_end(prefix: str) -> str:
    return prefix + "\U0010ffff"


_NOT_THE_FILE = {sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_READONLY}
"""Primary SQLite codes of a database that could not be opened or written for reasons
outside the file (a missing directory, permissions, a read-only mount)."""
_THE_DISK = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR}
_DAMAGE = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
"""Primary SQLite codes of a file that is not, or no longer, a sound database."""


def _primary_code(exc: BaseException) -> int | None:
    """The primary SQLite result code of `exc` (None if it carries none)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if not isinstance(code, int) else code & 0xFF


def is_damage(exc: BaseException) -> bool:
    """Whether `exc` is SQLite finding a database file damaged (corrupt, or not a
    database at all) rather than busy, full or out of reach."""
    return isinstance(exc, sqlite3.DatabaseError) and _primary_code(exc) in _DAMAGE


def _open_advice(exc: BaseException) -> str:
    """What to do about a store that would not open: restoring is the advice only
    for a damaged file, never for a good one behind a full disk or a wrong path."""
    primary = _primary_code(exc)
    if primary in _NOT_THE_FILE:
        return (
            "check that its directory exists and that this user may read and write "
            "there (and create files next to it: SQLite adds -wal and -shm files)"
        )
    if primary in _THE_DISK:
        return (
            "the disk may be full or failing: check its free space and its health; "
            "the file itself is not known to be damaged"
        )
    return "if the file is damaged, restore it or re-sync the node from its peers"


class Store:
    """A peer's SQLite database. Thread-safe for one writer and many readers."""

    def __init__(self, path: Path | str, *, durable: bool = True) -> None:
        self.path = str(path)
        wal_limit = WAL_LIMIT if self.path == ":memory:" else wal_limit_for(self.path)
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            # A rowid table for state (values are often a few hundred bytes, too
            # large for a WITHOUT ROWID B-tree) and small pages: see PAGE_SIZE.
            self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: the WAL is fsynced at every block commit, so a power cut loses nothing.
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
            self._db.execute("PRAGMA cache_size=-65536")
            # Checkpoints run on a thread of their own (`store_reads.Checkpointer`).
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._db.execute(f"PRAGMA journal_size_limit={wal_limit}")
            self._db.executescript(SCHEMA)
            check_schema(self._db)
            migrate(self._db)
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            # A damaged schema page can surface as a text decoding error.
            raise ConfigError(
                f"cannot open the ledger database {self.path}: {exc}; {_open_advice(exc)}"
            ) from exc
        self._lock = threading.RLock()
        self._grouped = False
        """True while `group` holds a transaction open (its thread holds `_lock`)."""
        self._spoiled: BaseException | None = None
        """Why a block of the open group failed half-written (the group must roll back)."""
        self._writer: int | None = None
        """The thread with a write transaction open (a group's or a block's): its
        reads go through the write connection, to see its own uncommitted writes."""
        self._reads = ReadPool(self.path)
        self._checkpoints = Checkpointer(self.path, wal_limit) if self.path != ":memory:" else None
        self.merge_rows = MERGE_ROWS
        """Rows a `*_recent` index table holds before blocks move rows out (tests lower it)."""
        self._held: dict[str, int | None] = dict.fromkeys(RECENT)
        """Rows each recent table holds as of the last commit (None: not counted yet,
        or a transaction rolled back since), so a block need not count them."""
        self._sweep: dict[str, Cursor] = dict.fromkeys(RECENT)
        """Where each recent table's last move of rows into its main table stopped
        (`insert_index_rows`); only which rows move next depends on it."""
        self.sealer: Callable[[Store, BlockChange], None] | None = None
        """Called inside each block's transaction, after its writes (`sharechain.ledger.seal`):
        what it writes commits with the block, and what it raises rolls the block back."""
        self.on_commit: Callable[[], None] | None = None
        """Called by the committing thread just before a block's own COMMIT (not a
        group's), which then waits for the disk with the GIL released: the block
        pipeline parses the next block meanwhile. It must not raise or touch the store."""

    @property
    def grouped(self) -> bool:
        """True while a `group` is open: its blocks are written and not yet committed."""
        return self._grouped

    def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.close()
        with self._lock:
            self._db.close()
            self._reads.close()

    def _committed(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.committed(self._db)

    @contextmanager
    def _read(self, snapshot: bool = False) -> Iterator[sqlite3.Connection]:
        """The connection a read made on this thread goes through.

        The writing thread reads through the write connection (its own writes,
        not yet committed, included), and so does any thread while no one
        writes: that connection's page cache is the warm one (another
        connection's starts empty after every commit). While another thread
        writes, a read goes through a connection of the read pool: it sees the
        store as last committed and does not wait for the commit in progress.
        `snapshot`: the read's several statements all see one committed state.
        """
        if self._writer == threading.get_ident() or self.path == ":memory:":
            with self._lock:
                yield self._db
        elif self._lock.acquire(blocking=False):
            try:
                yield self._db
            finally:
                self._lock.release()
        else:
            with self._reads.connection(snapshot) as db:
                yield db

    # -- reads -------------------------------------------------------------

    def head(self) -> Head | None:
        with self._read() as db:
            row = db.execute(
                "SELECT height, hash, state_root, timestamp FROM blocks "
                "ORDER BY height DESC LIMIT 1"
            ).fetchone()
        return Head(*row) if row else None

    def block_bytes(self, height: int) -> bytes | None:
        with self._read() as db:
            row = db.execute("SELECT data FROM blocks WHERE height=?", (height,)).fetchone()
        return bytes(row[0]) if row else None

    def block_meta(self, height: int) -> Head | None:
        with self._read() as db:
            row = db.execute(
                "SELECT height, hash, state_root, timestamp FROM blocks WHERE height=?",
                (height,),
            ).fetchone()
        return Head(*row) if row else None

    def block_hashes(self, size: int, start: int = 0) -> list[tuple[int, bytes]]:
        """(height, hash) of the blocks from height `start` below height `size`, in order,
        in one read (a row per block the store holds: a gap shows as a height skipped)."""
        with self._read() as db:
            rows = db.execute(
                "SELECT height, hash FROM blocks WHERE height >= ? AND height < ? ORDER BY height",
                (start, size),
            ).fetchall()
        return [(height, bytes(h)) for height, h in rows]

    def iter_blocks(self, start: int = 0) -> Iterator[tuple[int, bytes]]:
        """Blocks from `start` in order, fetched in pages so memory stays bounded: up to
        256 blocks a page, and no more than `PAGE_BYTES` of them (one larger block is a
        page of its own); their sizes are read first, from the rows' headers."""
        h = start
        while True:
            with self._read() as db:
                sizes = db.execute(
                    "SELECT height, length(data) FROM blocks WHERE height>=? "
                    "ORDER BY height LIMIT 256",
                    (h,),
                ).fetchall()
                if not sizes:
                    return
                last, total = sizes[0][0], 0
                for height, size in sizes:
                    total += size
                    if total > PAGE_BYTES and height > sizes[0][0]:
                        break
                    last = height
                rows = db.execute(
                    "SELECT height, data FROM blocks WHERE height BETWEEN ? AND ? ORDER BY height",
                    (h, last),
                ).fetchall()
            for height, data in rows:
                yield height, bytes(data)
            h = last + 1

    def get(self, key: str) -> bytes | None:
        if key.startswith(INDEX_PREFIX):
            query = "SELECT value FROM state_idx WHERE key=?"
        else:
            query = "SELECT value FROM state WHERE key=?"
        with self._read() as db:
            row = db.execute(query, (key,)).fetchone()
        return bytes(row[0]) if row else None

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The values of `keys` (absent keys left out): `get` for many keys at a
        fraction of the cost, a query per 500 keys instead of one per key."""
        found: dict[str, bytes] = {}
        idx = [k for k in keys if k.startswith(INDEX_PREFIX)]
        plain = [k for k in keys if not k.startswith(INDEX_PREFIX)] if idx else list(keys)
        with self._read(snapshot=True) as db:
            for table, part in (("state", plain), ("state_idx", idx)):
                for i in range(0, len(part), 500):
                    chunk = part[i : i + 500]
                    marks = ",".join("?" * len(chunk))
                    q = f"SELECT key, value FROM {table} WHERE key IN ({marks})"
                    found.update((k, bytes(v)) for k, v in db.execute(q, chunk))
        return found

    def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        """Every (key, value) whose key starts with `prefix`, in key order."""
        if prefix.startswith(INDEX_PREFIX):
            query = "SELECT key, value FROM state_idx WHERE key>=?1 AND key<?2 ORDER BY key"
        elif INDEX_PREFIX.startswith(prefix):  # "", "i", ...: both tables
            query = (
                "SELECT key, value FROM state WHERE key>=?1 AND key<?2 UNION ALL "
                "SELECT key, value FROM state_idx WHERE key>=?1 AND key<?2 ORDER BY key"
            )
        else:
            query = "SELECT key, value FROM state WHERE key>=?1 AND key<?2 ORDER BY key"
        with self._read() as db:
            rows = db.execute(query, (prefix, _prefix_end(prefix))).fetchall()
        return [(k, bytes(v)) for k, v in rows]

    def known_txs(self, ids: Sequence[bytes]) -> set[bytes]:
        """Which of `ids` are already committed (replay detection)."""
        found: set[bytes] = set()
        with self._read(snapshot=True) as db:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join(f"?{j}" for j in range(1, len(chunk) + 1))
                q = union_query("txs", "id", f"id IN ({marks})")
                found.update(bytes(r[0]) for r in db.execute(q, blobs(chunk)))
        return found

    def tx_location(self, tx_id: bytes) -> TxLocation | None:
        with self._read() as db:
            q = union_query("txs", "height, idx, code, type, sender", "id=?1", "LIMIT 1")
            row = db.execute(q, (tx_id,)).fetchone()
        return TxLocation(*row) if row else None

    def tx_count(self) -> int:
        """Number of committed transactions (valid or not), genesis included."""
        with self._read() as db:
            row = db.execute(
                "SELECT (SELECT COUNT(*) FROM txs) + (SELECT COUNT(*) FROM txs_recent)"
            ).fetchone()
        return int(row[0])

    def history(
        self, key: str, limit: int = 10_000, start: tuple[int, int] = (0, 0)
    ) -> list[HistoryEntry]:
        """The first `limit` transactions that wrote or touched `key`, oldest first, from
        position `start` (height, index in its block) on."""
        return self._history(key, limit, start, newest_first=False)

    def history_before(
        self, key: str, limit: int = 10_000, before: tuple[int, int] | None = None
    ) -> list[HistoryEntry]:
        """The last `limit` transactions that wrote or touched `key` before position
        `before` (height, index in its block; None: up to the newest), oldest first."""
        end = before if before is not None else (2**63 - 1, 0)
        return self._history(key, limit, end, newest_first=True)[::-1]

    def _history(
        self, key: str, limit: int, position: tuple[int, int], *, newest_first: bool
    ) -> list[HistoryEntry]:
        """At most `limit` of `key`'s history rows: from `position` on, oldest first, or
        (`newest_first`) before it, newest first."""
        op, order = ("<", "1 DESC, 2 DESC") if newest_first else (">=", "1, 2")
        with self._read() as db:
            q = union_query(
                "history",
                "height, idx, tx_id",
                f"key=?1 AND (height, idx) {op} (?3, ?4)",
                f"ORDER BY {order} LIMIT ?2",
            )
            rows = db.execute(q, (key, limit, *position)).fetchall()
        return [HistoryEntry(h, i, bytes(t)) for h, i, t in rows]

    def history_prefix(self, prefix: str, limit: int = 10_000) -> list[HistoryEntry]:
        """Distinct transactions that touched any key under `prefix`, oldest first."""
        with self._read() as db:
            q = union_query(
                "history",
                "height, idx, tx_id",
                "key>=?1 AND key<?2",
                "ORDER BY 1, 2 LIMIT ?3",
                distinct=True,
            )
            rows = db.execute(q, (prefix, _prefix_end(prefix), limit)).fetchall()
        return [HistoryEntry(h, i, bytes(t)) for h, i, t in rows]

    def meta(self, name: str) -> bytes | None:
        with self._read() as db:
            row = db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return bytes(row[0]) if row else None

    def set_meta(self, name: str, value: bytes) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    # -- the one write path --------------------------------------------------

    def commit_block(
        self,
        *,
        height: int,
        block_hash: bytes,
        state_root: bytes,
        timestamp: int,
        data: bytes,
        txs: Iterable[tuple[bytes, int, str, str, str]],
        writes: Mapping[str, bytes | None],
        history: Iterable[tuple[str, int, bytes]],
    ) -> None:
        """Commit one block and everything it changes, atomically.

        `txs` rows are (id, index, type, sender, code); `history` rows are
        (key, index, tx id). Refuses a height that does not extend the head,
        which also stops two processes from committing the same height.
        """
        with self._lock, self._block_transaction(height):
            db = self._db
            db.execute(
                "INSERT INTO blocks VALUES (?, ?, ?, ?, ?)",
                (height, block_hash, state_root, timestamp, data),
            )
            # Rows go in key order: B-tree inserts then touch each page
            # once per block instead of once per row (3x faster commits).
            # OR IGNORE: a replayed transaction (code `replay`) has the id of
            # one already indexed; the index keeps pointing at the original.
            # Bytes columns as bytearrays: sqlite3 binds them faster (`blobs`).
            tx_rows = [(bytearray(i), height, x, t, s, c) for i, x, t, s, c in txs]
            tx_rows.sort(key=first)  # ids are unique: no need to compare further
            held, sweep = self._held, self._sweep
            new_txs, held["txs"], sweep["txs"] = insert_index_rows(
                db, "txs", 6, not_merged(db, tx_rows), self.merge_rows, held["txs"], sweep["txs"]
            )
            keys = sorted(writes)
            # Index keys sort together: one slice of the sorted keys.
            lo, hi = bisect_left(keys, INDEX_PREFIX), bisect_left(keys, INDEX_END)
            changed: list[RowChange] = []
            for table, part in (("state", keys[:lo] + keys[hi:]), ("state_idx", keys[lo:hi])):
                if self.sealer is not None:
                    before = self._rows(table, part)
                    changed += [(table, k, before.get(k), writes[k]) for k in part]
                puts = [(k, bytearray(v)) for k in part if (v := writes[k]) is not None]
                dels = [(k,) for k in part if writes[k] is None]
                if puts:
                    # An upsert rewrites the value in place; REPLACE would delete
                    # the row and insert it again under a new rowid, touching
                    # the key index twice.
                    insert_rows(
                        db,
                        f"INSERT INTO {table} (key, value)",
                        2,
                        puts,
                        "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    )
                if dels:
                    db.executemany(f"DELETE FROM {table} WHERE key=?", dels)
            rows = [(k, height, i, bytearray(t)) for k, i, t in history]
            rows.sort(key=first)  # stable: a key's rows keep their block order
            added, held["history"], sweep["history"] = insert_index_rows(
                db, "history", 4, rows, self.merge_rows, held["history"], sweep["history"]
            )
            if self.sealer is not None:
                head = Head(height, block_hash, state_root, timestamp)
                self.sealer(self, BlockChange(head, tuple(changed), new_txs, added))

    def _rows(self, table: str, keys: Sequence[str]) -> dict[str, bytes]:
        """The stored values of `keys` in `table` (absent keys left out)."""
        found: dict[str, bytes] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT key, value FROM {table} WHERE key IN ({','.join('?' * len(chunk))})"
            found.update((k, bytes(v)) for k, v in self._db.execute(q, chunk))
        return found

    @contextmanager
    def group(self) -> Iterator[None]:
        """Commit every block committed inside (by this thread) in one SQLite transaction.

        The COMMIT comes when the `with` block ends, and nothing of the group
        is kept if it raises. A block refused by `commit_block` for its height
        (ChainError) wrote nothing: catch that error inside the group to keep
        the blocks before it. Any other failure of `commit_block` rolls the
        whole group back when it ends, and the group raises that failure
        again even if it was caught. Meanwhile other threads read through a
        second connection: they see the store as last committed (no block
        before it is durable) without waiting for the group; a write from
        another thread (`set_meta`, `commit_block`) waits for it. Groups do
        not nest.
        """
        with self._lock:
            if self._grouped:
                raise RuntimeError("Store.group() does not nest")
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            self._grouped = True
            self._writer = threading.get_ident()
            try:
                yield
                if self._spoiled is not None:
                    raise self._spoiled
                db.execute("COMMIT")
                self._committed()
            except BaseException:
                self._held = dict.fromkeys(RECENT)  # the counts included what rolled back
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            finally:
                self._grouped, self._spoiled, self._writer = False, None, None

    def _check_extends(self, height: int) -> None:
        row = self._db.execute("SELECT MAX(height) FROM blocks").fetchone()
        expected = 0 if row[0] is None else row[0] + 1
        if height != expected:
            raise ChainError(
                f"block {height} does not extend the stored chain (next is {expected})", height
            )

    @contextmanager
    def _block_transaction(self, height: int) -> Iterator[None]:
        """Where one block's writes go: the open group, or a transaction of their own.

        Either way the height is checked first, inside the transaction.
        """
        db = self._db
        if self._grouped:
            # No savepoint per block: SQLite would copy every page the block
            # changes into a sub-journal (it cost more than grouping saves).
            # A refused height is refused before anything is written, so the
            # group may go on; a block that failed half-written spoils it.
            self._check_extends(height)
            try:
                yield
            except BaseException as exc:
                self._spoiled = exc
                raise
            return
        db.execute("BEGIN IMMEDIATE")
        self._writer = threading.get_ident()
        try:
            self._check_extends(height)
            yield
            if self.on_commit is not None:
                self.on_commit()
            db.execute("COMMIT")
            self._committed()
        except BaseException:
            # A COMMIT that failed (a full disk: SQLITE_FULL) may leave the transaction
            # open or have rolled it back already; either way none of it stays.
            self._held = dict.fromkeys(RECENT)
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            self._writer = None

    def wal_bytes(self) -> int:
        """The size of the write-ahead log file now (0 in memory or without one)."""
        try:
            return os.stat(self.path + "-wal").st_size
        except OSError:
            return 0

    def shrink_wal(self, wait: float = 1.0) -> int:
        """Copy every committed WAL frame back into the database and truncate the WAL to
        nothing (a TRUNCATE checkpoint); returns the bytes given back to the disk.

        A writer that is never idle never lets SQLite start the WAL over, so it grows
        to its limit (`wal_limit_for`): on a small disk that is the space a full node waits for.
        Blocks commits meanwhile (it takes the write lock) and waits at most `wait`
        seconds for readers; gives back nothing when they stay. Raises the
        `sqlite3.Error` of a copy that failed (for lack of space: the database
        had to grow); the WAL is then intact.
        """
        if self.path == ":memory:":
            return 0
        before = self.wal_bytes()
        with self._lock:
            if self._grouped or self._writer is not None:
                return 0  # this thread's own open transaction: nothing to copy yet
            db = self._db
            try:
                db.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
                busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            finally:
                db.execute("PRAGMA busy_timeout=30000")  # `sqlite3.connect(timeout=30.0)`
        return 0 if busy else max(0, before - self.wal_bytes())

    def integrity_check(self) -> str:
        with self._lock:
            row = self._db.execute("PRAGMA quick_check").fetchone()
        return str(row[0])
