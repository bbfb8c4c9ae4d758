"""A node's loops when something fails under them: a damaged store, a bug.

A node whose ledger database is damaged while it runs quarantines itself, saying how.

Another program writes over the file (or the disk fails): SQLite then finds
"file is not a database" at the node's next read. The node used to fail and
restart its loops every few seconds for ever, answering 500s; now the first
loop that meets the damage quarantines it (`node.store_check.damaged_store`):
the API answers 503 with the reason, which names the files as they were then
(sizes, first bytes, the descriptors holding them) and the repair.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import httpx
import pytest
from node_helpers import Consortium, run_node, shutdown
from test_replication import _records, wait_until

from sharechain.errors import SharechainError
from sharechain.node.upkeep import Upkeep

JUNK = b"not a database!!"


def test_a_database_written_over_while_the_node_runs_quarantines_it(tmp_path: Path) -> None:
    consortium = Consortium.make(tmp_path)
    running = run_node(consortium, "hospital-a")
    try:
        with running.client() as client:
            assert {r.code for r in client.submit(_records(consortium, "hospital-a", 3))} == {
                "valid"
            }
        db = running.node.datadir.db_path
        # Another program writes to the database (so every connection of the node reads
        # the file again: its cache is stale), then writes junk over its header.
        with sqlite3.connect(db, isolation_level=None) as other:
            other.execute("INSERT OR REPLACE INTO meta VALUES ('elsewhere', x'00')")
            other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        other.close()
        with db.open("r+b") as f:
            f.write(JUNK)
        # The batch fails with the store: what matters is what follows.
        with running.client() as client, contextlib.suppress(SharechainError):
            client.submit(_records(consortium, "hospital-a", 2, tag=9), timeout=10)
        wait_until(lambda: running.node.problem is not None, timeout=20)
        problem = running.node.problem or ""
        assert "became unreadable while the node ran" in problem
        assert "not a database" in problem
        assert f"starts {JUNK.hex()}" in problem  # the file as it was found
        assert "descriptors: ledger.db [" in problem
        assert f"sharechain node repair --data-dir {running.node.config.data_dir}" in problem
        assert running.node.halted is not None
        with httpx.Client() as http:
            ready = http.get(f"{running.url}/v1/health/ready")
            status = http.get(f"{running.url}/v1/status")
        assert ready.status_code == 503 and "became unreadable" in ready.text
        assert status.status_code == 503 and "quarantined" in status.text
    finally:
        shutdown(running)


def test_the_data_plane_upkeep_fails_once_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure outside one block's handling (here a bug, raised once) used to end the
    upkeep's thread for the life of the node: no blob was fetched and no purge shredded
    until a restart. The loop is started again instead, reconciling first."""
    failed: list[int] = []
    real = Upkeep._look_at

    def once(self: Upkeep, height: int) -> None:
        if not failed:
            failed.append(height)
            raise RuntimeError("a bug in the upkeep")
        real(self, height)

    monkeypatch.setattr(Upkeep, "_look_at", once)
    consortium = Consortium.make(tmp_path)
    running = run_node(consortium, "hospital-a")
    try:
        upkeep: Upkeep = running.server.app.state.upkeep
        for tag in (1, 2, 3):
            with running.client() as client:
                assert {
                    r.code for r in client.submit(_records(consortium, "hospital-a", 2, tag=tag))
                } == {"valid"}
        wait_until(lambda: bool(failed) and upkeep.followed == running.node.ledger.height)
        assert any("the upkeep loop failed; starting it again" in m for m in caplog.messages)
        assert running.node.problem is None  # a bug is not a damaged store
    finally:
        shutdown(running)
