"""A leader key held with an etcd lease: which node builds blocks in `etcd` mode.

When every node builds blocks and races for the next height, the losers'
execution is wasted (about half of it with four nodes). So the nodes elect
one *block builder*: the node whose key `<prefix>leader` is attached to a
live etcd lease. It renews the lease (`keep_alive`) a few times per TTL;
if it dies or is cut off from the quorum, etcd deletes the key when the
lease runs out and another node takes it (`campaign`). The others forward
their submissions to the leader.

Leadership is an optimisation, not a safety property: blocks are still
appended with the compare-and-set of `EtcdLog.append`, so even two nodes
that both believe they lead (one paused past its lease) can never fork the
chain; one of them simply loses the race.

Keys and values: `<prefix>leader` holds the organisation id in UTF-8 and is
attached to the holder's lease; the lease id tells two terms of the same
organisation apart (a node restarted within the TTL takes its own key over
with a fresh lease, and the followers see the change).
"""

from __future__ import annotations

import base64
from collections.abc import Collection
from dataclasses import dataclass

from sharechain.ordering.etcd_log import EtcdLog

__all__ = ["DEFAULT_LEASE_TTL", "Election", "Leader"]

DEFAULT_LEASE_TTL = 2
"""Seconds a silent leader keeps the key: the longest failover takes about this long."""


@dataclass(frozen=True, slots=True)
class Leader:
    """Who holds the leader key."""

    org: str
    """The leading node's organisation."""
    lease: int
    """The etcd lease the key is attached to (one per leadership term)."""


class Election:
    """The leader key of one log prefix. Thread-safe (it only issues requests)."""

    def __init__(self, log: EtcdLog, *, ttl: int = DEFAULT_LEASE_TTL, name: str = "leader") -> None:
        self.log = log
        self.ttl = ttl
        self._key = _b64(log.prefix + name.encode())

    def grant(self) -> int:
        """A new lease of `ttl` seconds; its id."""
        reply = self.log.call("/v3/lease/grant", {"TTL": str(self.ttl)})
        return int(reply["ID"])

    def keep_alive(self, lease: int) -> int:
        """Renew `lease`; the seconds it now has left, 0 if it already expired."""
        reply = self.log.call("/v3/lease/keepalive", {"ID": str(lease)})
        return int(reply.get("result", {}).get("TTL", 0))

    def revoke(self, lease: int) -> None:
        """End `lease` now; etcd deletes the leader key if it was attached to it."""
        self.log.call("/v3/lease/revoke", {"ID": str(lease)})

    def current(self) -> Leader | None:
        """The holder of the leader key, None if nobody holds it."""
        reply = self.log.call("/v3/kv/range", {"key": self._key})
        return _holder(reply.get("kvs", []))

    def campaign(self, org: str, lease: int) -> Leader | None:
        """Take the leader key for `org` with `lease` unless another holds it; the holder after.

        An entry of `org` itself with another lease (this node before a
        restart) is taken over at once rather than waited out.
        """
        put = {"request_put": {"key": self._key, "value": _b64(org.encode()), "lease": str(lease)}}
        absent = {"key": self._key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
        reply = self.log.call(
            "/v3/kv/txn",
            {
                "compare": [absent],
                "success": [put],
                "failure": [{"request_range": {"key": self._key}}],
            },
        )
        if reply.get("succeeded"):
            return Leader(org, lease)
        responses = reply.get("responses") or [{}]
        kvs = responses[0].get("response_range", {}).get("kvs", [])
        holder = _holder(kvs)
        if holder is None or holder.org != org or holder.lease == lease:
            return holder
        # Our own key from a previous run: replace it if nobody changed it meanwhile.
        taken = self.log.call(
            "/v3/kv/txn",
            {
                "compare": [
                    {
                        "key": self._key,
                        "target": "MOD",
                        "result": "EQUAL",
                        "mod_revision": str(kvs[0].get("mod_revision", "0")),
                    }
                ],
                "success": [put],
            },
        )
        return Leader(org, lease) if taken.get("succeeded") else self.current()

    def clear_foreign(self, members: Collection[str] | None) -> str | None:
        """Delete the leader key if no node wrote it: held by no lease, not UTF-8, or
        naming no organisation of `members` (None: names are not judged, as by a node
        behind the chain, which may not know a newly admitted member yet). What was
        removed, described; None if nothing.

        Nodes always campaign with a lease, so such a key was put by hand by an
        etcd client. It would never expire: nobody could campaign again once
        its holder stopped, and pruning, which only the holder does, would
        stop for good. The delete compares on the key's revision, so a key
        taken meanwhile is never touched.
        """
        kvs = self.log.call("/v3/kv/range", {"key": self._key}).get("kvs", [])
        if not kvs:
            return None
        kv = kvs[0]
        raw, lease = base64.b64decode(kv.get("value", "")), int(kv.get("lease", 0))
        org = raw.decode("utf-8", "replace")
        named = org.encode() == raw and (members is None or org in members)
        if lease != 0 and named:
            return None
        unchanged = {
            "key": self._key,
            "target": "MOD",
            "result": "EQUAL",
            "mod_revision": str(kv.get("mod_revision", "0")),
        }
        reply = self.log.call(
            "/v3/kv/txn",
            {"compare": [unchanged], "success": [{"request_delete_range": {"key": self._key}}]},
        )
        if not reply.get("succeeded"):
            return None
        what = f"naming {raw[:40]!r}" + ("" if named else ", no member of the chain")
        return f"{what}, {'held by no lease' if lease == 0 else f'lease {lease:x}'}"


def _holder(kvs: list[dict[str, str]]) -> Leader | None:
    if not kvs:
        return None
    kv = kvs[0]
    # Not UTF-8: written by hand (`clear_foreign` removes it); never a node's name.
    org = base64.b64decode(kv.get("value", "")).decode("utf-8", "replace")
    return Leader(org, int(kv.get("lease", 0)))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
