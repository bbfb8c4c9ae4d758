"""The check a node makes of its own store before it serves (`Node.start`).

A store that started from every block is re-verified from genesis
(`verify_ledger`); one loaded from a snapshot holds headers only below the
snapshot, so what the snapshot loaded is checked instead (`check_loaded`).
Either failure quarantines the node: its API answers 503 with the reason
returned here until an operator repairs the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sharechain.ledger.verify import verify_ledger
from sharechain.storage.snapshot import SnapshotRefusedError, check_loaded

if TYPE_CHECKING:
    from sharechain.node.service import Node

__all__ = ["store_problem"]


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
