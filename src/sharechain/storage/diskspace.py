"""A full disk: the node stops taking work, says so, and resumes when space returns.

`DiskGuard` watches the file system of the node's data directory. The disk
counts as full when less than `disk_reserve_bytes` (a data directory
setting, default `DEFAULT_RESERVE`) is free, or when a write failed for
lack of space (`ENOSPC`, `EDQUOT`, SQLite's `SQLITE_FULL`: `note`). While it
is full:

- every signed request that would make the node write (anything but GET and
  HEAD under `/v1`) is answered **503** `{"error": "disk_full", ...}` with
  `Retry-After` (`sharechain.api.refusals`), and in-process submissions
  raise `DiskFullError`;
- `/v1/health` lists the alarm and `sharechain_disk_full` is 1
  (`sharechain_disk_free_bytes` shows the space left);
- blocks from the ordering service are still tried: a commit that fails for
  lack of space is rolled back whole by SQLite (the store stays at its last
  block, never between two), and the loop tries again after a pause.

Once `check` (every `CHECK_SECONDS`) sees the reserve free again and a
probe file can be written and synced, the alarm clears and the node catches
up from its peers like after any pause. The node's own write-ahead log is
given back meanwhile when it crowds the disk (`wal_crowds`,
`Store.shrink_wal`): a busy node's WAL can hold hundreds of MiB, and on a
small disk that is the very space the guard would otherwise wait for. Giving
it back copies its newest pages into the database, which may grow by at most
the WAL's size: while space is plentiful the guard sets room for that aside
in `SPARE_FILE` (`spare_for`: twice the WAL, in powers of two from 1 MiB up
to `SPARE_BYTES`), and deletes it when that copy fails for lack of space,
or when the node starts on a disk below its reserve (`make_room`: SQLite
needs room to open a database; another program may have filled the disk
while the node was down).
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge

from sharechain.errors import DiskFullError

__all__ = [
    "CHECK_SECONDS",
    "DEFAULT_RESERVE",
    "PROBE_FILE",
    "SPARE_BYTES",
    "SPARE_FILE",
    "SPARE_FLOOR",
    "WAL_FLOOR",
    "DiskFullError",
    "DiskGuard",
    "is_disk_full",
    "spare_for",
    "wal_crowds",
]

log = logging.getLogger("sharechain.node")

DEFAULT_RESERVE = 64 * 1024 * 1024
"""Bytes that must stay free on the data directory's file system (SQLite's WAL and
checkpoints need room; a snapshot or blob written into the last bytes would fail)."""
CHECK_SECONDS = 1.0
PROBE_FILE = ".disk-probe"
"""Written and removed to see whether space is back."""
SPARE_FILE = ".disk-spare"
"""Space the node sets aside while there is plenty (`DiskGuard.release_spare`)."""
SPARE_BYTES = 16 * 1024 * 1024
"""Largest spare file: room for a checkpoint to copy the WAL's newest pages back."""
SPARE_FLOOR = 1024 * 1024
"""Smallest spare file (a node whose WAL is still small: a new or quiet one)."""
WAL_FLOOR = 4 * 1024 * 1024
"""A write-ahead log smaller than this is never worth truncating (`wal_crowds`)."""


def wal_crowds(wal: int, free: int | None, full: bool) -> bool:
    """Whether a store's write-ahead log of `wal` bytes should be copied back and
    truncated: it holds more than `WAL_FLOOR` and the disk is full, or the log
    is more than half of what is still free.

    A busy writer's WAL grows to the store's limit (`wal_limit_for`: a sixteenth
    of the disk, from 16 to 256 MiB) and keeps that size: on a small disk it
    takes the space the guard waits for, and the node, refusing work for a full
    disk, would never see it come back.
    """
    if wal <= WAL_FLOOR:
        return False
    return full or free is None or wal > free // 2


def spare_for(wal: int, cap: int = SPARE_BYTES) -> int:
    """Bytes to set aside for copying a WAL of `wal` bytes back into the database.

    The copy grows the database by at most the WAL's size; twice that leaves room
    for the WAL to double before the next check. Powers of two from `SPARE_FLOOR`,
    so that a WAL that grows a little does not rewrite the spare, and never more
    than `cap` (0: no spare). A fixed 16 MiB for every node cost a test suite that
    starts a few hundred of them gigabytes of disk.
    """
    if cap <= 0:
        return 0
    size = SPARE_FLOOR
    while size < 2 * wal and size < cap:
        size <<= 1
    return min(size, cap)


