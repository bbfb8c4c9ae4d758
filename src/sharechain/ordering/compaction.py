"""The node's compaction loop: keeping the etcd log small, and its alarms visible.

In the `etcd` ordering mode every node runs this loop (`start`), over the
part of the node it needs (`CompactingNode`). Each node
reads etcd's alarms every few seconds, so a NOSPACE alarm (the space quota
reached, writes refused) shows in its `/v1/health`, `/v1/status` and
metrics instead of only as failed appends, and lifts a NOSPACE alarm that
no member's database supports (one any etcd user can raise by hand in etcd
3.4, or one left after the operator's defragmentation; `etcd_compact.unfounded`),
and deletes a leader key that no node wrote (held by no lease, or naming no
member: `Election.clear_foreign`). The node holding the leader lease
also, every `compaction_interval` seconds, deletes the other keys under the
prefix that no node writes (`etcd_compact.sweep`, `scrub`), removes from
etcd the blocks that every member node has attested (`etcd_compact.prunable_height`: the lowest
height that each active organisation of the chain and each peer attested
and that agrees with this node's chain, minus `compaction_keep` blocks),
compacts etcd's history to the delete's revision, and every
`defrag_interval` seconds defragments the members one by one.

Nothing here is needed for correctness: pruning only deletes what no node
needs from etcd any more, and a failed round is simply tried again later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge

from sharechain.contracts.queries import organisations
from sharechain.errors import OrderingError
from sharechain.ledger.attestations import AttestationBook
from sharechain.ledger.chain import Ledger
from sharechain.ledger.store import Store
from sharechain.ordering import etcd_compact
from sharechain.ordering.etcd_compact import Alarm
from sharechain.ordering.etcd_lease import Election, Leader
from sharechain.ordering.etcd_log import EtcdLog
from sharechain.ordering.etcd_tls import EtcdTLS, etcd_http_client

__all__ = ["CompactingNode", "Compactor", "start"]

log = logging.getLogger("sharechain.node")

_ALARM_POLL = 5.0
"""Seconds between two reads of etcd's alarms (at most; less if the interval is shorter)."""
_ALARM_POLL_RAISED = 1.0
"""Seconds between two reads while an alarm stands (a NOSPACE one stops every write)."""


