"""Attack 51: a member holds every worker thread of a node with checkpoint requests.

A node cosigns a checkpoint only of blocks it has, and waits up to 2 s for
blocks it has not committed yet (a peer gathering cosignatures asks right
after its own commit). Each wait holds one of the node's worker threads, so
a member asking to cosign checkpoints of blocks nobody has, from 64 threads,
held all of them: every other member's requests that need one waited
behind its two-second waits. Now each organisation has at most
`Limits.checkpoint_waits_per_caller` checkpoint requests under way (429
beyond). The node runs as its own process; another member times its
consistency proofs meanwhile: each answers in well under a second.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import Consortium, Process, spawn, timed_during_flood

from sharechain.api.client import NodeClient
from sharechain.ledger.checkpoints import Checkpoint, origin_for
from sharechain.storage.datadir import DataDir


@pytest.fixture
def process(tmp_path: Path) -> Iterator[Process]:
    yield from spawn(Consortium.make(tmp_path), "hospital-a")


def test_checkpoint_waits_of_one_member_leave_worker_threads_for_the_others(
    process: Process,
) -> None:
    origin = origin_for(DataDir.open(process.consortium.node_dir(process.org)).genesis_hash)
    # A checkpoint of blocks far ahead: the node waits for them, then refuses.
    ahead = Checkpoint(origin, 1_000, bytes(32)).text()

    def flood(c: NodeClient) -> int:
        return c.http.post("/v1/checkpoint/cosign", json={"checkpoint": ahead}).status_code

    def proof(c: NodeClient) -> float:
        t = time.perf_counter()
        reply = c.http.get("/v1/checkpoint/consistency", params={"old": 1, "new": 1})
        assert reply.status_code == 200, reply.text
        return time.perf_counter() - t

    timings, codes = timed_during_flood(flood, proof, process)
    median, worst = statistics.median(timings), max(timings)
    shown = f"median {median * 1000:.0f} ms, slowest {worst * 1000:.0f} ms; flood {dict(codes)}"
    # Without the limit every proof waited 2 to 4 s for a worker thread. With it,
    # tens of milliseconds alone; a few hundred on a machine loaded by other tests
    # (the flood's 429s, thousands a second, take CPU of their own).
    assert median < 1.0, shown
    # The flood was refused past its share, and what it was let wait for was refused.
    assert codes[429] > 0 and codes[409] > 0, shown
    assert set(codes) <= {409, 429}, shown
