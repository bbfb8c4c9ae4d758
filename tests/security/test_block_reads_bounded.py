"""Attack 47: one member's block reads exhaust a node's memory and worker threads.

Any member may read the blocks (`/v1/blocks`, `/v1/blocks/{h}`,
`/v1/sync/blocks`). Blocks can be as large as etcd orders (1.5 MiB), and a
member can fill them with its own transactions (an invalid one stays in its
block). Before this defence every such read took its blocks 256 at a time
from the store (384 MiB at that size), `/v1/blocks?limit=1000` decoded and
hashed every transaction of up to 1,000 blocks to show their headers, and a
member could have as many reads under way as the server has threads: a dozen
at once took the node's memory by gigabytes.

Now the store reads blocks in pages of at most 8 MiB, `/v1/blocks` reads
headers without hashing transactions and stops after 32 MiB of blocks (the
caller asks again from the next height), and each member has at most
`Limits.block_reads_per_caller` reads under way (429 beyond). The node
process also fixes glibc's mmap threshold (`server._keep_large_allocations_mapped`):
otherwise every worker thread that ever read blocks kept its own peak of
block buffers after they were freed. A real node process; the attacker
streams its answers and throws them away.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from api_helpers import Consortium, Process, spawn

from sharechain.api.client import NodeClient
from sharechain.api.quotas import Limits
from sharechain.ledger.transactions import sign_transaction

BLOCKS = 40
NOTE = 990_000
"""A notary record's note far past the contract's limit: refused (`bad_payload`), but
its transaction stays in its block, about 1 MB of it."""
READERS = 24
FLOOD_SECONDS = 4.0


@dataclass
class Filled:
    """A node process holding `BLOCKS` blocks of about 1 MB, and its consortium."""

    proc: Process
    consortium: Consortium

    def client(self, org: str) -> NodeClient:
        return self.proc.client(org, timeout=60.0)


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[Filled]:
    consortium = Consortium.make(tmp_path)
    for proc in spawn(consortium, "hospital-a"):
        key = consortium.keys("hospital-a").signing
        node = Filled(proc, consortium)
        with node.client("hospital-a") as client:
            for i in range(BLOCKS):
                payload = {"digest": hashlib.sha256(bytes([i])).digest(), "note": "x" * NOTE}
                raw = sign_transaction(key, "notary.record", "hospital-a", payload).raw
                (receipt,) = client.submit([raw], timeout=60)
                assert receipt.code == "bad_payload"
        yield node


def _flood(node: Filled, stop: threading.Event, codes: list[int], lock: threading.Lock) -> None:
    """Read blocks as bank-b as fast as the node answers, throwing the answers away."""
    with node.client("bank-b") as client:
        paths = [("/v1/blocks", {"limit": 1000}), ("/v1/sync/blocks", {"limit": 256})]
        turn = 0
        while not stop.is_set():
            path, params = paths[turn % 2]
            turn += 1
            with client._http.stream("GET", path, params=params) as reply:
                for _ in reply.iter_bytes():
                    pass
            with lock:
                codes.append(reply.status_code)


def test_one_member_reading_blocks_at_full_tilt_is_held_to_its_share(filled: Filled) -> None:
    before = filled.proc.peak_rss()
    stop, lock = threading.Event(), threading.Lock()
    codes: list[int] = []
    readers = [
        threading.Thread(target=_flood, args=(filled, stop, codes, lock), daemon=True)
        for _ in range(READERS)
    ]
    for t in readers:
        t.start()
    # Meanwhile another member pages through every header and gets each in order.
    time.sleep(0.5)
    started = time.monotonic()
    with filled.client("hospital-a") as client:
        headers: list[dict[str, object]] = []
        while len(headers) <= BLOCKS:
            page = client.blocks(start=len(headers), limit=1000)
            assert page, "a page of headers came back empty"
            headers += page
        listing = time.monotonic() - started
        time.sleep(max(0.0, FLOOD_SECONDS - listing))
        stop.set()
        for t in readers:
            t.join(60)
        assert [h["height"] for h in headers] == list(range(BLOCKS + 1))
        for low, high in itertools.pairwise(headers):
            assert high["prev_hash"] == low["hash"]
        assert all(h["tx_count"] == 1 for h in headers[1:])
        growth = filled.proc.peak_rss() - before
        per = Limits().block_reads_per_caller
        # Each read under way holds at most 32 MiB of blocks and their encoding, and
        # the allocator keeps some slack: 236 MiB measured alone, 320 MiB beside the
        # rest of the suite on two cores; without the defence, 791 MiB from 12 readers.
        assert growth < per * 110 << 20, f"the node grew by {growth >> 20} MiB"
        assert 200 in codes and 429 in codes, sorted(set(codes))
        # Large blocks come in pages of at most 32 MiB of them, not all 1,000 asked for.
        assert len(client.blocks(start=1, limit=1000)) < BLOCKS
        one = client.block(BLOCKS)
        assert one["hash"] == headers[BLOCKS]["hash"] and len(one["txs"]) == 1
    assert httpx.get(f"{filled.proc.url}/v1/health", timeout=5).status_code == 200
