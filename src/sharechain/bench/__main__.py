"""`make bench`: run every benchmark and print one JSON document.

Each benchmark module has `run() -> dict`; a failing one reports its error
under `errors` and the others still run.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from typing import Any

BENCHMARKS = (
    # The network first: it measures wall-clock throughput across seven
    # processes, and the I/O-heavy benchmarks (a 1M-transaction audit store, a
    # 1 GiB share) leave this VM handing freed memory back to its host, which
    # cost a network run right after them about 10% more CPU per transaction.
    # The share before the audit store: the disk was still writing back the
    # audit store's database when the share started, and a fetch is disk-bound.
    "sharechain.bench.network",
    "sharechain.bench.ledger",
    "sharechain.bench.catchup",
    "sharechain.bench.workflow",
    "sharechain.bench.commit_scale",
    "sharechain.bench.aead",
    "sharechain.bench.share",
    "sharechain.bench.audit_size",
    "sharechain.bench.store_open",
    "sharechain.bench.psi",
    "sharechain.bench.aggregation",
    "sharechain.bench.console",
    "sharechain.bench.mask",
    "sharechain.bench.proofs",
    "sharechain.bench.codec",
)


def main(names: list[str]) -> int:
    out: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for module in BENCHMARKS:
        short = module.rsplit(".", 1)[1]
        if names and short not in names:
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError:
            errors[short] = "not built yet"
            continue
        print(f"running {short} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            out.update(mod.run())
        except Exception as exc:
            traceback.print_exc()
            errors[short] = f"{type(exc).__name__}: {exc}"
        print(f"  {short}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    if errors:
        out["errors"] = errors
    print(json.dumps(out, indent=2, sort_keys=True))
    return 1 if errors and not out.keys() - {"errors"} else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