def is_disk_full(exc: BaseException) -> bool:
    """True if `exc` is a write that failed for lack of space."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or (
            "disk is full" in str(exc)
        )
    return False


class DiskGuard:
    """Whether the data directory's disk is full, as last checked. Thread-safe."""

    def __init__(
        self,
        path: Path,
        reserve: int,
        registry: CollectorRegistry,
        *,
        free_bytes: Callable[[Path], int] | None = None,
        spare: int = SPARE_BYTES,
    ) -> None:
        self.path = path
        self.reserve = max(0, reserve)
        self.spare = max(0, spare)
        """Most bytes `SPARE_FILE` holds (`spare_for`); 0: none is kept."""
        self.full: str | None = None
        """Why the node takes no work (None: there is space)."""
        self.free: int | None = None
        """Bytes free at the last `check` (None: not read yet, or unreadable)."""
        self._free_bytes = free_bytes or _statvfs_free
        self._lock = threading.Lock()
        self._full_gauge = Gauge(
            "sharechain_disk_full",
            "1 while the node's data directory disk is full and it refuses work",
            registry=registry,
        )
        self._free_gauge = Gauge(
            "sharechain_disk_free_bytes",
            "Bytes free on the file system of the node's data directory",
            registry=registry,
        )
        self._full_gauge.set(0)

    def _set(self, reason: str | None) -> None:
        with self._lock:
            before, self.full = self.full, reason
        self._full_gauge.set(0 if reason is None else 1)
        if reason is not None and before is None:
            log.error("ALERT %s", reason)
        elif reason is None and before is not None:
            log.warning("disk space is back on %s: the node takes work again", self.path)

    def _reason(self, free: int, cause: str = "") -> str:
        return (
            f"the disk of this node's data directory ({self.path}) is full: {free} bytes "
            f"free, it keeps {self.reserve} in reserve{cause}. It takes no work until space "
            "is freed there; its store is intact and it catches up when space returns"
        )

    def check(self, wal: int = 0) -> str | None:
        """Look at the free space now (and probe a write when it seems back); the reason.

        With space to spare, sets aside (or grows) the spare file for copying back
        a write-ahead log of `wal` bytes (`spare_for`)."""
        try:
            free = self._free_bytes(self.path)
        except OSError as exc:
            log.warning("cannot read the free space of %s: %s", self.path, exc)
            self.free = None
            return self.full
        self.free = free
        self._free_gauge.set(free)
        if free < self.reserve:
            self._set(self._reason(free))
        elif self.full is not None and self._probe():
            self._set(None)
        if self.full is None:
            self._keep_spare(spare_for(wal, self.spare), free)
        return self.full

    def _keep_spare(self, size: int, free: int) -> None:
        """Grow `SPARE_FILE` to `size` bytes when the reserve stays free besides."""
        spare = self.path / SPARE_FILE
        try:
            held = spare.stat().st_size
        except FileNotFoundError:
            held = 0
        except OSError:
            return
        if held >= size or free < self.reserve + size - held:
            return
        try:
            with spare.open("ab") as f:
                os.posix_fallocate(f.fileno(), 0, size)  # blocks taken, not a hole
                os.fsync(f.fileno())
        except OSError:  # the space went meanwhile: try again at a later check
            spare.unlink(missing_ok=True)

    def release_spare(self) -> int:
        """Delete the spare file; the bytes it gave back (0: there was none).

        A node whose disk filled up during a write may need a little room to give
        space back: copying its WAL's newest pages into the database can grow the
        file. The spare is that room; `check` sets it aside again once the reserve
        and the spare are free besides."""
        spare = self.path / SPARE_FILE
        try:
            size = spare.stat().st_size
            spare.unlink()
        except OSError:
            return 0
        return size

    def make_room(self) -> int:
        """When a database would not open on a disk `check` found full: give the spare
        back (SQLite needs room to create a database's `-shm` and `-wal` files); the
        bytes given back. The node then starts with the disk full and takes no work
        until space returns (`check` sets the spare aside again)."""
        given = self.release_spare()
        if given:
            log.warning(
                "gave up the disk's %d-byte spare so the node can open its databases on a "
                "disk with %s bytes free (%d kept in reserve)",
                given,
                self.free,
                self.reserve,
            )
        return given

    def _probe(self) -> bool:
        probe = self.path / PROBE_FILE
        try:
            with probe.open("wb") as f:
                f.write(bytes(4096))
                f.flush()
                os.fsync(f.fileno())
            return True
        except OSError:
            return False
        finally:
            probe.unlink(missing_ok=True)

    def note(self, exc: BaseException) -> bool:
        """Record a failed write; True if it failed for lack of space (the disk is then full)."""
        if not is_disk_full(exc):
            return False
        try:
            free = self._free_bytes(self.path)
        except OSError:
            free = 0
        self._set(self._reason(free, f" (a write failed: {exc})"))
        return True

    def refuse(self) -> None:
        """Raise `DiskFullError` while the disk is full."""
        reason = self.full
        if reason is not None:
            raise DiskFullError(reason)


def _statvfs_free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
