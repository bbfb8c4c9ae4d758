"""Fixtures: a consortium per test (see contracts_kit)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from contracts_kit import Clock, Net


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
