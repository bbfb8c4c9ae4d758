"""Benchmark: one dataset's audit trail on a large ledger, in milliseconds.

Builds a store of `datasets` dataset records and `transactions` transactions
(blocks of 1,000; each transaction concerns one dataset and its sender, as
the contracts' history rows do), written straight through
`Store.commit_block` with synthetic blocks (no signatures or contract
execution, which would only make the build slow, not the query). Then times
`queries.audit(store, ds=...)` for random datasets: history-index lookup,
transaction rows, block decoding and an RFC 9162 inclusion proof per entry.

Run `python -m sharechain.bench.audit_size`; it prints JSON with
`audit_trail_ms` (median) and `audit_trail_p99_ms`.
"""

from __future__ import annotations

import hashlib
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sharechain.codec import encode
from sharechain.contracts import queries
from sharechain.contracts.policies import Policy, policy_to_value
from sharechain.crypto.merkle import merkle_root
from sharechain.ledger.blocks import BlockHeader, TxResult, encode_block, make_block, results_root
from sharechain.ledger.store import Store

__all__ = ["build", "run"]

T0 = 1_700_000_000_000
TYPES = ("access.request", "access.approve", "grant.key-release", "grant.read")


def _dataset_value(i: int, ds: str) -> bytes:
    return encode(
        {
            "id": ds,
            "owner": f"org-{i % 50}",
            "title": f"dataset {i}",
            "description": "",
            "tags": ["bench"],
            "schema": [],
            "classification": "internal",
            "plaintext_digest": bytes(32),
            "ciphertext_digest": bytes(32),
            "size": 1,
            "segment_root": b"",
            "custody": "owner",
            "holders": [],
            "policy": policy_to_value(Policy()),
            "status": "active",
            "version": 1,
            "previous": "",
            "next": "",
            "parents": [],
            "transformation": "",
            "created_at": T0,
            "height": 1,
            "tx_id": bytes(32),
        }
    )


def build(path: Path, *, datasets: int, transactions: int, per_block: int = 1000) -> list[str]:
    """Fill a store at `path`; returns the dataset ids."""
    rng = random.Random(7)
    store = Store(path, durable=False)
    ids = [hashlib.sha256(b"ds%d" % i).hexdigest() for i in range(datasets)]
    prev = bytes(32)
    height = 0
    writes = {f"dataset/{ds}": _dataset_value(i, ds) for i, ds in enumerate(ids)}
    made = 0
    while made < transactions:
        n = min(per_block, transactions - made)
        txs, rows, hist = [], [], []
        for i in range(n):
            k = made + i
            ds = ids[k % datasets] if k < datasets else ids[rng.randrange(datasets)]
            sender = f"org-{rng.randrange(50)}"
            body = {
                "type": TYPES[k % len(TYPES)],
                "sender": sender,
                "nonce": k.to_bytes(16, "big"),
                "created_at": k,
                "payload": {},
            }
            raw = encode([1, encode(body), bytes(32), bytes(64)])
            tx_id = hashlib.sha256(raw).digest()
            txs.append(raw)
            rows.append((tx_id, i, TYPES[k % len(TYPES)], sender, "valid"))
            hist += [(f"dataset/{ds}", i, tx_id), (f"org/{sender}", i, tx_id)]
        header = BlockHeader(
            height,
            prev,
            merkle_root([r[0] for r in rows]),
            results_root([r[0] for r in rows], [TxResult("valid", "")] * n),
            bytes(32),
            T0 + height * 1000,
            "org-0",
        )
        block = make_block(header, b"", txs, [TxResult("valid", "")] * n)
        store.commit_block(
            height=height,
            block_hash=header.hash(),
            state_root=bytes(32),
            timestamp=header.timestamp,
            data=encode_block(block),
            txs=rows,
            writes=writes,
            history=hist,
        )
        writes = {}
        prev = header.hash()
        height += 1
        made += n
    store.close()
    return ids


def run(
    *, datasets: int = 100_000, transactions: int = 1_000_000, samples: int = 200
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sharechain-audit-") as tmp:
        path = Path(tmp) / "ledger.db"
        t = time.perf_counter()
        ids = build(path, datasets=datasets, transactions=transactions)
        built = time.perf_counter() - t
        store = Store(path)
        rng = random.Random(11)
        times, entries = [], 0
        for ds in rng.sample(ids, min(samples, len(ids))):
            t = time.perf_counter()
            trail = queries.audit(store, ds=ds)
            times.append((time.perf_counter() - t) * 1000)
            entries += len(trail)
        store.close()
    times.sort()
    return {
        "audit_trail_ms": round(statistics.median(times), 2),
        "audit_trail_p99_ms": round(times[int(len(times) * 0.99) - 1], 2),
        "audit_trail_entries_avg": round(entries / len(times), 1),
        "audit_datasets": datasets,
        "audit_transactions": transactions,
        "audit_build_s": round(built, 1),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
