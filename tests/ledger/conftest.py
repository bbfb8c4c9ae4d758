"""A small chain kit for the ledger tests: deterministic keys, genesis, blocks on demand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ledger_kit import Kit

from sharechain.ledger import state


@pytest.fixture(autouse=True)
def _check_state_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fail any block whose handlers changed a value they read in place (values
    # read are shared within a block, see ledger/state.py).
    monkeypatch.setattr(state, "CHECK_READS", True)


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    k = Kit(tmp_path / "ledger.db")
    yield k
    k.store.close()
