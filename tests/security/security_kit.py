"""Shared helpers of the security tests: the contracts' test consortium, reused.

`tests/contracts/contracts_kit.py` builds a five-organisation consortium on the
embedded default with a settable clock; the attacks here run against it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contracts"))

from contracts_kit import Clock, Net, digest

from sharechain.ledger import state

__all__ = ["Clock", "Net", "consortium", "digest"]


@contextmanager
def consortium(path: Path) -> Iterator[Net]:
    """A fresh consortium; handlers that change a value they read in place fail the block."""
    checking = state.CHECK_READS
    state.CHECK_READS = True
    net = Net(path / "chain", Clock(), None)
    try:
        yield net
    finally:
        net.emb.close()
        state.CHECK_READS = checking
