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

etcd 3.4 lets any authenticated user raise an alarm, naming any member id
(real or not), and one NOSPACE alarm stops every write in the cluster. So a
NOSPACE alarm is judged against the members' databases: `spaces` reads each
member's database size (`/v3/maintenance/status`) and space quota (its
`/metrics` gauge `etcd_server_quota_backend_bytes`), and `unfounded` says
whether every one of them is at least `HEADROOM` below its quota: then the
alarm is bogus, or stale after an operator's compaction and defragmentation,
and `disarm` may lift it. A NOSPACE that is real is never disarmed by this
rule, and if it were, etcd raises it again at the first write that does not
fit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import httpx

from sharechain.errors import OrderingError
from sharechain.ordering.etcd_log import EtcdLog
from sharechain.ordering.etcd_wire import _b64, _prefix_end, _unb64

__all__ = [
    "DEFAULT_DEFRAG_INTERVAL",
    "DEFAULT_INTERVAL",
    "DEFAULT_KEEP_BLOCKS",
    "HEADROOM",
    "Alarm",
    "Pruned",
    "Scrubbed",
    "Space",
    "alarms",
    "compact",
    "defragment",
    "disarm",
    "oldest_height",
    "prunable_height",
    "prune",
    "scrub",
    "spaces",
    "sweep",
    "unfounded",
]

DEFAULT_INTERVAL = 30.0
"""Seconds between two pruning (and compaction) rounds of the leader."""
DEFAULT_DEFRAG_INTERVAL = 600.0
"""Seconds between two defragmentations (each blocks a member's writes briefly)."""
DEFAULT_KEEP_BLOCKS = 16
"""Blocks kept in etcd below the all-attested height, so a node a little behind reads etcd."""

HEADROOM = 0.1
"""A NOSPACE alarm is unfounded while every member's database is this share below its quota."""

_QUOTA_METRIC = b"etcd_server_quota_backend_bytes "
_METRICS_LIMIT = 4 * 1024 * 1024
"""Bytes of a member's `/metrics` read at most (about 100 KiB in etcd 3.4)."""


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
                "refused; compact and defragment (as etcd's root) or raise "
                "--quota-backend-bytes: the nodes disarm the alarm once every member's "
                "database is 10% below its quota"
            )
        return f"etcd member {self.member_id:x} raised alarm {self.kind}"


