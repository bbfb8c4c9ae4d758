"""Helpers: consortiums on disk and nodes serving their API on 127.0.0.1 in this process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sharechain.api.client import NodeClient
from sharechain.crypto.keyfile import OrgKeys
from sharechain.node.launcher import node_data_dir
from sharechain.node.server import ServerThread
from sharechain.node.service import Node, NodeConfig
from sharechain.storage.datadir import DataDir, OrgSpec

ORGS = (
    OrgSpec("hospital-a", ("member", "admin")),
    OrgSpec("bank-b", ("member", "admin")),
    OrgSpec("regulator", ("member", "supervisor", "admin")),
)


@dataclass
class Consortium:
    """A consortium directory with every key, and one data directory per node."""

    source: Path
    base: Path

    def keys(self, org: str) -> OrgKeys:
        return DataDir.open(self.source).keys(org)

    def node_dir(self, org: str) -> Path:
        return node_data_dir(self.source, self.base / "nodes" / org, org)


@dataclass
class Running:
    node: Node
    server: ServerThread
    consortium: Consortium

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, org: str | None = None) -> NodeClient:
        who = org or self.node.org
        return NodeClient(self.url, who, self.consortium.keys(who).signing, timeout=20.0)


def run_node(consortium: Consortium, org: str, **options: object) -> Running:
    node = Node(NodeConfig(data_dir=consortium.node_dir(org), org=org, **options))  # type: ignore[arg-type]
    node.start()
    server = ServerThread(node).start()
    return Running(node, server, consortium)


def shutdown(running: Running) -> None:
    running.server.stop()
    running.node.stop()
