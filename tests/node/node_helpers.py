"""Helpers: consortiums on disk and nodes serving their API on 127.0.0.1 in this process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sharechain.api.client import NodeClient
from sharechain.crypto.keyfile import OrgKeys
from sharechain.crypto.signing import SigningKey
from sharechain.ledger.store import Head
from sharechain.ledger.transactions import sign_transaction
from sharechain.node.launcher import node_data_dir
from sharechain.node.server import ServerThread
from sharechain.node.service import Node, NodeConfig
from sharechain.ordering.etcd_process import EtcdCluster, free_ports
from sharechain.storage.datadir import DataDir, OrgSpec, init_consortium

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

    @classmethod
    def make(cls, base: Path) -> Consortium:
        """A fresh consortium of `ORGS` under `base`."""
        init_consortium(base / "consortium", ORGS, consortium="test")
        return cls(base / "consortium", base)


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
    """A node of `org` serving on 127.0.0.1 (`port=` a given port, else a free one;
    `now=` the wall clock it reads, else the true one)."""
    port = options.pop("port", 0)
    now = options.pop("now", time.time)
    assert isinstance(port, int) and callable(now)
    config = NodeConfig(data_dir=consortium.node_dir(org), org=org, **options)  # type: ignore[arg-type]
    node = Node(config, now=now)
    node.start()
    server = ServerThread(node, port=port).start()
    return Running(node, server, consortium)


def etcd_nodes(
    consortium: Consortium,
    cluster: EtcdCluster,
    orgs: Sequence[str],
    *,
    tls: bool = False,
    **options: object,
) -> dict[str, Running]:
    """A node of each of `orgs` ordering on `cluster`, each with the others as peers
    (with its organisation's etcd files when `tls`); stop them with `shutdown`."""
    ports = dict(zip(orgs, free_ports(len(orgs)), strict=True))
    running: dict[str, Running] = {}
    try:
        for org in orgs:
            peers = tuple((o, f"http://127.0.0.1:{p}") for o, p in ports.items() if o != org)
            settings: dict[str, object] = {"max_wait": 0.01, "poll_interval": 0.5, **options}
            running[org] = run_node(
                consortium,
                org,
                port=ports[org],
                ordering="etcd",
                etcd_endpoints=cluster.endpoints,
                etcd_tls=cluster.client_tls(org) if tls else None,
                peers=peers,
                **settings,
            )
    except BaseException:
        shutdown_all(running.values())
        raise
    return running


def shutdown(running: Running) -> None:
    running.server.stop()
    running.node.stop()


def shutdown_all(runnings: Iterable[Running]) -> None:
    """Stop every node of `runnings`, the last started first, each told to stop before
    any is waited for: their loops' last waits (a solo follower's long-poll of up to 2 s,
    a poll, an etcd watch) then run out together instead of one after another."""
    started = list(runnings)
    for running in started:
        running.node.stop_event.set()
    for running in reversed(started):
        shutdown(running)


def committed_and_a_lie(running: Running, liar: str = "bank-b") -> tuple[Head, SigningKey, Head]:
    """Commit three notary records on `running`; its head, `liar`'s signing key, and the
    head with another state root (what a lying attestation states)."""
    key = running.consortium.keys("hospital-a").signing
    records = [
        sign_transaction(key, "notary.record", "hospital-a", {"digest": bytes([0, i]) * 16}).raw
        for i in range(3)
    ]
    with running.client() as client:
        client.submit(records)
    head = running.node.store.head()
    assert head is not None
    lie = Head(head.height, head.hash, b"\x02" * 32, head.timestamp)
    return head, running.consortium.keys(liar).signing, lie


@contextmanager
def etcd_network(
    base: Path,
    orgs: Sequence[str],
    *,
    tls: bool = False,
    settings: dict[str, object] | None = None,
    **options: object,
) -> Iterator[tuple[EtcdCluster, Consortium, dict[str, Running]]]:
    """A fresh consortium under `base`, a 3-member etcd cluster and a node of each of
    `orgs` ordering on it (`etcd_nodes`, with `options`, and `settings` in each node's
    data directory); everything stops on exit."""
    consortium = Consortium.make(base)
    for org in orgs if settings else ():
        config = consortium.node_dir(org) / "consortium.json"
        body = json.loads(config.read_text())
        config.write_text(
            json.dumps({**body, "settings": {**body.get("settings", {}), **settings}})
        )
    with EtcdCluster(base / "etcd", members=3, tls=tls) as cluster:
        running = etcd_nodes(consortium, cluster, orgs, tls=tls, **options)
        try:
            yield cluster, consortium, running
        finally:
            shutdown_all(running.values())
