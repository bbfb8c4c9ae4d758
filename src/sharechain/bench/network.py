"""Benchmark: signed transactions through the API, committed on 4 peers ordered by 3 etcd members.

`python -m sharechain.bench.network` starts a local network (4 node processes,
3 etcd members, all on 127.0.0.1), pre-signs notary transactions for every
organisation, and has one client thread per organisation submit batches
through its own node's `/v1/txs` (one signed HTTP request per batch, waiting
for the receipts). Throughput counts transactions committed on *all four*
peers between the first submission and the moment the slowest peer reached
the final height; latency is per transaction, from its batch's submission to
its receipt from the node it was submitted to (the commit on that node).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sharechain.ledger.transactions import sign_transaction
from sharechain.node.launcher import LocalNetwork

__all__ = ["run"]


def _presign(net: LocalNetwork, org: str, count: int, tag: int) -> list[bytes]:
    key = net.keys(org).signing
    return [
        sign_transaction(
            key, "notary.record", org, {"digest": tag.to_bytes(4, "big") + i.to_bytes(28, "big")}
        ).raw
        for i in range(count)
    ]


def run(
    *,
    txs: int = 40_000,
    batch: int = 500,
    clients_per_org: int = 2,
    base: Path | None = None,
) -> dict[str, Any]:
    """Run the benchmark; returns `network_tx_per_s`, `network_p99_ms` and details."""
    with tempfile.TemporaryDirectory(prefix="sharechain-bench-") as tmp:
        net = LocalNetwork(
            (base or Path(tmp)) / "net",
            orgs=4,
            ordering="etcd",
            node_options=(
                "--log-level",
                "warning",
                "--max-wait-ms",
                "20",
                "--max-block-txs",
                "4000",
                "--no-verify",
            ),
        )
        net.up(timeout=90)
        try:
            return _measure(net, txs, batch, clients_per_org)
        finally:
            net.down()


def _measure(net: LocalNetwork, txs: int, batch: int, clients_per_org: int) -> dict[str, Any]:
    orgs = [n.org for n in net.nodes]
    workers = [(org, k) for org in orgs for k in range(clients_per_org)]
    per_worker = txs // len(workers)
    work = {(org, k): _presign(net, org, per_worker, tag=i) for i, (org, k) in enumerate(workers)}
    latencies: list[float] = []
    codes: dict[str, int] = {}
    lock = threading.Lock()
    errors: list[str] = []

    def worker(org: str, k: int) -> None:
        raws = work[(org, k)]
        with net.client(org, timeout=60) as client:
            for i in range(0, len(raws), batch):
                chunk = raws[i : i + batch]
                t0 = time.perf_counter()
                try:
                    receipts = client.submit(chunk, timeout=60)
                except Exception as exc:  # a failed batch is reported, not fatal
                    errors.append(f"{org}: {exc}")
                    continue
                dt = time.perf_counter() - t0
                with lock:
                    latencies.extend([dt] * len(receipts))
                    for r in receipts:
                        codes[r.code] = codes.get(r.code, 0) + 1

    with net.client(orgs[0]) as c:
        start_height = int(c.status()["height"])
    threads = [threading.Thread(target=worker, args=w) for w in workers]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with net.client(orgs[0]) as c:
        final = int(c.status()["height"])
    # Wait until every peer holds the final height (bounded).
    deadline = time.monotonic() + 60
    for org in orgs:
        with net.client(org) as c:
            while int(c.status()["height"]) < final and time.monotonic() < deadline:
                time.sleep(0.01)
    elapsed = time.perf_counter() - started
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
    latencies.sort()
    p99 = latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan")
    return {
        "network_tx_per_s": round(committed / elapsed, 1),
        "network_p99_ms": round(p99 * 1000, 1),
        "network_p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "transactions": committed,
        "valid": codes.get("valid", 0),
        "blocks": final - start_height,
        "seconds": round(elapsed, 2),
        "batch": batch,
        "clients": len(workers),
        "errors": errors[:5],
        "appends_won_lost": races,
        "peers": len(orgs),
        "etcd_members": 3,
    }


if __name__ == "__main__":
    txs = int(sys.argv[1]) if len(sys.argv) > 1 else 40_000
    print(json.dumps(run(txs=txs), indent=2))
