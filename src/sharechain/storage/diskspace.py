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
up from its peers like after any pause.
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

__all__ = ["CHECK_SECONDS", "DEFAULT_RESERVE", "DiskFullError", "DiskGuard", "is_disk_full"]

log = logging.getLogger("sharechain.node")

DEFAULT_RESERVE = 64 * 1024 * 1024
"""Bytes that must stay free on the data directory's file system (SQLite's WAL and
checkpoints need room; a snapshot or blob written into the last bytes would fail)."""
CHECK_SECONDS = 1.0
_PROBE = ".disk-probe"


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
    ) -> None:
        self.path = path
        self.reserve = max(0, reserve)
        self.full: str | None = None
        """Why the node takes no work (None: there is space)."""
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

    def check(self) -> str | None:
        """Look at the free space now (and probe a write when it seems back); the reason."""
        try:
            free = self._free_bytes(self.path)
        except OSError as exc:
            log.warning("cannot read the free space of %s: %s", self.path, exc)
            return self.full
        self._free_gauge.set(free)
        if free < self.reserve:
            self._set(self._reason(free))
        elif self.full is not None and self._probe():
            self._set(None)
        return self.full

    def _probe(self) -> bool:
        probe = self.path / _PROBE
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
