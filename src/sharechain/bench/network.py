"""Benchmark: signed workflow transactions through the API, committed on 4 peers ordered by etcd.

`python -m sharechain.bench.network` starts a local network (4 node processes,
3 etcd members, all on 127.0.0.1) and runs the regulated data-sharing flow of
`bench/workflow.py` through it: a member requests another member's dataset,
the owner and the supervisor (`regulator`) approve (the second approval
issues the grant), the owner releases the key to the grantee, and the grantee
signs a read receipt. Every transaction is pre-signed (ids of requests and
grants derive from the signed bytes) and submitted by its signer's client
through the signer's own node, one signed HTTP request per batch.

Each step can only be submitted once the previous one is committed, so the
clients form a closed loop: `clients_per_org` client threads per
organisation each keep one batch of at most `batch` ready transactions in
flight, and a receipt makes the workflow's next step ready for the
organisation that signs it.

Figures:

- `network_tx_per_s`: workflow transactions committed on *all four* peers,
  per second of wall time from the first submission until the slowest peer
  reached the final height.
- `network_p99_ms`, `network_p50_ms`: per transaction, from the submission of
  its batch to the moment the last of the four peers committed its block
  (each node reports the wall-clock commit time of its recent heights in
  `/v1/status`; all processes share the machine's clock).
- `receipt_p99_ms`: submission to the receipt from the node it went to.
- `cpu_seconds`: CPU time of each node (with its signature worker processes),
  the etcd members and this process (the clients) during the run, to see
  where the two cores went; `cpu_us_per_tx`, their sum per transaction.
- `api_cpu_seconds`: of each node's CPU time, its main thread's: the event
  loop that serves the REST API (receiving, checking and answering batches).
- `network_bounded_*`: the same figures at the heaviest load whose p99 stays
  under 500 ms, which the default load (300 in flight per organisation, for
  throughput) overshoots: after the main run, the same network runs 2,000
  workflows at each of 50, 100, 150, 200 and 250 steps in flight per organisation
  (one client each), lightest first, until a load's p99 reaches 500 ms
  (`network_bounded_curve` lists every load tried; the figures come from
  the one with the highest throughput under the target, or from the
  lightest, with `network_bounded_within_target` false, if none was).
- `network_share_of_ceiling`: every peer verifies every transaction once, so
  four peers sharing this machine can commit at most (Ed25519 verifications
  per second per core x cores / 4) transactions per second;
  `network_tx_per_s` as a share of that, with the rate measured in the same
  run before the network starts and again after it stopped, the faster of
  the two (`network_ed25519_verify_per_s_per_core`, its samples `_before`
  and `_after`; see `bracketing_rate` in `bench/ledger.py`).
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sharechain.bench.ledger import (
    bracketing_rate,
    ceiling_figures,
    cores,
    ed25519_verify_per_s_per_core,
)
from sharechain.contracts import derive_id
from sharechain.crypto.keyfile import OrgKeys
from sharechain.ledger.transactions import sign_transaction
from sharechain.node.launcher import LocalNetwork
from sharechain.storage.datadir import CONFIG

__all__ = ["run"]

SUPERVISOR = "regulator"
STAGES = 5
BOUNDED = (50, 100, 150, 200, 250)
"""Steps in flight per organisation of the lighter runs after the main one, lightest
first (`network_bounded_*`): one client per organisation with one batch of that size."""
BOUNDED_WORKFLOWS = 2_000
"""Workflows of each lighter run (10,000 transactions)."""
P99_TARGET_MS = 500.0
"""The issue's bound on p99 commit latency at the load whose share it judges."""
GOVERNANCE = {"risk": {"max_requests": 10**9, "max_key_releases": 10**9}}
"""Risk thresholds above the benchmark's rates: no alert suspends the flow."""


@dataclass(frozen=True, slots=True)
class _Step:
    """One pre-signed workflow transaction."""

    workflow: int
    """Index of its workflow."""
    stage: int
    """0 request, 1 owner approval, 2 supervisor approval, 3 key release, 4 read receipt."""
    org: str
    """Who signs and submits it."""
    raw: bytes
    """The signed envelope."""


