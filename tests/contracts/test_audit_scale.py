"""Audit trails stay fast on a large ledger (index lookups, no scans)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from sharechain.bench.audit_size import build
from sharechain.contracts import queries
from sharechain.ledger.proofs import verify_tx_proof
from sharechain.ledger.store import Store


@pytest.mark.slow
def test_one_datasets_audit_trail_is_fast_on_a_large_ledger(tmp_path: Path) -> None:
    # A fifth of the benchmark's 100,000 datasets / 1,000,000 transactions
    # (`python -m sharechain.bench.audit_size`), to keep `make test` short.
    ids = build(tmp_path / "ledger.db", datasets=20_000, transactions=200_000)
    store = Store(tmp_path / "ledger.db")
    try:
        times = []
        for ds in ids[::1000]:
            t = time.perf_counter()
            trail = queries.audit(store, ds=ds)
            times.append(time.perf_counter() - t)
            assert len(trail) >= 1
            for entry in trail:
                assert entry.proof is not None
                verify_tx_proof(entry.proof, store.block_meta(entry.height).hash)  # type: ignore[union-attr]
        assert statistics.median(times) < 0.050
    finally:
        store.close()
