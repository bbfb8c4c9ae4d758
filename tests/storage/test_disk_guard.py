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
from sharechain.storage.diskspace import (
    SPARE_BYTES,
    SPARE_FILE,
    SPARE_FLOOR,
    DiskGuard,
    spare_for,
    wal_crowds,
)


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


@pytest.mark.parametrize(
    ("wal", "free", "full", "crowds"),
    [
        (1 << 20, 0, True, False),  # a small log is never worth it
        (200 << 20, 10 << 30, False, False),  # a big log on a roomy disk
        (200 << 20, 10 << 30, True, True),  # the disk is full (filled by something else)
        (100 << 20, 150 << 20, False, True),  # more than half of what is left
        (70 << 20, 150 << 20, False, False),
        (100 << 20, None, False, True),  # free space unknown: give it back
    ],
)
def test_the_write_ahead_log_is_given_back_when_it_crowds_the_disk(
    wal: int, free: int | None, full: bool, crowds: bool
) -> None:
    assert wal_crowds(wal, free, full) is crowds


def test_the_guard_keeps_the_free_space_it_read(tmp_path: Path) -> None:
    free = [10 << 20]
    guard = DiskGuard(tmp_path, 64 << 20, CollectorRegistry(), free_bytes=lambda _: free[0])
    assert guard.free is None
    guard.check()
    assert guard.free == 10 << 20


def test_a_spare_is_set_aside_only_with_room_to_spare_and_given_up_on_demand(
    tmp_path: Path,
) -> None:
    free = [(64 << 20) + (512 << 10)]  # the reserve and less than the smallest spare
    guard = DiskGuard(tmp_path, 64 << 20, CollectorRegistry(), free_bytes=lambda _: free[0])
    guard.check()
    assert not (tmp_path / SPARE_FILE).exists()
    assert guard.release_spare() == 0
    free[0] = 1 << 30
    guard.check()
    assert (tmp_path / SPARE_FILE).stat().st_size == SPARE_FLOOR
    assert guard.release_spare() == SPARE_FLOOR
    assert not (tmp_path / SPARE_FILE).exists()


def test_the_spare_grows_with_the_write_ahead_log_up_to_its_cap_and_never_shrinks(
    tmp_path: Path,
) -> None:
    free = [1 << 30]
    guard = DiskGuard(tmp_path, 64 << 20, CollectorRegistry(), free_bytes=lambda _: free[0])
    spare = tmp_path / SPARE_FILE
    guard.check(wal=3 << 20)  # room to copy it back, and for it to double
    assert spare.stat().st_size == 8 << 20
    guard.check(wal=100 << 20)
    assert spare.stat().st_size == SPARE_BYTES
    guard.check(wal=0)  # the WAL was truncated: what was set aside stays
    assert spare.stat().st_size == SPARE_BYTES
    guard.release_spare()
    free[0] = (64 << 20) + (4 << 20)  # room for 4 MiB besides the reserve, not 16
    guard.check(wal=100 << 20)
    assert not spare.exists()
    guard.check(wal=1 << 20)
    assert spare.stat().st_size == 2 << 20


def test_spare_for_is_twice_the_wal_in_powers_of_two_within_floor_and_cap() -> None:
    assert spare_for(0) == SPARE_FLOOR
    assert spare_for(SPARE_FLOOR // 2) == SPARE_FLOOR
    assert spare_for(SPARE_FLOOR // 2 + 1) == 2 * SPARE_FLOOR
    assert spare_for(3 << 20) == 8 << 20
    assert spare_for(1 << 30) == SPARE_BYTES
    assert spare_for(3 << 20, cap=4 << 20) == 4 << 20
    assert spare_for(3 << 20, cap=0) == 0