def _digest(n: int) -> bytes:
    return n.to_bytes(32, "big")


def _register(keys: OrgKeys, org: str, n: int) -> bytes:
    return sign_transaction(
        keys.signing,
        "dataset.register",
        org,
        {
            "title": f"{org} dataset {n}",
            "tags": ["bench"],
            "plaintext_digest": _digest(n),
            # A ciphertext digest names one dataset only (the digest claim rule):
            # one of each owner's own.
            "ciphertext_digest": hashlib.sha256(f"{org} {n}".encode()).digest(),
            "size": 1 << 20,
        },
    ).raw


def _workflow(
    w: int, keys: dict[str, OrgKeys], owner: str, member: str, dataset: str, n: int
) -> list[_Step]:
    def sign(org: str, type: str, payload: dict[str, Any]) -> bytes:
        return sign_transaction(keys[org].signing, type, org, payload).raw

    req = sign(
        member,
        "access.request",
        {"dataset": dataset, "purpose": "treatment", "duration": 86_400_000},
    )
    rid = derive_id("request", hashlib.sha256(req).digest())
    approve2 = sign(SUPERVISOR, "access.approve", {"request": rid})
    gid = derive_id("grant", hashlib.sha256(approve2).digest())
    raws = [
        (member, req),
        (owner, sign(owner, "access.approve", {"request": rid})),
        (SUPERVISOR, approve2),
        (
            owner,
            sign(
                owner,
                "grant.key-release",
                {"grant": gid, "to": member, "epoch": 1, "wrapped_key_digest": _digest(7)},
            ),
        ),
        (member, sign(member, "grant.read", {"grant": gid, "digest": _digest(n)})),
    ]
    return [_Step(w, s, org, raw) for s, (org, raw) in enumerate(raws)]


def run(
    *,
    workflows: int = 8_000,
    batch: int = 150,
    clients_per_org: int = 2,
    max_wait_ms: int = 60,
    max_block_txs: int = 2_000,
    datasets_per_owner: int = 50,
    base: Path | None = None,
    checkpoints: tuple[int, float] | None = None,
    bounded: Sequence[int] | None = BOUNDED,
    bounded_workflows: int = BOUNDED_WORKFLOWS,
) -> dict[str, Any]:
    """Run the benchmark; returns `network_tx_per_s`, `network_p99_ms` and details.

    `checkpoints`: the nodes' cosigning interval (`checkpoint_blocks`,
    `checkpoint_seconds`) instead of the data directory's default; a huge one
    turns cosigning off (`bench/proofs.py` compares the two). `bounded`: the
    steps in flight per organisation of the lighter runs that follow, lightest
    first, each of `bounded_workflows` workflows, until one's p99 reaches
    `P99_TARGET_MS` (reported as `network_bounded_*`), or None to skip them."""
    before = ed25519_verify_per_s_per_core()  # before the network loads the machine
    with tempfile.TemporaryDirectory(prefix="sharechain-bench-") as tmp:
        net = LocalNetwork(
            (base or Path(tmp)) / "net",
            orgs=4,
            ordering="etcd",
            governance=GOVERNANCE,
            node_options=(
                "--log-level",
                "warning",
                "--max-wait-ms",
                str(max_wait_ms),
                "--max-block-txs",
                str(max_block_txs),
                "--no-verify",
            ),
        )
        if checkpoints is not None:
            _set_checkpoints(net, *checkpoints)
        net.up(timeout=90)
        try:
            result = _measure(net, workflows, batch, clients_per_org, datasets_per_owner)
            curve = []
            for step, in_flight in enumerate(bounded or ()):
                first = datasets_per_owner * (step + 1)  # datasets of their own
                curve.append(
                    _measure(net, bounded_workflows, in_flight, 1, datasets_per_owner, first=first)
                )
                print(  # progress: the curve adds a run per load
                    f"  bounded: {in_flight * len(net.nodes)} in flight,"
                    f" {curve[-1]['network_tx_per_s']} tx/s, p99 {curve[-1]['network_p99_ms']} ms",
                    file=sys.stderr,
                    flush=True,
                )
                if not _within_target(curve[-1]):
                    break  # heavier loads only queue longer
        finally:
            gc.unfreeze()  # `_measure` froze the workflows
            net.down()
    after = ed25519_verify_per_s_per_core()  # and once its processes are gone
    rate = bracketing_rate(before, after)
    ceiling = ceiling_figures(result["network_tx_per_s"], rate, sharing=result["peers"])
    if curve:
        result |= _bounded_figures(curve, rate)
    result |= {
        "max_wait_ms": max_wait_ms,
        "max_block_txs": max_block_txs,
        "network_ed25519_verify_per_s_per_core": ceiling["ed25519_verify_per_s_per_core"],
        "network_ed25519_verify_per_s_per_core_before": round(before),
        "network_ed25519_verify_per_s_per_core_after": round(after),
        "cores": cores(),
        "network_share_of_ceiling": ceiling["share"],
    }
    return result


