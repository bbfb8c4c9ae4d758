"""`sharechain node repair`: move a quarantined ledger aside so the node re-syncs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from sharechain.storage.datadir import DataDir

__all__ = ["repair_store"]


def repair_store(data_dir: Path, *, now: Callable[[], float] = time.time) -> Path | None:
    """Move a node's ledger aside so its next start re-syncs from the peers.

    Returns where the old database went (None if there was none). Nothing is
    deleted: the tampered copy stays for the investigation.
    """
    dd = DataDir.open(data_dir)
    db = dd.db_path
    if not db.exists():
        return None
    target = db.with_name(f"{db.name}.quarantined-{int(now())}")
    db.rename(target)
    for suffix in ("-wal", "-shm"):
        side = db.with_name(db.name + suffix)
        if side.exists():
            side.rename(target.with_name(target.name + suffix))
    return target
