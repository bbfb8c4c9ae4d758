"""The connections of a store besides its writer's: readers, and a checkpointer.

Reads.
A block's commit holds the store's write connection for as long as its
COMMIT takes, fsync included (tens of milliseconds). A thread reading
through that connection would wait as long: an API handler asking for the
height stalled the node's whole event loop behind every commit. Readers
other than the writing thread therefore read through connections of their
own, in WAL mode, which see the store as last committed and never wait for
the writer (SQLite's snapshot isolation: a COMMIT in progress is invisible
until it completes).

Connections are pooled, not kept per thread: threads come and go (executor
pools, per-request threads), and a connection left behind by each would be
an open file for the life of the node. The pool keeps at most `KEEP` idle
connections and opens another when all are busy.

Checkpoints. In WAL mode a commit appends pages to the WAL, and a checkpoint
copies them back into the database file. SQLite runs one itself inside the
COMMIT that passes 1,000 WAL pages, on the committing thread, which then
waits for the copy and a second fsync. The store turns that off and leaves
checkpoints to a thread of its own (`Checkpointer`), every 8 commits or
each second: the committing thread only appends, a page rewritten by
several blocks is copied back once, and the copy overlaps the next blocks'
work. The WAL stays bounded: past its limit (`wal_limit_for`: a sixteenth of
the disk, from 16 MiB up to `WAL_LIMIT`, 256 MiB) the writer checkpoints
itself (as SQLite would have), and the file is trimmed back to that size
when the WAL starts over.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "EVERY",
    "KEEP",
    "PERIOD",
    "WAL_LIMIT",
    "WAL_LIMIT_FLOOR",
    "Checkpointer",
    "ReadPool",
    "wal_limit_for",
]

KEEP = 8
"""Idle read connections a store keeps open (more are opened when busy, then closed)."""

EVERY = 8
"""Commits after which the checkpoint thread runs (`Checkpointer.every`)."""

PERIOD = 1.0
"""Seconds after which the thread checkpoints whatever commits are pending."""

WAL_LIMIT = 256 << 20
"""WAL bytes past which the committing thread checkpoints itself (the WAL is trimmed back
to this size when it starts over), on a disk of 4 GiB or more (`wal_limit_for`)."""

WAL_LIMIT_FLOOR = 16 << 20
"""The smallest WAL limit, whatever the disk (`wal_limit_for`)."""


def wal_limit_for(path: str) -> int:
    """The WAL limit for a database at `path`: a sixteenth of its file system's size,
    from `WAL_LIMIT_FLOOR` up to `WAL_LIMIT`.

    A fixed 256 MiB let a busy store's WAL hold a quarter of a 1 GiB disk, and
    all of a 256 MiB one (the node's disk watch then had to give it back). An
    unreadable file system gets `WAL_LIMIT`."""
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)) or ".")
    except OSError:
        return WAL_LIMIT
    return max(WAL_LIMIT_FLOOR, min(WAL_LIMIT, st.f_blocks * st.f_frsize // 16))


class ReadPool:
    """Read-only connections to one SQLite file, lent out one per read."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        db.execute("PRAGMA query_only=1")
        return db

    @contextmanager
    def connection(self, snapshot: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection for one read; with `snapshot`, its statements all see one
        committed state (one read transaction), even if a block commits meanwhile."""
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError("the store is closed")
            db = self._idle.pop() if self._idle else None
        if db is None:
            db = self._open()
        try:
            if snapshot:
                db.execute("BEGIN")
            yield db
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")  # read-only: nothing to keep
            with self._lock:
                keep = not self._closed and len(self._idle) < KEEP
                if keep:
                    self._idle.append(db)
            if not keep:
                db.close()

    def close(self) -> None:
        """Close the idle connections; those lent out close when given back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for db in idle:
            db.close()


class Checkpointer:
    """Copies committed WAL pages back into the database file, on a thread of its own.

    `limit`: the WAL bytes past which the writer checkpoints itself (the store's
    `journal_size_limit`, `wal_limit_for`)."""

    def __init__(self, path: str, limit: int = WAL_LIMIT) -> None:
        self.path = path
        self.wal = path + "-wal"
        self._due = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.every = EVERY
        """Commits between two checkpoints of the thread (a page several of them
        rewrote is copied back once)."""
        self._pending = 0
        self.limit = limit
        """WAL bytes past which `committed` checkpoints on the writer's thread."""
        self.runs = 0
        """Checkpoints run by the thread (for tests and metrics)."""

    def committed(self, writer: sqlite3.Connection) -> None:
        """Called by the writer after each COMMIT: every `every` commits, wake the
        thread (which also checkpoints what is pending each `PERIOD` seconds). Past
        `limit` (the thread lagging, or stopped), checkpoint here as SQLite's own
        automatic checkpoint would: PASSIVE, so never waiting for a reader; the
        next transaction then starts the WAL over and trims it to `limit`
        (`journal_size_limit`)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="checkpoint", daemon=True)
            self._thread.start()
        self._pending += 1
        if self._pending >= self.every:
            self._due.set()
        with contextlib.suppress(OSError):
            if os.stat(self.wal).st_size > self.limit:
                writer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _run(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            while True:
                self._due.wait(PERIOD)
                self._due.clear()
                if self._stop:
                    return
                if not self._pending:
                    continue
                self._pending = 0  # commits from here on wait for the next run
                try:  # opened here, on first use: the writer made the file
                    if db is None:
                        db = sqlite3.connect(self.path, isolation_level=None)
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    self.runs += 1
                except sqlite3.Error:  # busy, or the file went away: next time
                    continue
        finally:
            if db is not None:
                db.close()

    def close(self) -> None:
        """Stop the thread (the writer's own close then checkpoints what is left)."""
        self._stop = True
        self._due.set()
        if self._thread is not None:
            self._thread.join()