def _within_target(run: dict[str, Any]) -> bool:
    p99 = run["network_p99_ms"]
    return p99 is not None and p99 < P99_TARGET_MS


def _bounded_figures(curve: list[dict[str, Any]], rate: float) -> dict[str, Any]:
    """`network_bounded_*` from the lighter runs: the fastest whose p99 met the
    target, or the lightest if none did (flagged), and every run's figures."""
    points = [
        {
            "in_flight": run["batch"] * run["clients"],
            "tx_per_s": run["network_tx_per_s"],
            "p50_ms": run["network_p50_ms"],
            "p99_ms": run["network_p99_ms"],
            "cpu_us_per_tx": run["cpu_us_per_tx"],
            "tx_per_block": round(run["transactions"] / max(1, run["blocks"])),
            "share_of_ceiling": ceiling_figures(
                run["network_tx_per_s"], rate, sharing=run["peers"]
            )["share"],
        }
        for run in curve
    ]
    within = [p for p, run in zip(points, curve, strict=True) if _within_target(run)]
    best = max(within, key=lambda p: p["tx_per_s"]) if within else points[0]
    return {
        "network_bounded_tx_per_s": best["tx_per_s"],
        "network_bounded_p99_ms": best["p99_ms"],
        "network_bounded_p50_ms": best["p50_ms"],
        "network_bounded_cpu_us_per_tx": best["cpu_us_per_tx"],
        "network_bounded_in_flight": best["in_flight"],
        "network_bounded_share_of_ceiling": best["share_of_ceiling"],
        "network_bounded_within_target": bool(within),
        "network_bounded_p99_target_ms": P99_TARGET_MS,
        "network_bounded_curve": points,
    }


def _set_checkpoints(net: LocalNetwork, blocks: int, seconds: float) -> None:
    for node in net.nodes:
        cfg = node.data_dir / CONFIG
        body = json.loads(cfg.read_text())
        body["settings"] = {
            **body.get("settings", {}),
            "checkpoint_blocks": blocks,
            "checkpoint_seconds": seconds,
        }
        cfg.write_text(json.dumps(body))


