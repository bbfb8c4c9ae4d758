"""Fixtures: consortiums on disk and nodes serving their API on 127.0.0.1 in this process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from node_helpers import ORGS, Consortium, Running, run_node, shutdown

from sharechain.storage.datadir import init_consortium


@pytest.fixture
def consortium(tmp_path: Path) -> Consortium:
    init_consortium(tmp_path / "consortium", ORGS, consortium="test")
    return Consortium(tmp_path / "consortium", tmp_path)


@pytest.fixture
def orderer(consortium: Consortium) -> Iterator[Running]:
    """hospital-a's node ordering for a solo consortium."""
    running = run_node(consortium, "hospital-a", max_wait=0.005)
    try:
        yield running
    finally:
        shutdown(running)
