"""Readers never wait for a committing writer; WAL checkpoints run off the commit path."""

from __future__ import annotations

import itertools
import os
import sqlite3
import threading
import time

from ledger_kit import Kit


def test_a_read_does_not_wait_for_a_commit_in_progress(kit: Kit) -> None:
    seen: list[object] = []

    def during_commit() -> None:
        # The committing thread holds the write connection, just before its COMMIT.
        reader = threading.Thread(target=lambda: seen.append(kit.store.head().height))  # type: ignore[union-attr]
        reader.start()
        reader.join(5)
        seen.append(reader.is_alive())

    kit.store.on_commit = during_commit
    kit.add([kit.record("hospital-a", b"one").raw])
    kit.store.on_commit = None
    # The reader saw the store as last committed (genesis), and did not wait.
    assert seen == [0, False]
    assert kit.store.head().height == 1  # type: ignore[union-attr]


def test_reads_of_several_statements_see_one_committed_state(kit: Kit) -> None:
    records = [kit.record("hospital-a", f"r{i}".encode()) for i in range(600)]
    kit.add([r.raw for r in records])
    ids = [r.id for r in records]
    assert kit.store.known_txs(ids) == set(ids)  # two statements of 500 and 100 ids


def test_checkpoints_run_on_their_own_thread(kit: Kit) -> None:
    for i in range(5):
        kit.add([kit.record("hospital-a", f"c{i}".encode()).raw])
    checkpoints = kit.store._checkpoints
    assert checkpoints is not None
    deadline = time.monotonic() + 10
    while checkpoints.runs == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert checkpoints.runs > 0
    # Another connection finds every committed frame copied back already, once the
    # thread's last run is done.
    deadline = time.monotonic() + 10
    db = sqlite3.connect(kit.path, isolation_level=None)
    while time.monotonic() < deadline:
        busy, log, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if busy == 0 and log == done:
            break
        time.sleep(0.01)
    assert busy == 0 and log == done
    db.close()


def test_the_wal_stays_bounded_when_the_thread_does_not_keep_up(kit: Kit) -> None:
    checkpoints = kit.store._checkpoints
    assert checkpoints is not None
    kit.add([kit.record("hospital-a", b"start").raw])
    checkpoints.close()  # the thread is gone: only the writer's own checkpoints are left
    runs, checkpoints.limit = checkpoints.runs, 256 << 10
    kit.store._db.execute(f"PRAGMA journal_size_limit={checkpoints.limit}")  # as the store sets it
    sizes, restarts = [], []
    for i in range(12):
        kit.add([kit.record("hospital-b", f"w{i}-{j}".encode()).raw for j in range(200)])
        sizes.append(os.stat(f"{kit.path}-wal").st_size)
        with open(f"{kit.path}-wal", "rb") as wal:  # the header's checkpoint sequence number,
            restarts.append(int.from_bytes(wal.read(16)[12:16], "big"))  # one more per restart
    # Past the limit the writer checkpointed, and the WAL started over: it never
    # grew by more than a block past the limit, and it did start over again.
    assert max(sizes) <= checkpoints.limit + (2 << 20)
    assert any(b > a for a, b in itertools.pairwise(restarts))
    assert checkpoints.runs == runs
    assert kit.store.tx_count() == 2 + 12 * 200
