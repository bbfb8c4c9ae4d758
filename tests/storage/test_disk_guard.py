"""The disk alarm's rules, without root: free space given through the guard's seam.

`tests/node/test_disk_full.py` fills a real (tmpfs) disk end to end; mounting one
needs root. Here the same guard decides from the free space it is told.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sharechain.errors import DiskFullError
from sharechain.storage.diskspace import DiskGuard


def _gauge(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name)


def test_below_the_reserve_the_node_refuses_work_and_resumes_when_space_returns(
    tmp_path: Path,
) -> None:
    free = [10 << 20]
    registry = CollectorRegistry()
    guard = DiskGuard(tmp_path, 64 << 20, registry, free_bytes=lambda _: free[0])
    reason = guard.check()
    assert reason is not None and "is full" in reason and str(64 << 20) in reason
    assert _gauge(registry, "sharechain_disk_full") == 1
    assert _gauge(registry, "sharechain_disk_free_bytes") == 10 << 20
    with pytest.raises(DiskFullError, match="takes no work"):
        guard.refuse()
    free[0] = 1 << 30  # space is back, and a probe write succeeds
    assert guard.check() is None
    assert _gauge(registry, "sharechain_disk_full") == 0
    guard.refuse()
    assert not (tmp_path / ".disk-probe").exists()


def test_a_write_that_fails_for_space_raises_the_alarm_and_others_do_not(tmp_path: Path) -> None:
    guard = DiskGuard(tmp_path, 0, CollectorRegistry(), free_bytes=lambda _: 1 << 30)
    assert not guard.note(OSError(errno.EACCES, "permission denied"))
    assert not guard.note(ValueError("not a write"))
    assert guard.full is None
    assert guard.note(sqlite3.OperationalError("database or disk is full"))
    assert guard.full is not None and "a write failed" in guard.full
    with pytest.raises(DiskFullError):
        guard.refuse()
    assert guard.check() is None  # space there and the probe writes: cleared
    assert guard.note(OSError(errno.ENOSPC, "No space left on device"))
    assert guard.full is not None
