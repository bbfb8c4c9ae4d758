"""Audit trails stay fast on a large ledger: index lookups, no scans.

The wall-clock figure (a trail in 13 ms median at 100,000 datasets / 1,000,000
transactions) is `python -m sharechain.bench.audit_size`'s, not a timed test's. Here
the work SQLite does for one dataset's trail is counted (its virtual-machine steps,
through a progress handler) on two ledgers, one ten times the other's size with the
same trail length per dataset: a lookup by index costs about the same on both, a
scan ten times more.
"""

from __future__ import annotations

from pathlib import Path

from sharechain.bench.audit_size import build
from sharechain.contracts import queries
from sharechain.ledger.proofs import verify_tx_proof
from sharechain.ledger.store import Store

_STEP = 100  # SQLite instructions per progress-handler call


def _trail_costs(path: Path, *, datasets: int) -> list[int]:
    """SQLite instructions (in units of `_STEP`) to read each of 10 datasets' trails."""
    ids = build(path, datasets=datasets, transactions=10 * datasets)
    store = Store(path)
    try:
        costs = []
        for ds in ids[:: datasets // 10]:
            calls = [0]

            def count(calls: list[int] = calls) -> int:
                calls[0] += 1
                return 0  # 0: go on

            store._db.set_progress_handler(count, _STEP)
            trail = queries.audit(store, ds=ds)
            store._db.set_progress_handler(None, _STEP)
            costs.append(calls[0])
            assert len(trail) >= 1
            for entry in trail:
                assert entry.proof is not None
                verify_tx_proof(entry.proof, store.block_meta(entry.height).hash)  # type: ignore[union-attr]
        return costs
    finally:
        store.close()


def test_one_datasets_audit_trail_costs_the_same_on_a_ledger_ten_times_larger(
    tmp_path: Path,
) -> None:
    small = _trail_costs(tmp_path / "small.db", datasets=300)
    large = _trail_costs(tmp_path / "large.db", datasets=3000)
    assert sum(small) > 0
    # Same trail lengths, ten times the rows: a scan would cost about 10x.
    assert sum(large) < 2 * sum(small), (small, large)
