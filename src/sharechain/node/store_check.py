"""The check a node makes of its own store before it serves (`Node.start`).

A store that started from every block is re-verified from genesis
(`verify_ledger`); one loaded from a snapshot holds headers only below the
snapshot, so what the snapshot loaded is checked instead (`check_loaded`).
Either failure quarantines the node: its API answers 503 with the reason
returned here until an operator repairs the store.

A store SQLite finds damaged while the node runs (a disk failing, another
program writing the file) quarantines it the same way, the first time one of
its loops meets the damage (`damaged_store`): before, every loop failed and
started again every few seconds for ever, and the API answered 500s. The
reason names what the files looked like then (sizes, first bytes, which of
the process's descriptors held them), so the damage can be investigated.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from sharechain.ledger.store import is_damage
from sharechain.ledger.verify import verify_ledger
from sharechain.storage.snapshot import SnapshotRefusedError, check_loaded

if TYPE_CHECKING:
    from sharechain.node.service import Node

__all__ = ["damaged_store", "store_files", "store_problem"]


def store_problem(node: Node) -> str | None:
    """Why `node`'s store must not serve (None: it checked, or checking is off)."""
    if not node.config.verify_on_start:
        return None
    repair = f"sharechain node repair --data-dir {node.config.data_dir}"
    if node.snapshot_base is not None:
        try:
            check_loaded(node.store, node.snapshot_base)
        except SnapshotRefusedError as exc:
            return (
                f"the block store (started from a snapshot at height {node.snapshot_base}) "
                f"failed its check: {exc}. Run `{repair}` and start again from a snapshot "
                "or from genesis"
            )
        return None
    report = verify_ledger(node.store, node.registry, genesis_hash=node.datadir.genesis_hash)
    if report.ok:
        return None
    return (
        f"the block store failed verification at height {report.bad_height}: "
        f"{report.reason}. This node refuses to serve until it is repaired: stop it, "
        f"run `{repair}` and start it again to re-sync from its peers"
    )


def damaged_store(node: Node, exc: BaseException) -> str | None:
    """Why `node` must stop serving if `exc`, raised by one of its loops, is SQLite
    finding its store damaged (None if it is anything else)."""
    if not is_damage(exc):
        return None
    repair = f"sharechain node repair --data-dir {node.config.data_dir}"
    return (
        f"the ledger database became unreadable while the node ran ({exc}; "
        f"{store_files(node.datadir.db_path)}). This node refuses to serve until it is "
        f"repaired: stop it, keep a copy of those files for the investigation, run "
        f"`{repair}` and start it again to re-sync from its peers"
    )


def store_files(db: Path) -> str:
    """What the database `db` and its `-wal` and `-shm` files look like now: size,
    inode and first bytes of each, and which of this process's descriptors hold them.

    Only for a store already found damaged: closing a descriptor of the file drops
    every POSIX lock this process holds on it (SQLite's locks included), which
    matters to another process using the file, and the node writes no more to it."""
    parts = []
    inodes: dict[tuple[int, int], str] = {}
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{db}{suffix}")
        try:
            st = path.stat()
            with path.open("rb") as f:
                head = f.read(16)
        except OSError as exc:
            parts.append(f"{path.name}: {exc.strerror or exc}")
            continue
        inodes[(st.st_dev, st.st_ino)] = path.name
        parts.append(f"{path.name}: {st.st_size} bytes, inode {st.st_ino}, starts {head.hex()}")
    held: dict[str, list[str]] = {}
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        fds = []
    for fd in fds:
        try:
            st = os.stat(f"/proc/self/fd/{fd}")
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        name = inodes.get((st.st_dev, st.st_ino))
        if name is not None:
            held.setdefault(name, []).append(fd)
        elif target.startswith(str(db)):
            held.setdefault(f"{Path(target).name} (another inode)", []).append(fd)
    if fds:
        parts.append(
            "descriptors: "
            + (", ".join(f"{n} {sorted(map(int, f))}" for n, f in sorted(held.items())) or "none")
        )
    return "; ".join(parts)