@dataclass(frozen=True, slots=True)
class Space:
    """One member's database against its space quota."""

    endpoint: str
    db_size: int
    """Bytes of the member's database file (what etcd 3.4 holds against the quota)."""
    quota: int
    """The member's `--quota-backend-bytes`."""

    def describe(self) -> str:
        return f"{self.endpoint}: {self.db_size:,} of {self.quota:,} bytes"


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
    Keys under `blocks/` that are not block keys (an etcd client's) do not count.
    """
    lowest = log.lowest_height(1)
    return log.head() + 1 if lowest is None else lowest


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
    above = _b64(log.block_key(upto + 1))
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
                        "key": _b64(log.block_key(1)),
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


def sweep(log: EtcdLog, leader: str, head: int) -> Pruned:
    """Delete the keys under the log's prefix that no node writes; what went, and when.

    Nodes write `blocks/<20 digits>` up to the head, `head` and `leader`, so
    anything else under the prefix was put there by hand by an etcd client
    (a member's node holds client credentials): other names, block keys
    above the head, keys between genesis and block 1. Nodes pass over such
    keys (`EtcdLog` reads only block keys), but they would hold etcd's space
    until its quota stops every write. One transaction, only while `leader`
    holds the leader key and `head` still says `head` (so a block appended
    meanwhile is never touched); a key written between block keys below the
    head goes when pruning passes it. `Pruned.upto` is the head swept above.
    """
    if head < 0:
        return Pruned(-1, 0, 0)
    prefix = log.prefix
    head_key, leader_key = prefix + b"head", prefix + b"leader"
    genesis = log.block_key(0)
    spans = (
        (prefix, genesis),
        (genesis + b"\0", log.block_key(1)),
        (log.block_key(head + 1), head_key),
        (head_key + b"\0", leader_key),
        (leader_key + b"\0", _prefix_end(prefix)),
    )
    reply = log.call(
        "/v3/kv/txn",
        {
            "compare": [
                {
                    "key": _b64(leader_key),
                    "target": "VALUE",
                    "result": "EQUAL",
                    "value": _b64(leader.encode()),
                },
                {
                    "key": _b64(head_key),
                    "target": "VALUE",
                    "result": "EQUAL",
                    "value": _b64(str(head).encode()),
                },
            ],
            "success": [
                {"request_delete_range": {"key": _b64(start), "range_end": _b64(end)}}
                for start, end in spans
            ],
        },
    )
    if not reply.get("succeeded"):
        return Pruned(-1, 0, 0)  # the head moved, or the lease did: the next round
    deleted = sum(
        int(r.get("response_delete_range", {}).get("deleted", 0))
        for r in reply.get("responses") or []
    )
    return Pruned(head, deleted, int(reply.get("header", {}).get("revision", 0)))


SCRUB_PAGE = 1_000
"""Keys one `scrub` round reads (names only) between block keys."""
_TXN_OPS = 128
"""etcd's default `--max-txn-ops`: deletes sent in one transaction at most."""


@dataclass(frozen=True, slots=True)
class Scrubbed:
    """What one `scrub` round did."""

    deleted: int
    """Keys deleted: under `blocks/` below the head, but no block's."""
    cursor: bytes | None
    """Where the next round reads on (None: this pass reached the head)."""
    revision: int
    """etcd's revision after the last delete (0: nothing deleted)."""


def scrub(log: EtcdLog, head: int, cursor: bytes | None = None, page: int = SCRUB_PAGE) -> Scrubbed:
    """Delete keys between the block keys 1..`head` that name no block, a page at a time.

    `sweep` takes whole spans where no block key can be; a key written between
    two block keys (`blocks/<height>x`) needs the names read. One round reads
    `page` names from `cursor` (the start of `blocks/1` when None) and deletes
    the ones that are not block keys by their exact names: no node ever writes
    such a key, so no block is touched whatever happens meanwhile.
    """
    if head < 1:
        return Scrubbed(0, None, 0)
    start = cursor if cursor is not None else log.block_key(1)
    reply = log.call(
        "/v3/kv/range",
        {
            "key": _b64(start),
            "range_end": _b64(log.block_key(head + 1)),
            "limit": str(page),
            "keys_only": True,
        },
    )
    names = [_unb64(kv["key"]) for kv in reply.get("kvs") or []]
    junk = [k for k in names if log.height_of(k) is None]
    deleted, revision = 0, 0
    for first in range(0, len(junk), _TXN_OPS):
        done = log.call(
            "/v3/kv/txn",
            {
                "success": [
                    {"request_delete_range": {"key": _b64(k)}}
                    for k in junk[first : first + _TXN_OPS]
                ]
            },
        )
        deleted += sum(
            int(r.get("response_delete_range", {}).get("deleted", 0))
            for r in done.get("responses") or []
        )
        revision = int(done.get("header", {}).get("revision", 0))
    more = bool(reply.get("more")) and bool(names)
    return Scrubbed(deleted, names[-1] + b"\0" if more else None, revision)


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


def disarm(log: EtcdLog, alarm: Alarm) -> bool:
    """Lift one alarm; False if it was no longer raised."""
    reply = log.call(
        "/v3/maintenance/alarm",
        {"action": "DEACTIVATE", "memberID": str(alarm.member_id), "alarm": alarm.kind},
    )
    return bool(reply.get("alarms"))


def spaces(
    endpoints: Iterable[str], client: httpx.Client, timeout: float = 5.0
) -> tuple[tuple[Space, ...], tuple[str, ...]]:
    """Each member's database size and quota; and the members that could not say, with why."""
    found: list[Space] = []
    failed: list[str] = []
    for url in endpoints:
        base = url.rstrip("/")
        try:
            reply = client.post(f"{base}/v3/maintenance/status", json={}, timeout=timeout)
            reply.raise_for_status()
            db_size = int(reply.json()["dbSize"])
            quota = _quota(client, f"{base}/metrics", timeout)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            failed.append(f"{url}: {type(exc).__name__}: {exc}")
            continue
        found.append(Space(url, db_size, quota))
    return tuple(found), tuple(failed)


def unfounded(found: Iterable[Space], members: int) -> bool:
    """True if more than half the `members` answered and each is `HEADROOM` below its quota.

    A member that did not answer applies no writes meanwhile; if it is full
    when it returns, it raises the alarm again at the first write it applies.
    """
    found = tuple(found)
    answered = len(found) * 2 > members
    return answered and all(s.db_size <= s.quota * (1 - HEADROOM) for s in found)


def _quota(client: httpx.Client, url: str, timeout: float) -> int:
    """The member's `etcd_server_quota_backend_bytes`, read from a bounded `/metrics`."""
    text = bytearray()
    with client.stream("GET", url, timeout=timeout) as reply:
        reply.raise_for_status()
        for chunk in reply.iter_bytes():
            text += chunk
            if len(text) > _METRICS_LIMIT:
                break
    for line in bytes(text[:_METRICS_LIMIT]).splitlines():
        if line.startswith(_QUOTA_METRIC):
            return int(float(line[len(_QUOTA_METRIC) :]))
    raise ValueError("no etcd_server_quota_backend_bytes in its first 4 MiB of metrics")
