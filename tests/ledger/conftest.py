"""A small chain kit for the ledger tests: deterministic keys, genesis, blocks on demand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ledger_kit import Kit


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    k = Kit(tmp_path / "ledger.db")
    yield k
    k.store.close()
