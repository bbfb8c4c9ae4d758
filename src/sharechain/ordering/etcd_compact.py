"""Compacting the etcd block log: pruning blocks every member has attested.

etcd keeps its whole database under a space quota (`--quota-backend-bytes`,
2 GiB by default); past it, it raises a NOSPACE alarm and refuses every write,
which stops the consortium. Blocks need not stay in etcd forever: once every
member node has attested (signed that it committed) a height, no node needs
etcd for the blocks at or below it, and any node that does (one restored from
an old backup, a new one) fetches them from its peers, which keep every block
in their own stores and whose blocks it verifies as it would etcd's.

Three steps, each safe to repeat:

1. **Prune**: delete `blocks/1` .. `blocks/H` for the all-attested height `H`
   (`prunable_height`), in one etcd transaction guarded by a compare on the
   `leader` key: only the node holding the leader lease deletes, so two nodes
   never prune with different views. Genesis (`blocks/0`) and the tip (the
   block `head` names) are never deleted; `EtcdLog.append` compares on `head`,
   so a deleted key never lets a second block in at its height.
2. **Compact**: `/v3/kv/compaction` at the revision of the delete, so etcd
   drops the old versions of the deleted keys (and of `head`, `leader`).
3. **Defragment**: `/v3/maintenance/defragment` on every member, which gives
   the freed pages back to the file system; the quota counts the file size.

`alarms` reads `/v3/maintenance/alarm`, so a node reports a NOSPACE alarm in
its health instead of failing its appends silently.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import httpx

from sharechain.errors import OrderingError
from sharechain.ordering.etcd_log import EtcdLog

__all__ = [
    "DEFAULT_DEFRAG_INTERVAL",
    "DEFAULT_INTERVAL",
    "DEFAULT_KEEP_BLOCKS",
    "Alarm",
    "Pruned",
    "alarms",
    "compact",
    "defragment",
    "oldest_height",
    "prunable_height",
    "prune",
]

DEFAULT_INTERVAL = 30.0
"""Seconds between two pruning (and compaction) rounds of the leader."""
DEFAULT_DEFRAG_INTERVAL = 600.0
"""Seconds between two defragmentations (each blocks a member's writes briefly)."""
DEFAULT_KEEP_BLOCKS = 16
"""Blocks kept in etcd below the all-attested height, so a node a little behind reads etcd."""

_BLOCK_DIGITS = 20  # as in etcd_log: zero-padded heights sort in height order


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one pruning round did."""

    upto: int
    """Blocks 1..upto are gone from etcd (-1: nothing was deleted)."""
    deleted: int
    """How many block keys this round deleted."""
    revision: int
    """etcd's revision after the delete, the one to compact to (0: nothing deleted)."""


@dataclass(frozen=True, slots=True)
class Alarm:
    """An alarm an etcd member raised."""

    member_id: int
    """etcd's id of the member."""
    kind: str
    """`NOSPACE` (quota reached: writes refused) or `CORRUPT`."""

    def describe(self) -> str:
        if self.kind == "NOSPACE":
            return (
                f"etcd member {self.member_id:x} reached its space quota (NOSPACE): writes are "
                "refused; compact and defragment, raise --quota-backend-bytes, then disarm "
                "the alarm (etcdctl alarm disarm)"
            )
        return f"etcd member {self.member_id:x} raised alarm {self.kind}"


def prunable_height(
    own_height: int,
    attested: Mapping[str, int],
    members: Iterable[str],
    head: int,
    keep: int = DEFAULT_KEEP_BLOCKS,
) -> int:
    """The highest height whose block may leave etcd, or 0 (nothing may).

    `attested` maps each peer to the highest height of its attestations this
    node has checked against its own chain and found in agreement; `members`
    are every peer node of the consortium. A member missing from `attested`
    (never heard from, or disagreeing) blocks pruning entirely. The result
    keeps `keep` blocks below the lowest attestation, never the tip (`head`)
    and never genesis (height 0).
    """
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    lowest = own_height
    for org in members:
        if org not in attested:
            return 0
        lowest = min(lowest, attested[org])
    return max(0, min(lowest - keep, head - 1))


def oldest_height(log: EtcdLog) -> int:
    """The lowest height above genesis still in etcd (head + 1 if none, 1 if nothing pruned).

    A node whose next height is below it must fetch the blocks from its peers.
    """
    blocks = log.prefix + b"blocks/"
    reply = log.call(
        "/v3/kv/range",
        {
            "key": _b64(_block_key(blocks, 1)),
            "range_end": _b64(_block_key(blocks, 10**_BLOCK_DIGITS - 1)),
            "limit": "1",
            "keys_only": True,
        },
    )
    kvs = reply.get("kvs") or []
    if not kvs:
        return log.head() + 1
    return int(_unb64(kvs[0]["key"])[len(blocks) :])


def prune(log: EtcdLog, upto: int, leader: str) -> Pruned:
    """Delete blocks 1..`upto` from etcd, if `leader` holds the leader key and the tip stays.

    One transaction that deletes only if the leader key names `leader` (only
    the leader prunes, so two nodes never prune with different views) and
    `blocks/upto+1` exists (so the tip, which appends compare on, stays).
    Raises OrderingError when either guard fails. Deleting keys already gone
    is harmless, so an interrupted round is simply repeated.
    """
    if upto < 1:
        return Pruned(-1, 0, 0)
    blocks = log.prefix + b"blocks/"
    above = _b64(_block_key(blocks, upto + 1))
    holder = _b64(leader.encode())
    reply = log.call(
        "/v3/kv/txn",
        {
            "compare": [
                {
                    "key": _b64(log.prefix + b"leader"),
                    "target": "VALUE",
                    "result": "EQUAL",
                    "value": holder,
                },
                {"key": above, "target": "CREATE", "result": "GREATER", "create_revision": "0"},
            ],
            "success": [
                {
                    "request_delete_range": {
                        "key": _b64(_block_key(blocks, 1)),
                        "range_end": above,
                    }
                }
            ],
        },
    )
    if not reply.get("succeeded"):
        raise OrderingError(
            f"not pruning up to height {upto}: {leader} does not hold the leader key, or "
            f"block {upto + 1} is not in etcd (the tip must stay); only the leader prunes, "
            "below the head"
        )
    responses = reply.get("responses") or [{}]
    deleted = int(responses[0].get("response_delete_range", {}).get("deleted", 0))
    revision = int(reply.get("header", {}).get("revision", 0))
    return Pruned(upto, deleted, revision)


def compact(log: EtcdLog, revision: int) -> None:
    """Drop etcd's history before `revision` (physically, before answering)."""
    if revision < 1:
        return
    try:
        log.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})
    except OrderingError as exc:
        if "required revision has been compacted" not in str(exc):
            raise  # compacted already at or past it: nothing to do


