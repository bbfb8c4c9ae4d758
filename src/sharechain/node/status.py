"""What a node reports about itself: status, attestations, one transaction.

The API serves these (`GET /v1/status`, `/v1/attestations/status`,
`/v1/txs/{id}`); `Node` keeps thin methods for them.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

from sharechain.ledger.blocks import decode_block

if TYPE_CHECKING:  # the node imports this module
    from sharechain.node.service import Node

__all__ = ["attestation_status", "disk_alarm", "node_status", "tx_info"]


def node_status(node: Node) -> dict[str, Any]:
    head = node.store.head()
    return {
        "org": node.org,
        "ordering": node.config.ordering,
        "role": "orderer" if node.is_orderer else "peer",
        "leader": None if node.leader is None else node.leader.org,
        "height": -1 if head is None else head.height,
        "head_hash": "" if head is None else head.hash.hex(),
        "state_root": "" if head is None else head.state_root.hex(),
        "ready": node.ready,
        "caught_up": node.caught_up,
        "catch_up": None if (progress := node.catching_up) is None else progress.figures(),
        "problem": node.problem,
        "halted": node.halted,
        "alarms": list(node.etcd_alarms),
        "disk": disk_alarm(node),
        "etcd": None
        if node.config.ordering != "etcd"
        else {
            "nospace": any("NOSPACE" in alarm for alarm in node.etcd_alarms),
            "alarms": list(node.etcd_alarms),
        },
        "queued": len(node.queue),
        "peers": {
            org: {"height": node.peer_heights.get(org), "error": node.peer_errors.get(org)}
            for org, _ in node.config.peers
        },
        "attestations": [a.to_json() for a in node.book.own()[-16:]],
        "refusals": [r.to_json() for r in node.refusals.own()],
        "commits": [[h, round(t, 4)] for h, t in list(node.commit_times)],
    }


def disk_alarm(node: Node) -> dict[str, Any]:
    """The full-disk guard's state, the free bytes now and its threshold."""
    guard = node.disk
    try:
        free: int | None = shutil.disk_usage(guard.path).free
    except OSError:
        free = None
    return {
        "full": guard.full is not None,
        "reason": guard.full,
        "free_bytes": free,
        "reserve_bytes": guard.reserve,
        "path": str(guard.path),
    }


def attestation_status(node: Node) -> dict[str, Any]:
    return {
        "org": node.org,
        "height": node.ledger.height,
        "ok": not node.book.conflicts,
        "halted": node.halted,
        "quarantined": node.judge.verdict.against_us is not None,
        "suspects": list(node.judge.verdict.suspects),
        "peers": [
            {"org": p.org, "height": p.height, "checked": p.checked, "agrees": p.agrees}
            for p in node.book.peers()
        ],
        "conflicts": [
            {"peer": c.peer, "height": c.height, "detail": c.describe()}
            for c in node.book.conflicts
        ],
    }


def tx_info(node: Node, tx_id: bytes) -> dict[str, Any] | None:
    loc = node.store.tx_location(tx_id)
    if loc is None:
        return None
    data = node.store.block_bytes(loc.height)
    reason = ""
    if data is not None and loc.code != "valid":
        reason = decode_block(data, check_canonical=False).results[loc.index].reason
    return {
        "tx_id": tx_id.hex(),
        "height": loc.height,
        "index": loc.index,
        "code": loc.code,
        "reason": reason,
        "type": loc.type,
        "sender": loc.sender,
    }
