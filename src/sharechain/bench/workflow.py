"""Benchmark: the data-sharing workflow committed by one peer, in tx/s.

The mix is the regulated flow: a member requests a dataset, the owner and
the supervisor approve (the second approval issues the grant), the owner
releases the key to the grantee, and the grantee signs a read receipt. Five
transactions per workflow, pipelined so that block b holds the requests of
batch b, the first approvals of batch b-1, and so on, as a busy consortium
would.

Like a peer, the measurement is `Ledger.commit(block)` of blocks built by
another node (the orderer, here `Ledger.build_block` on a second store): full
validation (hash links, orderer signature, Merkle root, every transaction
signature) and re-execution of every contract, then the atomic SQLite commit.

Run `python -m sharechain.bench.workflow`; it prints JSON with
`workflow_tx_per_s` and `workflow_cpu_us_per_tx` (process CPU time, all
threads, per transaction: the figure to compare on a loaded machine).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sharechain.contracts import default_registry
from sharechain.crypto.keyfile import OrgKeys
from sharechain.ledger.blocks import Block
from sharechain.ledger.chain import Ledger
from sharechain.ledger.genesis import Genesis, genesis_block
from sharechain.ledger.identities import Organisation
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import sign_transaction
from sharechain.sharing.records import derive_id

__all__ = ["run"]

OWNER, SUPERVISOR = "provider", "regulator"
STAGES = 5


def _digest(n: int) -> bytes:
    return n.to_bytes(32, "big")


def run(
    *,
    workflows_per_block: int = 200,
    blocks: int = 25,
    requesters: int = 10,
    now: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Build the workflow blocks, then time a second peer committing them."""
    orgs = {o: OrgKeys.generate(o) for o in (OWNER, SUPERVISOR)}
    orgs |= {f"member-{i}": OrgKeys.generate(f"member-{i}") for i in range(requesters)}
    roles = {OWNER: ("member",), SUPERVISOR: ("member", "supervisor", "admin")}
    genesis = genesis_block(
        Genesis(
            "bench",
            tuple(
                Organisation(
                    o, roles.get(o, ("member",)), k.signing.public_key, k.encryption_public
                )
                for o, k in orgs.items()
            ),
            # thresholds above the benchmark's rates: no alert interrupts the flow
            {"risk": {"max_requests": 10**9, "max_key_releases": 10**9}},
            int(now() * 1000),
        )
    )
    with tempfile.TemporaryDirectory(prefix="sharechain-bench-") as tmp:
        orderer = Ledger(Store(Path(tmp) / "orderer.db", durable=False), default_registry())
        peer = Ledger(Store(Path(tmp) / "peer.db"), default_registry())
        for ledger in (orderer, peer):
            ledger.commit(genesis)
        clock = [now()]

        def sign(org: str, type: str, payload: dict[str, Any]) -> bytes:
            return sign_transaction(orgs[org].signing, type, org, payload, now=lambda: clock[0]).raw

        def build(raws: list[bytes]) -> Block:
            clock[0] += 0.05
            block, ex = orderer.build_block(
                raws, orderer=OWNER, key=orgs[OWNER].signing, timestamp=int(clock[0] * 1000)
            )
            orderer.commit(block, ex)
            bad = [r for r in block.results if r.code != "valid"]
            if bad:
                raise RuntimeError(f"benchmark transaction refused: {bad[0]}")
            return block

        # Setup (not timed): one dataset per requester slot.
        datasets: list[str] = []
        setup: list[bytes] = []
        for i in range(workflows_per_block):
            raw = sign(
                OWNER,
                "dataset.register",
                {
                    "title": f"dataset {i}",
                    "tags": ["bench"],
                    "plaintext_digest": _digest(i),
                    "ciphertext_digest": _digest(i + 1),
                    "size": 1 << 20,
                },
            )
            setup.append(raw)
            datasets.append(derive_id("dataset", hashlib.sha256(raw).digest()))
        setup_block = build(setup)

        # The workflow blocks, pipelined: stage s of batch b goes in block b + s.
        pending: list[list[bytes]] = [[] for _ in range(blocks + STAGES)]
        for b in range(blocks):
            for w in range(workflows_per_block):
                member = f"member-{(b * workflows_per_block + w) % requesters}"
                req = sign(
                    member,
                    "access.request",
                    {"dataset": datasets[w], "purpose": "treatment", "duration": 86_400_000},
                )
                rid = derive_id("request", hashlib.sha256(req).digest())
                approve2 = sign(SUPERVISOR, "access.approve", {"request": rid})
                gid = derive_id("grant", hashlib.sha256(approve2).digest())
                pending[b].append(req)
                pending[b + 1].append(sign(OWNER, "access.approve", {"request": rid}))
                pending[b + 2].append(approve2)
                pending[b + 3].append(
                    sign(
                        OWNER,
                        "grant.key-release",
                        {"grant": gid, "to": member, "epoch": 1, "wrapped_key_digest": _digest(7)},
                    )
                )
                pending[b + 4].append(
                    sign(member, "grant.read", {"grant": gid, "digest": _digest(w)})
                )
        timed_blocks = [build(raws) for raws in pending if raws]

        peer.commit(setup_block)
        txs = sum(len(b.txs) for b in timed_blocks)
        start, cpu = time.perf_counter(), time.process_time()
        for block in timed_blocks:
            peer.commit(block)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        same = peer.store.head() == orderer.store.head()
        orderer.store.close()
        peer.store.close()
    return {
        "workflow_tx_per_s": round(txs / elapsed),
        "workflow_transactions": txs,
        "workflow_blocks": len(timed_blocks),
        "workflow_seconds": round(elapsed, 3),
        # CPU of this process (all its threads) per transaction: comparable
        # across runs when the machine is loaded, unlike wall time.
        "workflow_cpu_us_per_tx": round(cpu / txs * 1e6, 1),
        "workflow_state_roots_match": same,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
