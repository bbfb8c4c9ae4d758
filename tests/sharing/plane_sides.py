"""The two sides of the matrix: the data plane embedded, or over four nodes.

`local`: one data directory holds the consortium (`Plane.local`). `remote`: four
nodes serve their API on 127.0.0.1 in this process, each knowing the others as
peers (hospital-a orders, solo), and each organisation acts through a `Plane`
connected to its own node. The same tests run on both.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sharechain.crypto.keyfile import OrgKeys, load_keys, save_keys
from sharechain.ledger.state import StateReader
from sharechain.ledger.store import Store
from sharechain.node.launcher import node_data_dir
from sharechain.node.server import ServerThread
from sharechain.node.service import Node, NodeConfig
from sharechain.ordering.etcd_process import free_ports
from sharechain.ordering.solo import Receipt
from sharechain.sharing.plane import Plane
from sharechain.storage.blobs import BlobStore
from sharechain.storage.datadir import DataDir, OrgSpec, init_consortium
from sharechain.storage.vault import VAULT_DIR

ORGS = (
    OrgSpec("hospital-a", ("member", "admin")),
    OrgSpec("hospital-b", ("member", "admin")),
    OrgSpec("insurer", ("member",)),
    OrgSpec("regulator", ("member", "supervisor", "admin")),
)
ORDERER = "hospital-a"


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


class Side:
    """One way of running the consortium, as the tests see it."""

    name: str
    dirs: dict[str, Path]
    """Each organisation's data directory (the same one for all, embedded)."""

    def plane(self, org: str) -> Plane:
        """The Plane `org` acts through."""
        raise NotImplementedError

    def submit(self, org: str, type: str, payload: dict[str, Any]) -> Receipt:
        """Submit as `org`; every copy of the chain has it when this returns."""
        raise NotImplementedError

    def sync(self) -> None:
        """Wait until every copy of the chain has the orderer's head."""

    def rotate_keys(self, org: str) -> OrgKeys:
        """`org rotate-key` as the command line does it; every copy follows."""
        raise NotImplementedError

    def settle(self) -> None:
        """Wait until every node's upkeep has acted on every committed block."""

    def held(self, ds: str) -> dict[str, tuple[int, int]]:
        """Per organisation: (vault entries, blobs of the dataset's epochs) it holds."""
        out = {}
        for spec in ORGS:
            path = self.dirs[spec.id]
            vault = path / VAULT_DIR / spec.id / ds
            entries = len(list(vault.glob("*"))) if vault.exists() else 0
            out[spec.id] = (entries, len(self.blobs(ds, spec.id)))
        return out

    def blobs(self, ds: str, org: str) -> list[Path]:
        """The blob files of `ds` (every epoch) in `org`'s store."""
        dd = DataDir.open(self.dirs[org])
        store = Store(dd.db_path)
        try:
            digests = [v["ciphertext_digest"] for _, v in StateReader(store).scan(f"epoch/{ds}/")]
        finally:
            store.close()
        blobs = BlobStore(dd.blob_dir)
        return [blobs.path(d) for d in digests if d and blobs.has(d)]

    def close(self) -> None:
        """Close what the side opened."""


class LocalSide(Side):
    name = "local"

    def __init__(self, path: Path) -> None:
        init_consortium(path, ORGS)
        self.dirs = {o.id: path for o in ORGS}
        self._plane = Plane.local(path)

    def plane(self, org: str) -> Plane:
        return self._plane

    def submit(self, org: str, type: str, payload: dict[str, Any]) -> Receipt:
        return self._plane.submit(org, type, payload)

    def rotate_keys(self, org: str) -> OrgKeys:
        assert self._plane.embedded is not None
        return self._plane.rotate_keys(org, self._plane.embedded.keys(org))[1]

    def close(self) -> None:
        self._plane.close()


class RemoteSide(Side):
    name = "remote"

    def __init__(self, base: Path) -> None:
        source = base / "consortium"
        init_consortium(source, ORGS, consortium="test")
        orgs = [o.id for o in ORGS]
        self.dirs = {o: node_data_dir(source, base / "nodes" / o, o) for o in orgs}
        ports = dict(zip(orgs, free_ports(len(orgs)), strict=True))
        self.urls = {o: f"http://127.0.0.1:{p}" for o, p in ports.items()}
        self.nodes: dict[str, Node] = {}
        self.servers: dict[str, ServerThread] = {}
        for org in orgs:
            config = NodeConfig(
                data_dir=self.dirs[org],
                org=org,
                orderer_url=None if org == ORDERER else self.urls[ORDERER],
                peers=tuple((o, u) for o, u in self.urls.items() if o != org),
                poll_interval=0.2,
                max_wait=0.005,
            )
            self.nodes[org] = Node(config)
            self.nodes[org].start()
            self.servers[org] = ServerThread(self.nodes[org], ports[org]).start()
        nodes = [{"org": o, "url": u} for o, u in self.urls.items()]
        self.network = base / "network.json"
        body = {"state": "up", "consortium_dir": str(source), "nodes": nodes}
        self.network.write_text(json.dumps(body))
        self._planes: dict[str, Plane] = {}

    def plane(self, org: str) -> Plane:
        if org not in self._planes:
            self._planes[org] = Plane.connect(network=self.network, as_org=org)
        return self._planes[org]

    def submit(self, org: str, type: str, payload: dict[str, Any]) -> Receipt:
        keys = DataDir.open(self.network.parent / "consortium").key_path(org)
        with Plane.connect(self.urls[ORDERER], key=keys) as plane:
            receipt = plane.submit(org, type, payload)
        self.sync()
        return receipt

    def rotate_keys(self, org: str) -> OrgKeys:
        """Sign with the old key file, write the new one (consortium and node copies)."""
        key_file = DataDir.open(self.network.parent / "consortium").key_path(org)
        _, new = self.plane(org).rotate_keys(org, load_keys(key_file))
        for path in (key_file, self.dirs[org] / "keys" / f"{org}.key"):
            save_keys(new, path)
        self._planes.pop(org).close()
        self.sync()
        # The node takes the new file by itself (and re-wraps its vault then).
        wait_until(lambda: self.nodes[org].keys.signing.public_key == new.signing.public_key)
        return new

    def settle(self) -> None:
        self.sync()
        head = self.nodes[ORDERER].ledger.height
        wait_until(lambda: all(s.app.state.upkeep.followed >= head for s in self.servers.values()))

    def sync(self) -> None:
        head = self.nodes[ORDERER].ledger.height
        wait_until(lambda: all(n.ledger.height >= head for n in self.nodes.values()))

    def close(self) -> None:
        for plane in self._planes.values():
            plane.close()
        # Every node told to stop before any is waited for: the followers' last long-polls
        # (up to 2 s each) run out together, not one after another at the session's end.
        for node in self.nodes.values():
            node.stop_event.set()
        for org in reversed(list(self.servers)):
            self.servers[org].stop()
            self.nodes[org].stop()


@pytest.fixture(scope="session")
def remote_side(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteSide]:
    """Four nodes in this process, for the whole session."""
    side = RemoteSide(tmp_path_factory.mktemp("remote-plane"))
    try:
        yield side
    finally:
        side.close()


@pytest.fixture(params=["local", "remote"])
def side(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Side]:
    """Each test once embedded (a fresh data directory) and once over the nodes."""
    if request.param == "remote":
        yield request.getfixturevalue("remote_side")
        return
    local = LocalSide(tmp_path / "consortium")
    try:
        yield local
    finally:
        local.close()
