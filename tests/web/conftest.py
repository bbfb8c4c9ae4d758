"""Fixtures: hospital-a's node with its console, and operators of each role."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from web_kit import ORGS, OWNER, PASSWORD, Chain, Clock, node_dir
from web_testclient import TestClient

from sharechain.node.app import create_app
from sharechain.node.service import Node, NodeConfig
from sharechain.storage.datadir import init_consortium
from sharechain.web import Console, mount


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    source = tmp_path / "consortium"
    init_consortium(source, ORGS, consortium="test")
    node = Node(NodeConfig(data_dir=node_dir(source, tmp_path, OWNER), org=OWNER, max_wait=0.005))
    node.start()
    try:
        yield Chain(source, node)
    finally:
        node.stop()


@pytest.fixture
def console(chain: Chain, clock: Clock) -> Iterator[tuple[Console, TestClient]]:
    """The node's API with its console (on the test clock), and operators of each role."""
    app = create_app(chain.node, (mount,))
    console: Console = app.state.console
    console.now = clock
    for name, role in (("vera", "viewer"), ("anna", "approver"), ("adam", "admin")):
        console.accounts.add(name, role, PASSWORD)
    with TestClient(app) as client:
        yield console, client


@pytest.fixture
def client(console: tuple[Console, TestClient]) -> TestClient:
    return console[1]
