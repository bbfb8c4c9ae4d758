"""A fault schedule run against a local network under load, for the history checker.

`run_soak` starts a `LocalNetwork` whose nodes reach each other (and the etcd
members) through `LinkProxy`s, drives a load through it and injects a
schedule of faults while the load runs:

- ``kill``: SIGKILL a node or an etcd member, restart it `duration` seconds later;
- ``pause``: SIGSTOP a node or an etcd member, SIGCONT it `duration` seconds later;
- ``delay``: slow the link from a node to a peer by 0.2 s each way;
- ``cut``: cut that link (connections reset, new ones refused), then restore it;
- ``skew``: restart a node with its wall clock `amount` seconds off
  (`sharechain.faults.skewed_node`), and again with the true time after `duration`;
- ``fill``: fill the disk of a node's data directory to the last byte, then free
  it (each node's data directory is then a tmpfs of its own, `small_disks`: the
  real disk is never filled; mounting needs root);
- ``junk`` (etcd ordering): the organisation's own etcd credentials write keys no
  node writes: under `blocks/` above the head and between two block keys
  below it, outside `blocks/`, `head` holding no height and a `leader` key with
  no lease naming a non-member (threat 45 in docs/security.md). Nothing heals
  it: the nodes mend and sweep by themselves, and after the run every such key
  must be gone, `head` a height again and the leader key a member's on a lease
  (``foreign_keys_swept``).

The load: each organisation's client submits batches of notary records
through its own node; a submission that fails (its node is down, paused, cut
off) is logged as unacknowledged and retried, with the same signed bytes,
through another node, so a retry that lands twice would show. Beside it, one
regulated flow runs to the end: a dataset registered, requested, approved by
its owner and the supervisor, its key released and read, the grant revoked,
and a read tried after the revocation (which the chain must refuse). A second
one goes through the data plane (`sharechain.faults.dataflow`): a random
plaintext sealed and published, fetched by the grantee, refused to an
outsider and again after the revocation.

When the load is over and every fault healed, the nodes must catch up to one
head; they are stopped and their stores read, and `check_history` judges the
logged operations against the chains; every file under the network's
directory is searched for the plaintexts, which only the owner's source and
the grantee's copy may hold, and for the data keys, which none may hold in
the clear (``no_plaintext_at_non_grantee``).
`random_schedule` draws a schedule from a seed, so a failing run is
reproduced by its seed.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import random
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx

from sharechain.api.client import NodeClient
from sharechain.contracts import derive_id
from sharechain.errors import ConfigError, SharechainError
from sharechain.faults.dataflow import DataFlow, Submit, data_flow, key_found, plaintext_found
from sharechain.faults.history import (
    HistoryReport,
    HistoryViolationError,
    Operation,
    Violation,
    chain_from_store,
    check_history,
)
from sharechain.faults.network import LINK_DELAY, ProxiedNetwork
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import sign_transaction
from sharechain.node.launcher import LocalNetwork
from sharechain.ordering.etcd_lease import Election
from sharechain.ordering.etcd_log import EtcdLog
from sharechain.ordering.etcd_wire import _b64

__all__ = [
    "ETCD_KINDS",
    "FLOW_CODES",
    "KINDS",
    "NODE_KINDS",
    "Fault",
    "ProxiedNetwork",
    "SoakResult",
    "random_schedule",
    "run_soak",
]

KINDS: Final = ("kill", "pause", "delay", "cut", "skew", "fill", "junk")
NODE_KINDS: Final = ("skew", "fill", "junk")
"""Faults of a node only (an etcd member is not restarted skewed nor given a small disk;
``junk`` is written with a node's etcd credentials)."""
ETCD_KINDS: Final = ("junk",)
"""Faults that need etcd ordering."""
_SKEW_RANGE: Final = (2.0, 10.0)
"""Seconds a skewed clock is off, either way: within what members tolerate (30 s)."""
FLOW_CODES: Final = ("valid",) * 7 + ("revoked",)
"""The regulated flow's codes: register, request, two approvals, key release, read,
revoke all valid; the read after the revocation refused."""
RESTART_SECONDS: Final = 5.0
"""A node that exits on its own during a run (one cannot start on a disk that is full
at that moment) is started again after this long, as systemd does with
`deploy/systemd/sharechain-node.service` (`Restart=on-failure`, `RestartSec=5`)."""
_SUPERVISOR: Final = "regulator"


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault of a schedule."""

    at: float
    """Seconds after the load started."""
    kind: str
    """One of `KINDS`."""
    org: str
    """The node faulted (for a link: the caller's side)."""
    duration: float
    """Seconds until it is healed (restart, SIGCONT, link restored)."""
    peer: str = ""
    """For a link fault: the peer called (an organisation, or `etcd-<i>`)."""
    amount: float = 0.0
    """For ``skew``: seconds the node's clock is off (negative: behind)."""


@dataclass(frozen=True, slots=True)
class SoakResult:
    """What a run did and what the checker proved."""

    seed: int
    """The schedule's seed."""
    faults: tuple[Fault, ...]
    """The faults injected."""
    operations: tuple[Operation, ...]
    """Every submission logged."""
    report: HistoryReport
    """The checker's counts."""
    flow: tuple[str, ...]
    """The regulated flow's codes, step by step (`FLOW_CODES` when it went through)."""
    data_flow: tuple[str, ...]
    """The data-plane flow's outcomes (`dataflow.DATA_FLOW` when it went through)."""
    plaintext_copies: int
    """Files found holding a plaintext: the owner's sources and the grantee's copy only
    (anything else is a violation), so at least two when the flow went through."""
    data_keys: int
    """Data keys searched for in the clear in every file (none may hold one): one per
    publication that went through."""
    restarts: int
    """Nodes started again after they exited on their own (`RESTART_SECONDS`)."""


def random_schedule(
    seed: int,
    targets: Sequence[str],
    peers: Sequence[str],
    *,
    seconds: float,
    count: int,
    kinds: Sequence[str] = KINDS,
) -> tuple[Fault, ...]:
    """Up to `count` faults drawn from `seed`, one after another within `seconds`.

    `targets` are what may be killed or paused (organisations' nodes and
    `etcd-<i>` members); a link runs from a node to one of `peers`. Faults do
    not overlap (a paused node is not also killed, two etcd members are never
    down at once), so each one's effect stays attributable.
    """
    rng = random.Random(seed)
    nodes = [t for t in targets if not t.startswith("etcd-")]
    faults, cursor = [], 0.0
    for _ in range(count):
        kind = rng.choice(list(kinds))
        link = kind in ("delay", "cut")
        org = rng.choice(nodes if link or kind in NODE_KINDS else list(targets))
        peer = rng.choice([p for p in peers if p != org]) if link else ""
        at = cursor + rng.uniform(0.3, 1.5)
        duration = rng.uniform(0.5, 3.0)
        amount = rng.choice((-1, 1)) * rng.uniform(*_SKEW_RANGE) if kind == "skew" else 0.0
        if at + duration > seconds:
            break
        faults.append(Fault(round(at, 2), kind, org, round(duration, 2), peer, round(amount, 2)))
        cursor = at + duration
    return tuple(faults)


class _Supervisor:
    """Restarts nodes that exited on their own, `RESTART_SECONDS` after it saw them gone."""

    def __init__(self, net: ProxiedNetwork) -> None:
        self.net = net
        self.gone: dict[str, float] = {}
        self.restarts = 0
        """Nodes it started again."""

    def sleep_until(self, when: float) -> None:
        while (left := when - time.monotonic()) > 0:
            time.sleep(min(0.25, left))
            self.tick()

    def tick(self) -> None:
        now = time.monotonic()
        for node in self.net.nodes:
            if self.net.exited(node.org) is None:
                self.gone.pop(node.org, None)
            elif now - self.gone.setdefault(node.org, now) >= RESTART_SECONDS:
                self.net.start_node(node.org)
                del self.gone[node.org]
                self.restarts += 1


def _signal(net: ProxiedNetwork, org: str, signum: int) -> None:
    """Send `signum` to `org`'s process; nothing if it is down (exited, waiting for
    its restart): there is nothing to pause or resume."""
    with contextlib.suppress(ConfigError):
        os.kill(net.pid(org), signum)


def _scribble(net: ProxiedNetwork, fault: Fault) -> list[bytes]:
    """Write keys no node writes with `fault.org`'s etcd credentials; the keys that must go."""
    assert net.etcd is not None  # `run_soak` refuses the fault without etcd
    tag = f"{fault.at:.2f}".encode()
    with EtcdLog(net.etcd.endpoints, timeout=5.0, tls=net.etcd.client_tls(fault.org)) as etcd:
        head = max(etcd.head(), 1)
        junk = [
            etcd.prefix + b"blocks/x" + tag,
            etcd.block_key(head + 2) + b"x" + tag,  # above the head
            etcd.block_key(head - 1) + b"_" + tag,  # between two blocks
            etcd.prefix + b"zzz/" + tag,
        ]
        for key in junk:
            etcd.call("/v3/kv/put", {"key": _b64(key), "value": _b64(b"junk " + tag)})
        for key, value in ((b"head", b"junk"), (b"leader", b"mallory")):  # no lease
            etcd.call("/v3/kv/put", {"key": _b64(etcd.prefix + key), "value": _b64(value)})
    return junk


def _foreign_left(net: ProxiedNetwork, junk: Sequence[bytes], timeout: float) -> list[Violation]:
    """Wait for the nodes to sweep `junk`, mend `head` and clear the leader key; what is left."""
    assert net.etcd is not None
    members = {n.org for n in net.nodes}
    deadline = time.monotonic() + timeout
    with EtcdLog(net.etcd.endpoints, timeout=5.0, tls=net.etcd.root_tls()) as etcd:
        while True:
            left = [k for k in junk if etcd.call("/v3/kv/range", {"key": _b64(k)}).get("kvs")]
            holder = Election(etcd).current()
            led = holder is not None and holder.org in members and holder.lease != 0
            mended = etcd.head() >= 0
            if (not left and led and mended) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    found = [Violation("foreign_keys_swept", f"{k!r} is still in etcd") for k in left]
    if not led:
        held = "nothing" if holder is None else f"{holder.org!r} on lease {holder.lease:x}"
        found.append(Violation("foreign_keys_swept", f"the leader key holds {held}"))
    if not mended:
        found.append(Violation("foreign_keys_swept", "etcd's head holds no height"))
    return found


def _inject(net: ProxiedNetwork, fault: Fault, junk: list[bytes]) -> None:
    if fault.kind == "junk":
        junk.extend(_scribble(net, fault))
    elif fault.kind == "kill":
        net.kill(fault.org)
    elif fault.kind == "pause":
        _signal(net, fault.org, signal.SIGSTOP)
    elif fault.kind == "delay":
        net.link(fault.org, fault.peer).delay(LINK_DELAY)
    elif fault.kind == "cut":
        net.link(fault.org, fault.peer).cut()
    elif fault.kind == "skew":
        net.skew(fault.org, fault.amount)
    elif fault.kind == "fill":
        net.fill(fault.org)
    else:
        raise ConfigError(f"unknown fault {fault.kind!r}; one of {KINDS}")


def _heal(net: ProxiedNetwork, fault: Fault) -> None:
    if fault.kind == "junk":
        return  # the nodes clean up by themselves; `_foreign_left` checks they did
    if fault.kind == "kill":
        net.restart(fault.org)
    elif fault.kind == "pause":
        _signal(net, fault.org, signal.SIGCONT)
    elif fault.kind == "skew":
        net.skew(fault.org, None)
    elif fault.kind == "fill":
        net.unfill(fault.org)
    else:
        net.link(fault.org, fault.peer).restore()


class _Log:
    """The operations logged by every client thread."""

    def __init__(self, net: LocalNetwork) -> None:
        self.net = net
        self.lock = threading.Lock()
        self.ops: list[Operation] = []

    def submit(self, org: str, via: str, raws: Sequence[bytes]) -> list[str]:
        """Submit through `via`'s node, signed in as `org`; log the outcome; the codes or []."""
        url = self.net.spec(via).url
        try:
            with NodeClient(url, org, self.net.keys(org).signing, timeout=15.0) as client:
                receipts = client.submit(raws, timeout=10.0)
        except (SharechainError, httpx.HTTPError):  # down, paused, cut off, timed out
            with self.lock:
                self.ops.extend(Operation(hashlib.sha256(r).digest(), via, False) for r in raws)
            return []
        with self.lock:
            self.ops.extend(Operation(r.tx_id, via, True, r.code, r.height) for r in receipts)
        return [r.code for r in receipts]

    def until_acknowledged(
        self, org: str, orgs: Sequence[str], raws: Sequence[bytes], deadline: float
    ) -> list[str]:
        """Submit, then retry the same bytes through each node in turn until one answers."""
        for via in itertools.chain([org], itertools.cycle(orgs)):
            codes = self.submit(org, via, raws)
            if codes or time.monotonic() > deadline:
                return codes
            time.sleep(0.2)
        return []  # unreachable: the cycle only ends at the deadline


def _records(net: LocalNetwork, org: str, seed: int, start: int, n: int) -> list[bytes]:
    key = net.keys(org).signing
    return [
        sign_transaction(
            key,
            "notary.record",
            org,
            {"digest": hashlib.sha256(f"{seed}/{org}/{i}".encode()).digest()},
        ).raw
        for i in range(start, start + n)
    ]


def _load(
    log: _Log, org: str, orgs: Sequence[str], seed: int, batch: int, stop: threading.Event
) -> None:
    """Batches through `org`'s own node; a failed batch is retried once through another."""
    others = [o for o in orgs if o != org]
    for n in itertools.count():
        if stop.is_set():
            return
        raws = _records(log.net, org, seed, n * batch, batch)
        if not log.submit(org, org, raws):
            time.sleep(0.2)
            log.submit(org, others[n % len(others)], raws)


def _submitter(log: _Log, orgs: Sequence[str], deadline: float) -> Submit:
    """Sign as an organisation and submit until acknowledged: (raw, code)."""

    def submit(org: str, kind: str, payload: dict[str, Any]) -> tuple[bytes, str]:
        raw = sign_transaction(log.net.keys(org).signing, kind, org, payload).raw
        codes = log.until_acknowledged(org, orgs, [raw], deadline)
        return raw, codes[0] if codes else "unacknowledged"

    return submit


def _flow(log: _Log, orgs: Sequence[str], deadline: float) -> list[str]:
    """The regulated flow to a revocation and a read after it; the codes, step by step."""
    owner, member = orgs[0], orgs[1]
    step = _submitter(log, orgs, deadline)

    digest = hashlib.sha256(b"soak dataset").digest()
    register, c0 = step(
        owner,
        "dataset.register",
        {"title": "soak", "plaintext_digest": digest, "ciphertext_digest": digest, "size": 1},
    )
    dataset = derive_id("dataset", hashlib.sha256(register).digest())
    ask = {"dataset": dataset, "purpose": "treatment", "duration": 86_400_000}
    request, c1 = step(member, "access.request", ask)
    rid = derive_id("request", hashlib.sha256(request).digest())
    _, c2 = step(owner, "access.approve", {"request": rid})
    approval, c3 = step(_SUPERVISOR, "access.approve", {"request": rid})
    gid = derive_id("grant", hashlib.sha256(approval).digest())
    release = {"grant": gid, "to": member, "epoch": 1, "wrapped_key_digest": digest}
    _, c4 = step(owner, "grant.key-release", release)
    _, c5 = step(member, "grant.read", {"grant": gid, "digest": digest})
    _, c6 = step(owner, "grant.revoke", {"grant": gid, "reason": "soak"})
    _, c7 = step(member, "grant.read", {"grant": gid, "digest": digest})
    return [c0, c1, c2, c3, c4, c5, c6, c7]


def run_soak(
    base: Path,
    *,
    seed: int,
    faults: Sequence[Fault],
    seconds: float = 10.0,
    orgs: int = 3,
    ordering: str = "solo",
    batch: int = 20,
    settle_timeout: float = 60.0,
) -> SoakResult:
    """Run the load for `seconds` with `faults`; check the history (raises on a violation)."""
    if ordering != "etcd" and any(f.kind in ETCD_KINDS for f in faults):
        raise ConfigError(f"faults {ETCD_KINDS} need etcd ordering (ordering='etcd')")
    # With junk to sweep, the leader sweeps every few seconds, not every 30 s (the
    # default), so the run's end need not wait that long to check it did.
    sweeps = ("--compaction-interval", "3") if any(f.kind == "junk" for f in faults) else ()
    net = ProxiedNetwork(
        base,
        orgs=orgs,
        ordering=ordering,
        node_options=("--log-level", "warning", *sweeps),
        small_disks=any(f.kind == "fill" for f in faults),
    )
    log = _Log(net)
    names = [n.org for n in net.nodes]
    flow: list[str] = []
    shared = DataFlow()
    active: list[Fault] = []
    supervisor = _Supervisor(net)
    junk: list[bytes] = []
    foreign: list[Violation] = []
    ran = False
    try:
        net.up(timeout=90)
        stop = threading.Event()
        workers = [
            threading.Thread(target=_load, args=(log, org, names, seed, batch, stop))
            for org in names
        ]
        started = time.monotonic()
        until = started + seconds + settle_timeout
        flow_thread = threading.Thread(target=lambda: flow.extend(_flow(log, names, until)))
        data_thread = threading.Thread(
            target=data_flow,
            args=(base, base / "clients", names, _SUPERVISOR, _submitter(log, names, until)),
            kwargs={"deadline": until, "flow": shared},
        )
        for t in (*workers, flow_thread, data_thread):
            t.start()
        pending = sorted(
            [(f.at, 0, f) for f in faults] + [(f.at + f.duration, 1, f) for f in faults],
            key=lambda e: (e[0], e[1]),
        )
        for at, heal, fault in pending:
            supervisor.sleep_until(started + at)
            if heal:
                active.remove(fault)
                _heal(net, fault)
            else:
                _inject(net, fault, junk)
                active.append(fault)
        supervisor.sleep_until(started + seconds)
        stop.set()
        for t in (*workers, flow_thread, data_thread):
            end = time.monotonic() + settle_timeout
            while t.is_alive() and time.monotonic() < end:
                t.join(0.25)
                supervisor.tick()
        # Time for a node the last heal restarted to fail at start, and be restarted.
        supervisor.sleep_until(time.monotonic() + RESTART_SECONDS)
        net.wait_ready(timeout=settle_timeout)
        _wait_same_head(net, settle_timeout)
        if any(f.kind == "junk" for f in faults):
            foreign = _foreign_left(net, junk, settle_timeout)
        ran = True
    finally:
        for fault in active:  # a run that failed half-way: let the nodes stop cleanly
            with contextlib.suppress(SharechainError, OSError):
                _heal(net, fault)
        net.down()
        net.close_links()
        if not ran:
            net.release_disks()
    chains = []
    try:
        for node in net.nodes:
            with contextlib.closing(Store(node.data_dir / "ledger.db")) as store:
                chains.append(chain_from_store(node.org, store))
        holding = plaintext_found(base, shared.plaintexts, ())
        keyed = key_found(base, shared.keys)
    finally:
        net.release_disks()
    allowed = {p.resolve() for p in shared.allowed}
    leaks = [
        Violation("no_plaintext_at_non_grantee", f"{p} holds the published plaintext")
        for p in holding
        if p.resolve() not in allowed
    ]
    leaks += [
        Violation("no_plaintext_at_non_grantee", f"{p} holds a data key in the clear")
        for p in keyed
    ]
    leaks += foreign
    try:
        report = check_history(log.ops, chains)
    except HistoryViolationError as exc:
        raise HistoryViolationError([*exc.violations, *leaks]) from None
    if leaks:
        raise HistoryViolationError(leaks)
    return SoakResult(
        seed,
        tuple(faults),
        tuple(log.ops),
        report,
        tuple(flow),
        tuple(shared.outcomes),
        len(holding),
        len(shared.keys),
        supervisor.restarts,
    )


def _wait_same_head(net: LocalNetwork, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        heads = set()
        for n in net.nodes:
            with net.client(n.org) as c:
                status = c.status()
            heads.add((status["height"], status["head_hash"]))
        if len(heads) == 1 or time.monotonic() > deadline:
            return  # a node left behind is the checker's to report
        time.sleep(0.2)
