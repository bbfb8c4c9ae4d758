"""Benchmark: opening an embedded data directory of 1M state rows and 1M transactions.

Opening checks the store against its seal (`sharechain.ledger.seal`): the
seal's tag, the state digest recomputed from every state row (one HMAC-SHA256
per row), the index row counts and the newest blocks. The goal is under 2 s.

Building such a store through contracts would take an hour, and the open reads
nothing but rows, counts and the newest blocks. So a real consortium is
created and a few real blocks committed (the head is signed, the seal is the
sealer's), then synthetic rows are grafted straight into the SQLite tables
(`state`: records of a few hundred bytes; `state_idx`: long keys, one-byte
values, as the contracts' indexes; `txs` and `history`), and the store is
sealed again over them as a full verification would leave it.

The same store is then opened alternately with the state digest summed by the
C extension (`open_1m_s`, the median) and by the pure-Python reference that
runs where the extension is not built (`open_1m_python_s`), side by side; CPU
seconds beside the wall-clock ones, and their ratio (`open_1m_speedup`), since
the machine is shared. About 20 s in all, most of it the build.

Run `python -m sharechain.bench.store_open`; it prints JSON.
"""

from __future__ import annotations

import hashlib
import json
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sharechain.contracts import notary
from sharechain.ledger import seal
from sharechain.ledger.store import Store
from sharechain.sharing.embedded import Embedded
from sharechain.storage.datadir import OrgSpec, init_consortium

__all__ = ["build", "run"]

GOAL_S = 2.0
"""Correctness fix 2 of issue 13: opening a store of 1M transactions stays under it."""

_ORGS = (OrgSpec("hospital-a", ("member", "admin")), OrgSpec("regulator", ("supervisor",)))
_BATCH = 50_000


def _state_rows(n: int, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    kinds = ("dataset", "grant", "request", "profile")
    for i in range(n):
        # Keys in insertion order keep the build fast; the scan reads rowid order anyway.
        yield (
            f"{kinds[i % 4]}/{i:012d}{rng.getrandbits(64):016x}",
            rng.randbytes(rng.randrange(120, 600)),
        )


def _index_rows(n: int, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    for i in range(n):
        yield f"idx/grant-by-grantee/org-{i % 50:02d}/{i:012d}{rng.getrandbits(128):032x}", b"\x01"


def build(path: Path, *, state_rows: int, index_rows: int, transactions: int) -> None:
    """A consortium in `path` with real blocks, then grafted rows, sealed over them."""
    init_consortium(path, _ORGS, consortium="bench")
    with Embedded(path) as emb:
        for i in range(3):
            emb.submit("hospital-a", notary.RECORD, {"digest": hashlib.sha256(b"%d" % i).digest()})
    rng = random.Random(13)
    store = Store(path / "ledger.db", durable=False)
    try:
        with store._lock:
            db = store._db
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO state(key, value) VALUES (?, ?)", _state_rows(state_rows, rng)
            )
            db.executemany("INSERT INTO state_idx VALUES (?, ?)", _index_rows(index_rows, rng))
            for start in range(0, transactions, _BATCH):
                ids = [b"\xff" + i.to_bytes(31, "big") for i in range(start, start + _BATCH)]
                db.executemany(
                    "INSERT INTO txs VALUES (?, 1, ?, 'notary.record', 'hospital-a', 'valid')",
                    ((tx, i) for i, tx in enumerate(ids, start)),
                )
                db.executemany(
                    "INSERT INTO history VALUES ('org/grafted', 1, ?, ?)",
                    ((i, tx) for i, tx in enumerate(ids, start)),
                )
            db.execute("COMMIT")
        key = seal.seal_key(store)
        assert key is not None  # made by the first open
        seal.reseal(store, key)
    finally:
        store.close()


@contextmanager
def _python_digest() -> Iterator[None]:
    """The state digest summed in Python, as where the C extension is not built."""
    fast, seal._FAST = seal._FAST, None
    try:
        yield
    finally:
        seal._FAST = fast


def _open(path: Path) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    Embedded(path).close()
    return time.perf_counter() - t0, time.process_time() - c0


def run(
    *,
    state_rows: int = 400_000,
    index_rows: int = 600_000,
    transactions: int = 1_000_000,
    repeats: int = 3,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sharechain-open-") as tmp:
        path = Path(tmp) / "c"
        t0 = time.perf_counter()
        build(path, state_rows=state_rows, index_rows=index_rows, transactions=transactions)
        built = time.perf_counter() - t0
        _open(path)  # warm the page cache: both variants then read it warm
        fast: list[tuple[float, float]] = []
        slow: list[tuple[float, float]] = []
        for i in range(repeats):
            fast.append(_open(path))
            if i < 2:  # the reference is slow; two runs of it suffice
                with _python_digest():
                    slow.append(_open(path))
    wall = statistics.median(w for w, _ in fast)
    python_wall = statistics.median(w for w, _ in slow)
    cpu = statistics.median(c for _, c in fast)
    python_cpu = statistics.median(c for _, c in slow)
    return {
        "open_1m_s": round(wall, 3),
        "open_1m_goal_s": GOAL_S,
        "open_1m_cpu_s": round(cpu, 3),
        "open_1m_python_s": round(python_wall, 3),
        "open_1m_python_cpu_s": round(python_cpu, 3),
        # In CPU seconds: on a shared machine the wall-clock ratio follows the load.
        "open_1m_speedup": round(python_cpu / cpu, 2),
        "open_1m_extension": seal._FAST is not None,
        "open_1m_rows": {"state": state_rows, "state_idx": index_rows, "txs": transactions},
        "open_1m_build_s": round(built, 1),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
