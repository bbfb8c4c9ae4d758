"""Rewriting a stopped node's ledger with the page size this version creates.

SQLite fixes a database's page size when the file is made, so a store made
before `store.PAGE_SIZE` keeps its 16 KiB pages, and with them about 2.2x the
bytes written per transaction once its state is large (`make bench`
`commit_scale`). `repack` rewrites it: leave WAL mode (SQLite refuses while
any other connection has the file open, which is how a running node is
detected), set the page size, VACUUM (one transaction: a failure leaves the
file as it was), and go back to WAL mode. Rows, rowids and so the store's
seal are unchanged.
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sharechain.errors import ConfigError
from sharechain.ledger.store import PAGE_SIZE

__all__ = ["Repacked", "repack"]


@dataclass(frozen=True, slots=True)
class Repacked:
    """What `repack` did."""

    page_size_before: int
    page_size: int
    bytes_before: int
    bytes_after: int

    @property
    def changed(self) -> bool:
        return self.page_size_before != self.page_size


def repack(path: Path, page_size: int = PAGE_SIZE) -> Repacked:
    """Rewrite the SQLite file at `path` with `page_size` pages (nothing to do if it has them).

    Raises ConfigError if the file is missing, in use (a node is running on
    it), or the disk has no room for the copy VACUUM writes.
    """
    if not path.is_file():
        raise ConfigError(f"no ledger database at {path}")
    before = _size(path)
    db = sqlite3.connect(path, isolation_level=None, timeout=1.0)
    try:
        current = int(db.execute("PRAGMA page_size").fetchone()[0])
        if current == page_size:
            return Repacked(current, current, before, before)
        free = shutil.disk_usage(path.parent).free
        if free < 2 * before:
            raise ConfigError(
                f"repacking {path} needs about {2 * before >> 20} MiB free beside it "
                f"(VACUUM writes a copy); {free >> 20} MiB are free: make room and run it again"
            )
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            mode = db.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        except sqlite3.OperationalError as exc:
            raise _in_use(path, exc) from exc
        if mode != "delete":
            raise _in_use(path, None)
        try:
            db.execute(f"PRAGMA page_size={page_size}")
            db.execute("VACUUM")
        except sqlite3.Error as exc:
            raise ConfigError(f"could not repack {path}: {exc}; the file is unchanged") from exc
        finally:
            db.execute("PRAGMA journal_mode=WAL")
        done = int(db.execute("PRAGMA page_size").fetchone()[0])
    finally:
        db.close()
    return Repacked(current, done, before, _size(path))


def _in_use(path: Path, exc: Exception | None) -> ConfigError:
    why = f" ({exc})" if exc is not None else ""
    return ConfigError(
        f"{path} is in use{why}: stop the node (or whatever has the file open) and run it again"
    )


def _size(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
