"""A node's own snapshots: one every `snapshot_blocks` blocks, vouched for with its key.

When block `h` (a multiple of `snapshot_blocks`, data directory setting,
default `DEFAULT_EVERY`; 0 turns snapshots off) is durable, the node opens a
read transaction on its store while it still holds the commit lock, so the
transaction sees exactly height `h`; a thread then writes the snapshot from
it (`sharechain.storage.snapshot`) while blocks go on committing, and signs
a voucher for it. The newest `KEEP` snapshots are kept under
`<data dir>/snapshots/`, each beside its voucher. A snapshot that cannot be
written (a full disk) is logged and skipped; the node goes on.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from sharechain.crypto.signing import SigningKey
from sharechain.errors import EncodingError, SharechainError
from sharechain.storage.snapshot import SnapshotInfo, read_manifest, write_snapshot
from sharechain.storage.snapshot_evidence import Voucher, sign_voucher

__all__ = ["DEFAULT_EVERY", "KEEP", "SnapshotMaker"]

log = logging.getLogger("sharechain.node")

DEFAULT_EVERY = 10_000
"""Blocks between snapshots when the data directory's settings do not say."""
KEEP = 2
"""Snapshots kept on disk (the newest)."""


class SnapshotMaker:
    """Makes, keeps and lists a node's snapshots. `committed` is called under the commit lock."""

    def __init__(
        self,
        db_path: Path,
        directory: Path,
        org: str,
        key: Callable[[], SigningKey],
        genesis_hash: bytes,
        every: int,
    ) -> None:
        self.db_path = db_path
        self.directory = directory
        self.org = org
        self.key = key
        self.genesis_hash = genesis_hash
        self.every = max(0, every)
        self.error: str | None = None
        """Why the last snapshot failed (None when it did not)."""
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def due(self, height: int) -> bool:
        return self.every > 0 and height > 0 and height % self.every == 0

    def committed(self, height: int) -> None:
        """Block `height` is durable and the store's head: snapshot it if it is due."""
        if not self.due(height):
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                log.warning(
                    "snapshot at %d skipped: the previous one is still being written", height
                )
                return
            db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
            db.execute("BEGIN")
            row = db.execute("SELECT MAX(height) FROM blocks").fetchone()
            if row[0] != height:  # committed in a group past it: nothing sees height h alone
                db.execute("ROLLBACK")
                db.close()
                return
            self._thread = threading.Thread(
                target=self._write, args=(db, height), name=f"{self.org}-snapshot", daemon=True
            )
            self._thread.start()

    def _write(self, db: sqlite3.Connection, height: int) -> None:
        out = self.directory / f"{height:012d}.snap"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            info = write_snapshot(db, out, self.genesis_hash)
            voucher = sign_voucher(self.org, self.key(), info)
            tmp = out.with_suffix(".voucher.part")
            tmp.write_text(json.dumps(voucher.to_json()))
            tmp.replace(out.with_suffix(".voucher"))
            self.error = None
            self._prune()
            log.info("snapshot at height %d written (%s)", height, out)
        except (OSError, sqlite3.Error, SharechainError) as exc:
            self.error = f"the snapshot at height {height} could not be written: {exc}"
            log.error("ALERT %s", self.error)
            for leftover in self.directory.glob(f"{height:012d}.*"):
                leftover.unlink(missing_ok=True)
        finally:
            db.execute("ROLLBACK")
            db.close()

    def _prune(self) -> None:
        snaps = sorted(self.directory.glob("*.snap"))
        for old in snaps[:-KEEP]:
            old.unlink(missing_ok=True)
            old.with_suffix(".voucher").unlink(missing_ok=True)

    def held(self) -> list[tuple[SnapshotInfo, Voucher, Path]]:
        """The snapshots on disk with their vouchers, newest first."""
        out = []
        for path in sorted(self.directory.glob("*.snap"), reverse=True):
            try:
                info = read_manifest(path)
                voucher = Voucher.from_json(
                    json.loads(path.with_suffix(".voucher").read_text("utf-8"))
                )
            except (OSError, ValueError, EncodingError, SharechainError):
                continue  # being written, or half-deleted
            out.append((info, voucher, path))
        return out

    def close(self, timeout: float = 30.0) -> None:
        """Wait for a snapshot being written (the node is stopping)."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
