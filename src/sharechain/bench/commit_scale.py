"""Benchmark: a peer's commits once its store holds a million state keys.

A consortium that runs for years has a large world state, and every block
inserts its new keys at random places in the state's key index (and its
history and transaction ids in theirs). Once an index is larger than one
block's keys, each key dirties a page of its own, which the COMMIT writes to
the WAL and a checkpoint copies back, whatever the page's size: the bytes a
peer writes per transaction, and the CPU that writing costs, grow with the
page size. `sharechain.bench.ledger` starts from an empty store and does not
see it.

Building a million keys through contracts would take many minutes, so two
peers are made as `sharechain.bench.store_open` does: a real genesis
committed, then synthetic rows grafted straight into the tables (`state`:
`state_keys` notary-shaped keys with 150-byte values; `history` as many rows;
`txs` half as many). One peer's file has the pages this version creates
(`store.PAGE_SIZE`, 4 KiB), the other the 16 KiB pages of stores made before
it. Both then validate and commit the same blocks of signed notary
transactions through the block pipeline (`commit_stream`, signature workers
included), side by side in one run:

- `scale_commit_tx_per_s`, `scale_commit_cpu_us_per_tx` (this process; the
  workers' in `scale_worker_cpu_us_per_tx`), `scale_write_kib_per_tx` (what
  this process wrote: the WAL, the checkpoints, the blocks handed to the
  workers), for the store this version makes;
- the same with `_16k` for the older page size, and `scale_speedup` (tx/s)
  and `scale_write_ratio` (KiB written) of the new store over the old.

About a minute, most of it grafting the rows. Run `python -m
sharechain.bench.commit_scale`; it prints JSON.
"""

from __future__ import annotations

import json
import random
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from sharechain.bench.ledger import io_written, notary_transactions, order_blocks
from sharechain.contracts import default_registry
from sharechain.ledger.chain import Ledger
from sharechain.ledger.genesis import genesis_block
from sharechain.ledger.pipeline import commit_stream, start_workers, workers_cpu_seconds
from sharechain.ledger.store import PAGE_SIZE, Store

__all__ = ["OLD_PAGE_SIZE", "empty_database", "run"]

OLD_PAGE_SIZE = 16384
"""The page size of stores made before `PAGE_SIZE` (they keep it)."""

_BATCH = 50_000


def run(
    state_keys: int = 1_000_000, block_size: int = 400, blocks: int = 30, orgs: int = 8
) -> dict[str, Any]:
    """Commit the same blocks on a grafted 4 KiB store and a 16 KiB one; return the figures."""
    n = block_size * blocks
    keys, genesis, raws = notary_transactions(n, orgs, salt=b"scale")
    registry = default_registry()
    g = genesis_block(genesis)
    out: dict[str, Any] = {
        "scale_state_keys": state_keys,
        "scale_block_txs": block_size,
        "scale_transactions": n,
        "scale_page_size": PAGE_SIZE,
    }
    with tempfile.TemporaryDirectory(prefix="sharechain-bench-") as tmp:
        orderer = Ledger(Store(Path(tmp) / "orderer.db", durable=False), registry)
        orderer.commit(g)
        data = order_blocks(orderer, raws, block_size, keys[0].signing)
        head = orderer.head
        orderer.store.close()
        start_workers()  # a running peer has its workers up already
        for page, suffix in ((OLD_PAGE_SIZE, "_16k"), (PAGE_SIZE, "")):
            path = Path(tmp) / f"peer-{page}.db"
            empty_database(path, page)
            peer = Ledger(Store(path), registry)
            peer.commit(g)
            _graft(path, state_keys)
            figures = _commit(peer, data, n)
            reached = peer.head
            peer.store.close()
            if reached != head:
                raise RuntimeError(f"the {page}-byte peer did not reach the orderer's head")
            out |= {f"{name}{suffix}": value for name, value in figures.items()}
            path.unlink()
    out["scale_speedup"] = round(out["scale_commit_tx_per_s"] / out["scale_commit_tx_per_s_16k"], 2)
    out["scale_write_ratio"] = round(
        out["scale_write_kib_per_tx"] / out["scale_write_kib_per_tx_16k"], 3
    )
    return out


def empty_database(path: Path, page_size: int) -> None:
    """An empty database whose page size is fixed at `page_size` (as an older version made it)."""
    db = sqlite3.connect(path)
    try:
        db.execute(f"PRAGMA page_size={page_size}")
        db.execute("CREATE TABLE fix_page_size (a)")  # the first write fixes it
        db.execute("DROP TABLE fix_page_size")
        db.commit()
        found = db.execute("PRAGMA page_size").fetchone()[0]
    finally:
        db.close()
    if found != page_size:
        raise RuntimeError(f"SQLite made {found}-byte pages, not {page_size}")


def _graft(path: Path, state_keys: int) -> None:
    """Synthetic rows: `state_keys` state keys and history rows, half as many transactions."""
    rng = random.Random(19)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN")
        for table, width, count, row in (
            ("state (key, value)", 2, state_keys, lambda: (_key(rng), rng.randbytes(150))),
            ("history", 4, state_keys, lambda: (_key(rng), 1, 0, rng.randbytes(32))),
            ("txs", 6, state_keys // 2, lambda: (rng.randbytes(32), 1, 0, "x", "org-0", "ok")),
        ):
            q = f"INSERT INTO {table} VALUES ({','.join('?' * width)})"
            for i in range(0, count, _BATCH):
                # Sorted batches build the B-trees quickly; their shape is the same.
                db.executemany(q, sorted(row() for _ in range(min(_BATCH, count - i))))
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


def _key(rng: random.Random) -> str:
    return f"notary/{rng.randbytes(32).hex()}"


def _commit(peer: Ledger, blocks: list[bytes], n: int) -> dict[str, float | None]:
    """Commit `blocks` (`n` transactions) through the pipeline; the figures of that."""
    workers = workers_cpu_seconds()
    written = io_written()
    t0, cpu = time.perf_counter(), time.process_time()
    for _ in commit_stream(peer, blocks):
        pass
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu
    written = io_written() - written
    after = workers_cpu_seconds()
    return {
        "scale_commit_tx_per_s": round(n / wall),
        "scale_commit_cpu_us_per_tx": round(cpu / n * 1e6, 1),
        "scale_worker_cpu_us_per_tx": (
            None if after is None or workers is None else round((after - workers) / n * 1e6, 1)
        ),
        "scale_write_kib_per_tx": round(written / n / 1024, 1),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
