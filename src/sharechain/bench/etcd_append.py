"""Benchmark: how fast can one writer append blocks to a local 3-member etcd cluster?

Each append is one compare-and-set transaction that etcd replicates to a
majority and writes to disk before answering, so a single writer's rate is
one block per round trip plus fsync. Appends cannot be pipelined: height h+1
is accepted only once h is in the log. The figures bound the block rate of
the `etcd` ordering mode (multiply by transactions per block for tx/s).

Run `python -m sharechain.bench.etcd_append`; it prints JSON.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from sharechain.ordering.etcd_log import EtcdLog
from sharechain.ordering.etcd_process import EtcdCluster

__all__ = ["run"]

_WARMUP = 5


def run(
    count: int = 200,
    blob_bytes: int = 256 * 1024,
    members: int = 3,
    *,
    clock: Callable[[], float] = time.perf_counter,
    rng: Callable[[int], bytes] = os.urandom,
) -> dict[str, Any]:
    """Append `count` blobs of `blob_bytes` one after the other; report rate and latency.

    Starts (and stops) its own cluster in a temporary directory. `rng`
    produces the blob contents; `clock` measures time in seconds.
    """
    blob = rng(blob_bytes)
    with (
        tempfile.TemporaryDirectory(prefix="sharechain-etcd-bench-") as base_dir,
        EtcdCluster(base_dir, members=members) as cluster,
        EtcdLog(cluster.endpoints, max_block_bytes=cluster.max_request_bytes - 8192) as log,
    ):
        for height in range(_WARMUP):
            log.append(height, blob)
        latencies: list[float] = []
        started = clock()
        for height in range(_WARMUP, _WARMUP + count):
            before = clock()
            if not log.append(height, blob):
                raise RuntimeError(f"height {height} was taken although this is the only writer")
            latencies.append(clock() - before)
        elapsed = clock() - started

        read_started = clock()
        read_bytes = sum(len(data) for _, data in log.range(_WARMUP))
        read_elapsed = clock() - read_started
        version = next((s.version for s in log.status() if s.reachable), "")

    mib = 1024 * 1024
    return {
        "benchmark": "etcd_append",
        "etcd_version": version,
        "members": members,
        "blob_bytes": blob_bytes,
        "appends": count,
        "seconds": round(elapsed, 3),
        "appends_per_s": round(count / elapsed, 1),
        "mib_per_s": round(count * blob_bytes / mib / elapsed, 2),
        "latency_ms": {
            "p50": round(_percentile(latencies, 50) * 1000, 2),
            "p99": round(_percentile(latencies, 99) * 1000, 2),
            "max": round(max(latencies) * 1000, 2),
        },
        "range_read_mib_per_s": round(read_bytes / mib / read_elapsed, 1),
    }


def _percentile(values: list[float], percent: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
