"""Ledger benchmark: validate-and-commit throughput of one peer.

An orderer store builds blocks of signed notary transactions; a second store,
playing a peer, then validates and commits each block exactly as a node does
when blocks arrive (every signature verified, in parallel over all cores;
hash links, orderer signature, Merkle root; re-execution reproducing the
`state_delta_hash`; one atomic SQLite commit per block). Finally the peer's
whole chain is verified from genesis. Signing the transactions is not timed:
clients sign, peers validate.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from sharechain.contracts import default_registry
from sharechain.crypto.keyfile import OrgKeys
from sharechain.ledger.blocks import encode_block
from sharechain.ledger.chain import Ledger, verify_chain
from sharechain.ledger.genesis import Genesis, genesis_block
from sharechain.ledger.identities import Organisation
from sharechain.ledger.pipeline import commit_stream, start_workers
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import sign_transaction

__all__ = ["run"]


def run(transactions: int = 40_000, block_size: int = 2_000, orgs: int = 8) -> dict[str, Any]:
    """Measure and return `commit_tx_per_s` and `verify_tx_per_s`."""
    keys = [OrgKeys.generate(f"org-{i}") for i in range(orgs)]
    genesis = Genesis(
        "bench",
        tuple(
            Organisation(k.org, ("member",), k.signing.public_key, k.encryption_public)
            for k in keys
        ),
        {},
        1,
    )
    raws = [
        sign_transaction(
            keys[i % orgs].signing,
            "notary.record",
            keys[i % orgs].org,
            {"digest": hashlib.sha256(i.to_bytes(8, "big")).digest(), "note": f"file {i}"},
            now=lambda: 0.0,  # signed at the chain's start: the blocks' times are 10 ms on
        ).raw
        for i in range(transactions)
    ]
    registry = default_registry()
    with tempfile.TemporaryDirectory(prefix="sharechain-bench-") as tmp:
        orderer = Ledger(Store(Path(tmp) / "orderer.db"), registry)
        peer = Ledger(Store(Path(tmp) / "peer.db"), registry)
        g = genesis_block(genesis)
        orderer.commit(g)
        peer.commit(g)
        blocks = []
        t0 = time.perf_counter()
        for i in range(0, transactions, block_size):
            block, ex = orderer.build_block(
                raws[i : i + block_size], orderer="org-0", key=keys[0].signing, timestamp=10 + i
            )
            data = encode_block(block)
            orderer.commit(block, ex, data)
            blocks.append(data)
        order_s = time.perf_counter() - t0

        start_workers()  # a running peer has its workers up already
        t0, cpu = time.perf_counter(), time.process_time()
        for _ in commit_stream(peer, blocks):
            pass
        commit_s = time.perf_counter() - t0
        cpu = time.process_time() - cpu

        t0 = time.perf_counter()
        report = verify_chain(peer.store, registry)
        verify_s = time.perf_counter() - t0
        if not report.ok or orderer.head != peer.head:
            raise RuntimeError(f"benchmark chain does not verify: {report.reason}")
        orderer.store.close()
        peer.store.close()
    return {
        "ledger_transactions": transactions,
        "ledger_block_size": block_size,
        "order_tx_per_s": round(transactions / order_s),
        "commit_tx_per_s": round(transactions / commit_s),
        # CPU of this process per transaction (the signature workers' is not in it).
        "commit_cpu_us_per_tx": round(cpu / transactions * 1e6, 1),
        "verify_tx_per_s": round(transactions / verify_s),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