def _setup(net: LocalNetwork, workflows: int, per_owner: int, first: int) -> list[list[_Step]]:
    """Register the datasets numbered from `first` (not timed) and pre-sign every workflow."""
    orgs = [n.org for n in net.nodes]
    members = [o for o in orgs if o != SUPERVISOR]
    keys = {o: net.keys(o) for o in orgs}
    datasets: dict[str, list[str]] = {}
    for owner in members:
        raws = [_register(keys[owner], owner, first + n) for n in range(per_owner)]
        with net.client(owner, timeout=60) as client:
            receipts = client.submit(raws, timeout=60)
        if {r.code for r in receipts} != {"valid"}:
            raise RuntimeError(f"dataset registration refused: {receipts[0]}")
        datasets[owner] = [derive_id("dataset", hashlib.sha256(r).digest()) for r in raws]
    flows = []
    for w in range(workflows):
        owner = members[w % len(members)]
        member = members[(w + 1 + (w // len(members)) % (len(members) - 1)) % len(members)]
        n = (w // len(members)) % per_owner
        flows.append(_workflow(w, keys, owner, member, datasets[owner][n], n))
    return flows


class _Board:
    """Ready steps per organisation; a receipt makes the next step ready."""

    def __init__(self, flows: list[list[_Step]], orgs: Iterable[str]) -> None:
        self.flows = flows
        self.ready: dict[str, list[deque[_Step]]] = {
            o: [deque() for _ in range(STAGES)] for o in orgs
        }
        self.left = sum(len(f) for f in flows)
        # One condition per organisation over one lock: a receipt wakes only the
        # clients of the organisations whose steps it made ready.
        lock = threading.Lock()
        self.conds = {o: threading.Condition(lock) for o in self.ready}
        for flow in flows:
            self.ready[flow[0].org][0].append(flow[0])

    def take(self, org: str, limit: int) -> list[_Step] | None:
        """Up to `limit` ready steps of `org`, later stages first; None when all are done."""
        cond = self.conds[org]
        with cond:
            while True:
                out: list[_Step] = []
                for stage in reversed(self.ready[org]):
                    while stage and len(out) < limit:
                        out.append(stage.popleft())
                if out:
                    return out
                if self.left <= 0:
                    return None
                cond.wait(0.5)

    def done(self, steps: list[_Step], failed: bool) -> None:
        woken: set[str] = set()
        with self.conds[steps[0].org]:
            for step in steps:
                self.left -= STAGES - step.stage if failed else 1
                if not failed and step.stage + 1 < STAGES:
                    nxt = self.flows[step.workflow][step.stage + 1]
                    self.ready[nxt.org][nxt.stage].append(nxt)
                    woken.add(nxt.org)
            for org in self.conds if self.left <= 0 else woken:
                self.conds[org].notify_all()


def _cpu_seconds(pid: int, thread: int | None = None) -> float:
    """CPU time of process `pid` and of the processes it started (a node's signature
    workers), or of its thread `thread` alone (the main thread is `pid`)."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    if thread is not None or pid == os.getpid():  # the clients: etcd is theirs
        return own
    return own + sum(_cpu_seconds(child) for child in _children(pid))


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found.extend(int(c) for c in task.read_text().split())
        except (OSError, ValueError):
            continue
    return found


def _pids(net: LocalNetwork) -> dict[str, int]:
    info = json.loads((net.base / "network.json").read_text())
    pids = {n["org"]: n["pid"] for n in info["nodes"] if n.get("pid")}
    if net.etcd is not None:
        for i, proc in enumerate(net.etcd._procs):  # read-only look at the member processes
            if proc is not None:
                pids[f"etcd-{i}"] = proc.pid
    pids["clients"] = os.getpid()
    return pids


def _measure(
    net: LocalNetwork,
    workflows: int,
    batch: int,
    clients_per_org: int,
    per_owner: int,
    first: int = 0,
) -> dict[str, Any]:
    orgs = [n.org for n in net.nodes]
    flows = _setup(net, workflows, per_owner, first)
    # The pre-signed workflows live until the end: keep the collector from scanning
    # them again at every full collection (it cost the clients 1-2 us per transaction).
    gc.freeze()
    board = _Board(flows, orgs)
    submitted: list[tuple[float, float, int]] = []  # (submit time, receipt time, height)
    codes: dict[str, int] = {}
    lock = threading.Lock()
    errors: list[str] = []
    commits: dict[str, dict[int, float]] = {o: {} for o in orgs}
    stop_polling = threading.Event()

    def poll_commits() -> None:
        clients = {o: net.client(o, timeout=10) for o in orgs}
        interval, last = 1.0, (time.monotonic(), -1)
        try:
            while True:
                stopping = stop_polling.is_set()  # then poll once more, for the last blocks
                for org, client in clients.items():
                    for height, at in client.status().get("commits", []):
                        commits[org][int(height)] = float(at)
                if stopping:
                    break
                # Nodes keep their last 64 commit times: poll so that at most half of
                # them go by in between, but no more than once a second (each poll
                # costs every node a signed request, and this process CPU).
                now, top = time.monotonic(), max(commits[orgs[0]], default=-1)
                if last[1] >= 0 and top > last[1]:
                    rate = (top - last[1]) / (now - last[0])
                    interval = min(5.0, max(1.0, 32 / rate))
                last = (now, top)
                stop_polling.wait(interval)
        finally:
            for client in clients.values():
                client.close()

    def worker(org: str) -> None:
        with net.client(org, timeout=90) as client:
            while (steps := board.take(org, batch)) is not None:
                t0 = time.time()
                try:
                    receipts = client.submit([s.raw for s in steps], timeout=60)
                except Exception as exc:  # a failed batch is reported, not fatal
                    errors.append(f"{org}: {exc}")
                    board.done(steps, failed=True)
                    continue
                t1 = time.time()
                with lock:
                    for r in receipts:
                        codes[r.code] = codes.get(r.code, 0) + 1
                        submitted.append((t0, t1, r.height))
                board.done(steps, failed=False)

    pids = _pids(net)
    with net.client(orgs[0]) as c:
        start_height = int(c.status()["height"])
    cpu_before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    api_before = {org: _cpu_seconds(pids[org], pids[org]) for org in orgs}
    poller = threading.Thread(target=poll_commits, daemon=True)
    threads = [
        threading.Thread(target=worker, args=(org,)) for org in orgs for _ in range(clients_per_org)
    ]
    started = time.time()
    poller.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with net.client(orgs[0]) as c:
        final = int(c.status()["height"])
    deadline = time.monotonic() + 60
    for org in orgs:
        with net.client(org) as c:
            while int(c.status()["height"]) < final and time.monotonic() < deadline:
                time.sleep(0.01)
    stop_polling.set()
    poller.join()
    cpu = {name: round(_cpu_seconds(pid) - cpu_before[name], 2) for name, pid in pids.items()}
    api_cpu = {org: round(_cpu_seconds(pids[org], pids[org]) - api_before[org], 2) for org in orgs}
    all_peers = {
        h: max(commits[o][h] for o in orgs)
        for h in commits[orgs[0]]
        if all(h in commits[o] for o in orgs)
    }
    elapsed = time.time() - started if not all_peers else max(all_peers.values()) - started
    latencies = sorted(all_peers[h] - t0 for t0, _, h in submitted if h in all_peers)
    receipt = sorted(t1 - t0 for t0, t1, _ in submitted)
    races = {}
    for org in orgs:
        with net.client(org) as c:
            text = c.metrics()
        races[org] = [
            line.split()[-1]
            for line in text.splitlines()
            if line.startswith("sharechain_blocks_appended_total")
        ]
    committed = sum(codes.values())
    return {
        "network_tx_per_s": round(committed / elapsed, 1),
        "network_p99_ms": _ms(_pct(latencies, 0.99)),
        "network_p50_ms": _ms(_pct(latencies, 0.5)),
        "receipt_p99_ms": _ms(_pct(receipt, 0.99)),
        "receipt_p50_ms": _ms(statistics.median(receipt)) if receipt else None,
        "latency_samples": len(latencies),
        "transactions": committed,
        "codes": codes,
        "blocks": final - start_height,
        "seconds": round(elapsed, 2),
        "batch": batch,
        "clients": len(threads),
        "errors": errors[:5],
        "appends_won": races,
        "cpu_seconds": cpu,
        "cpu_us_per_tx": round(sum(cpu.values()) * 1e6 / len(latencies)) if latencies else None,
        "api_cpu_seconds": api_cpu,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "peers": len(orgs),
        "etcd_members": 3,
    }


def _pct(values: list[float], q: float) -> float | None:
    return values[int(q * (len(values) - 1))] if values else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


if __name__ == "__main__":
    # Positional integers: workflows, batch, clients_per_org, max_wait_ms, max_block_txs.
    names = ("workflows", "batch", "clients_per_org", "max_wait_ms", "max_block_txs")
    options: dict[str, Any] = dict(zip(names, (int(a) for a in sys.argv[1:]), strict=False))
    print(json.dumps(run(**options), indent=2))