class Settings(Protocol):
    """The node's configuration, as far as compaction reads it."""

    @property
    def ordering(self) -> str: ...
    @property
    def etcd_endpoints(self) -> tuple[str, ...]: ...
    @property
    def etcd_prefix(self) -> str: ...
    @property
    def etcd_tls(self) -> EtcdTLS | None: ...
    @property
    def peers(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def compaction_interval(self) -> float: ...
    @property
    def compaction_keep(self) -> int: ...
    @property
    def defrag_interval(self) -> float: ...


class Metrics(Protocol):
    @property
    def registry(self) -> CollectorRegistry: ...


class CompactingNode(Protocol):
    """The part of a running node (`sharechain.node.service.Node`) compaction uses."""

    etcd_alarms: tuple[str, ...]
    """Alarms etcd raised, described (written by `Compactor.check_alarms`)."""
    caught_up: bool
    """Whether the node has followed the ordering log to its head."""

    @property
    def org(self) -> str: ...
    @property
    def config(self) -> Settings: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def book(self) -> AttestationBook: ...
    @property
    def store(self) -> Store: ...
    @property
    def ledger(self) -> Ledger: ...
    @property
    def leader(self) -> Leader | None: ...
    @property
    def halted(self) -> str | None: ...
    @property
    def stop_event(self) -> threading.Event: ...
    def spawn(self, name: str, target: Callable[[], None]) -> None: ...
    def on_close(self, closer: Callable[[], None]) -> None: ...


class Compactor:
    """One node's compaction state and rounds. `run_round` is what the loop repeats."""

    def __init__(self, node: CompactingNode, etcd: EtcdLog, http: httpx.Client) -> None:
        self.node = node
        self.etcd = etcd
        self.http = http
        self.pruned_to = 0
        """Blocks 1..pruned_to are known gone from etcd (by this node's rounds)."""
        self.last_defrag = time.monotonic()
        self.defrag = True
        """False once etcd refused this node's defragmentation (not its root)."""
        self.last_prune = 0.0
        self.scrub_cursor: bytes | None = None
        """Where the next `etcd_compact.scrub` reads on (None: from the first block)."""
        registry = node.metrics.registry
        self.alarm_gauge = Gauge(
            "sharechain_etcd_alarm",
            "1 while an etcd member has raised the alarm (NOSPACE: quota reached)",
            ["alarm"],
            registry=registry,
        )
        self.alarm_gauge.labels("NOSPACE").set(0)
        self.unread = ""
        """The members whose space could not be read, as last logged."""
        self.disarmed = Counter(
            "sharechain_etcd_alarm_disarmed",
            "NOSPACE alarms this node lifted because no member's database was near its quota",
            registry=registry,
        )
        self.swept = Counter(
            "sharechain_etcd_swept_keys",
            "Keys under the chain's etcd prefix that no node writes, deleted by this node",
            registry=registry,
        )
        self.pruned_gauge = Gauge(
            "sharechain_etcd_pruned_height",
            "Blocks up to this height were removed from etcd by this node",
            registry=registry,
        )

    def check_alarms(self) -> None:
        """Read etcd's alarms into the node's `etcd_alarms` and the metric.

        A NOSPACE alarm that every member's database size contradicts is lifted
        (and counted) rather than reported: it stops every write, and any etcd
        user can raise one by hand.
        """
        found = etcd_compact.alarms(self.etcd)
        if any(alarm.kind == "NOSPACE" for alarm in found):
            found = self.lift_unfounded(found)
        kinds = {alarm.kind for alarm in found}
        for kind in kinds | {"NOSPACE"}:
            self.alarm_gauge.labels(kind).set(1 if kind in kinds else 0)
        described = tuple(alarm.describe() for alarm in found)
        if described and described != self.node.etcd_alarms:
            log.error("ALERT %s: %s", self.node.org, "; ".join(described))
        self.node.etcd_alarms = described

    def lift_unfounded(self, found: tuple[Alarm, ...]) -> tuple[Alarm, ...]:
        """Disarm the NOSPACE alarms if no member is near its quota; the alarms left."""
        endpoints = self.etcd.endpoints
        spaces, failed = etcd_compact.spaces(endpoints, self.http)
        if not etcd_compact.unfounded(spaces, len(endpoints)):
            why = "; ".join(failed)
            if why and why != self.unread:
                log.warning("%s keeps etcd's NOSPACE alarm: %s", self.node.org, why)
            self.unread = why
            return found
        left = []
        for alarm in found:
            if alarm.kind != "NOSPACE":
                left.append(alarm)
                continue
            if not etcd_compact.disarm(self.etcd, alarm):
                continue  # another node lifted it first
            self.disarmed.inc()
            log.warning(
                "%s disarmed etcd's NOSPACE alarm for member %x: no member's database is "
                "near its quota (%s); raised by hand, or left after a defragmentation",
                self.node.org,
                alarm.member_id,
                "; ".join(space.describe() for space in spaces),
            )
        return tuple(left)

    def prunable(self) -> int:
        """The height up to which blocks may leave etcd now (0: none)."""
        node = self.node
        attested = {p.org: p.checked for p in node.book.peers() if p.agrees and p.checked >= 0}
        # Every active organisation runs a node (DESIGN.md), listed in --peers or
        # not: one whose attestations this node never sees blocks pruning.
        members = {o.id for o in organisations(node.store) if o.active and o.id != node.org}
        return etcd_compact.prunable_height(
            node.ledger.height,
            attested,
            sorted(members | {org for org, _ in node.config.peers}),
            self.etcd.head(),
            keep=node.config.compaction_keep,
        )

    def clear_leader_key(self) -> None:
        """Delete a leader key no node wrote (no lease, or no member's name): any node may,
        at each read of the alarms (every few seconds)."""
        node = self.node
        # Behind the chain, a newly admitted member may be unknown here: names not judged.
        members = {o.id for o in organisations(node.store) if o.active} if node.caught_up else None
        removed = Election(self.etcd).clear_foreign(members)
        if removed is not None:
            self.swept.inc()
            log.warning(
                "ALERT %s: deleted etcd's leader key, %s: no node writes such a key (an etcd "
                "client put it by hand); the nodes elect a leader again",
                node.org,
                removed,
            )

    def run_round(self, now: float) -> None:
        """Prune, sweep, compact and (when due) defragment, if this node leads."""
        node = self.node
        leader = node.leader
        if leader is None or leader.org != node.org or node.halted is not None:
            return
        upto = self.prunable()
        if upto > self.pruned_to:
            pruned = etcd_compact.prune(self.etcd, upto, node.org)
            etcd_compact.compact(self.etcd, pruned.revision)
            self.pruned_to = upto
            self.pruned_gauge.set(upto)
            log.info("%s pruned %d blocks from etcd up to %d", node.org, pruned.deleted, upto)
        head = self.etcd.head()
        swept = etcd_compact.sweep(self.etcd, node.org, head)
        scrubbed = etcd_compact.scrub(self.etcd, head, self.scrub_cursor)
        self.scrub_cursor = scrubbed.cursor
        deleted = swept.deleted + scrubbed.deleted
        if deleted:
            etcd_compact.compact(self.etcd, max(swept.revision, scrubbed.revision))
            self.swept.inc(deleted)
            log.warning(
                "ALERT %s: deleted %d keys under the chain's etcd prefix that no node writes "
                "(above the head %d, or no block's): an etcd client put them by hand",
                node.org,
                deleted,
                head,
            )
        if self.defrag and now - self.last_defrag >= node.config.defrag_interval:
            self.last_defrag = now
            failed = etcd_compact.defragment(self.etcd.endpoints, self.http)
            if any("permission denied" in f for f in failed):
                # etcd's authentication is on: only its root defragments (ordering.etcd_auth).
                self.defrag = False
                log.info(
                    "%s does not defragment etcd: only etcd's root user may "
                    "(docs/etcd-ordering.md, 'Users and roles'); pruning and compaction go on",
                    node.org,
                )
            elif failed:
                log.warning("defragmenting etcd failed on %s", "; ".join(failed))

    def loop(self) -> None:
        node = self.node
        interval = node.config.compaction_interval
        tick = min(_ALARM_POLL, interval) if interval > 0 else _ALARM_POLL
        while not node.stop_event.wait(min(tick, _ALARM_POLL_RAISED) if node.etcd_alarms else tick):
            now = time.monotonic()
            try:
                self.check_alarms()
                self.clear_leader_key()
                if interval > 0 and now - self.last_prune >= interval:
                    self.last_prune = now
                    self.run_round(now)
            except OrderingError as exc:
                log.warning("etcd compaction round skipped: %s", exc)


def start(node: CompactingNode) -> None:
    """Start the compaction loop of an etcd-mode node (nothing in solo mode)."""
    cfg = node.config
    if cfg.ordering != "etcd":
        return
    # A connection of its own: a slow defragmentation must not hold up appends.
    etcd = EtcdLog(
        cfg.etcd_endpoints, prefix=cfg.etcd_prefix, timeout=5.0, page_size=1, tls=cfg.etcd_tls
    )
    http = etcd_http_client(cfg.etcd_tls)  # with the node's client certificate under mTLS
    node.on_close(etcd.close)
    node.on_close(http.close)
    compactor = Compactor(node, etcd, http)
    node.spawn("compaction", compactor.loop)
