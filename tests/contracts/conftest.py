"""Fixtures: a consortium per test (see contracts_kit)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from contracts_kit import Clock, Net

from sharechain.ledger import state


@pytest.fixture(autouse=True)
def _check_state_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fail any block whose handlers changed a value they read in place (values
    # read are shared within a block, see ledger/state.py).
    monkeypatch.setattr(state, "CHECK_READS", True)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def net(tmp_path: Path, clock: Clock) -> Iterator[Net]:
    n = Net(tmp_path / "chain", clock, None)
    yield n
    n.emb.close()


@pytest.fixture
def make_net(tmp_path: Path, clock: Clock) -> Iterator[Callable[[Mapping[str, Any]], Net]]:
    made: list[Net] = []

    def make(governance: Mapping[str, Any]) -> Net:
        n = Net(tmp_path / f"chain{len(made)}", clock, governance)
        made.append(n)
        return n

    yield make
    for n in made:
        n.emb.close()
