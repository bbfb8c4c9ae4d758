"""A real node (solo ordering, one organisation's view) and its API app, without sockets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from sharechain.node.app import create_app
from sharechain.node.launcher import node_data_dir
from sharechain.node.service import Node, NodeConfig
from sharechain.storage.datadir import OrgSpec, init_consortium

ORGS = (
    OrgSpec("hospital-a", ("member", "admin")),
    OrgSpec("regulator", ("member", "supervisor", "admin")),
)


@pytest.fixture(scope="module")
def node_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    base: Path = tmp_path_factory.mktemp("api")
    init_consortium(base / "consortium", ORGS, consortium="test")
    node = Node(
        NodeConfig(
            data_dir=node_data_dir(base / "consortium", base / "node", "hospital-a"),
            org="hospital-a",
        )
    )
    node.start()
    try:
        yield create_app(node)
    finally:
        node.stop()