def defragment(
    endpoints: Iterable[str], client: httpx.Client, timeout: float = 30.0
) -> tuple[str, ...]:
    """Defragment every member in turn; the endpoints that failed, each with why.

    One member at a time: a defragmenting member blocks its reads and writes
    for a moment, and the others keep the quorum meanwhile.
    """
    failed: list[str] = []
    for url in endpoints:
        try:
            reply = client.post(
                f"{url.rstrip('/')}/v3/maintenance/defragment", json={}, timeout=timeout
            )
        except httpx.HTTPError as exc:
            failed.append(f"{url}: {type(exc).__name__}: {exc}")
            continue
        if reply.status_code != 200:
            failed.append(f"{url}: HTTP {reply.status_code}: {reply.text[:200]}")
    return tuple(failed)


def alarms(log: EtcdLog) -> tuple[Alarm, ...]:
    """The alarms raised in the cluster (empty when all is well)."""
    reply = log.call("/v3/maintenance/alarm", {"action": "GET"})
    found = []
    for entry in reply.get("alarms") or []:
        kind = str(entry.get("alarm", "NONE"))
        if kind != "NONE":
            found.append(Alarm(int(entry.get("memberID", 0)), kind))
    return tuple(found)


def _block_key(blocks: bytes, height: int) -> bytes:
    return blocks + str(height).zfill(_BLOCK_DIGITS).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)
