"""The data plane's commands against running nodes (`--node URL`, `--network FILE`).

Three nodes serve their API on 127.0.0.1 in this process, each knowing the
others as peers: hospital-a orders (solo) and owns the data, bank-b is the
grantee, the regulator supervises and custodies keys. The same commands run
on an embedded data directory of the same consortium, so the JSON of both
modes can be compared key for key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_remote_cli import ORGS, js, run, shape, wait_until

from sharechain.api.client import NodeClient
from sharechain.node.launcher import node_data_dir
from sharechain.node.server import ServerThread
from sharechain.node.service import Node, NodeConfig
from sharechain.ordering.etcd_process import free_ports
from sharechain.storage.blobs import BlobStore
from sharechain.storage.datadir import DataDir, init_consortium
from sharechain.storage.vault import VAULT_DIR

OWNER, GRANTEE, SUPERVISOR = "hospital-a", "bank-b", "regulator"
DEAD = "http://127.0.0.1:9"


@dataclass
class Net:
    source: Path
    """Consortium directory holding every key (the `--data-dir` of the signers)."""
    embedded: Path
    """An embedded data directory of its own (same consortium, own ledger)."""
    urls: dict[str, str]
    nodes: dict[str, Node]
    base: Path

    def sync(self) -> None:
        head = self.nodes[OWNER].ledger.height
        wait_until(lambda: all(n.ledger.height >= head for n in self.nodes.values()))

    def network_file(self, name: str, *, down: str | None = None) -> Path:
        """A network file listing every node; `down`'s node at an address nobody serves."""
        path = self.base / name
        nodes = [{"org": o, "url": DEAD if o == down else u} for o, u in self.urls.items()]
        body = {"state": "up", "consortium_dir": str(self.source), "nodes": nodes}
        path.write_text(json.dumps(body))
        return path

    def held(self, ds: str) -> dict[str, tuple[int, int]]:
        """Per node: (vault entries, blobs) it holds of dataset `ds`."""
        out = {}
        for org, node in self.nodes.items():
            vault = node.datadir.path / VAULT_DIR / org / ds
            entries = len(list(vault.glob("*"))) if vault.exists() else 0
            blobs = BlobStore(node.datadir.blob_dir)
            digests = [v["ciphertext_digest"] for _, v in _scan(node, f"epoch/{ds}/")]
            out[org] = (entries, sum(blobs.has(d) for d in digests if d))
        return out


def _scan(node: Node, prefix: str) -> list[tuple[str, Any]]:
    from sharechain.ledger.state import StateReader

    return list(StateReader(node.store).scan(prefix))


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    base = tmp_path_factory.mktemp("remote-sharing")
    source = base / "consortium"
    init_consortium(source, ORGS, consortium="test")
    embedded = base / "embedded"
    embedded.mkdir()
    for name in ("consortium.json", "genesis.cbor"):
        (embedded / name).write_bytes((source / name).read_bytes())
    (embedded / "keys").mkdir()
    for org in (OWNER, GRANTEE, SUPERVISOR):
        (embedded / "keys" / f"{org}.key").write_bytes(
            (source / "keys" / f"{org}.key").read_bytes()
        )
        (embedded / "keys" / f"{org}.key").chmod(0o600)
    dirs = {o: node_data_dir(source, base / "nodes" / o, o) for o in (OWNER, GRANTEE, SUPERVISOR)}
    ports = dict(zip((OWNER, GRANTEE, SUPERVISOR), free_ports(3), strict=True))
    urls = {o: f"http://127.0.0.1:{p}" for o, p in ports.items()}
    nodes: dict[str, Node] = {}
    servers: dict[str, ServerThread] = {}
    try:
        for org in (OWNER, GRANTEE, SUPERVISOR):
            # Each node's peer list names the others (what `GET /v1/peers` answers).
            peers = tuple((o, u) for o, u in urls.items() if o != org)
            config = NodeConfig(
                data_dir=dirs[org],
                org=org,
                orderer_url=None if org == OWNER else urls[OWNER],
                peers=peers,
                poll_interval=0.2,
                max_wait=0.005,
            )
            nodes[org] = Node(config)
            nodes[org].start()
            servers[org] = ServerThread(nodes[org], ports[org]).start()
        yield Net(source, embedded, urls, nodes, base)
    finally:
        for node in nodes.values():  # told at once: their last waits overlap
            node.stop_event.set()
        for o in reversed(list(servers)):
            servers[o].stop()
            nodes[o].stop()


def _data(path: Path, size: int) -> Path:
    path.write_bytes(b"patient_id,value\n" + os.urandom(size))
    return path


def _grant(net: Net, ds: str, *where: str | Path) -> str:
    """request (bank-b) -> approvals (owner, supervisor), through the nodes' CLI."""
    b = ("-d", net.source, "--node", net.urls[GRANTEE])
    a = ("-d", net.source, "--node", net.urls[OWNER])
    req = js("request", "create", ds[:12], "--as", GRANTEE, "--purpose", "research", *where, *b)
    js("request", "approve", req["request"], "--as", OWNER, *a)
    approved = js("request", "approve", req["request"], "--as", SUPERVISOR, *a)
    assert approved["status"] == "granted"
    net.sync()
    return str(approved["grant"])


def _embedded_shapes(net: Net, src: Path, tmp: Path) -> dict[str, Any]:
    """The JSON documents of publish, fetch and rotate-key on the embedded default."""
    local = ("-d", net.embedded)
    pub = js("dataset", "publish", src, "--as", OWNER, "--title", "t",
             "--custody", "supervisor", *local)  # fmt: skip
    req = js("request", "create", pub["dataset"], "--as", GRANTEE, "--purpose", "research", *local)
    js("request", "approve", req["request"], "--as", OWNER, *local)
    gid = js("request", "approve", req["request"], "--as", SUPERVISOR, *local)["grant"]
    got = js("fetch", gid, "--as", GRANTEE, "-o", tmp / "local.out", *local)
    rot = js("dataset", "rotate-key", pub["dataset"], "--as", OWNER, *local)
    revoked = js("grant", "revoke", gid, "--as", OWNER, *local)
    purged = js("dataset", "purge", pub["dataset"], "--as", OWNER, *local)
    return {"publish": pub, "fetch": got, "rotate": rot, "revoke": revoked, "purge": purged}


def test_publish_fetch_revoke_purge_through_nodes(net: Net, tmp_path: Path) -> None:
    src = _data(tmp_path / "ward.csv", 300_000)  # above the inline limit: a blob
    local = _embedded_shapes(net, src, tmp_path)
    a = ("-d", net.source, "--node", net.urls[OWNER])
    b = ("-d", net.source, "--node", net.urls[GRANTEE])

    # publish through the owner's node; the custodian's node comes from its peer list.
    pub = js("dataset", "publish", src, "--as", OWNER, "--title", "ward",
             "--custody", "supervisor", *a)  # fmt: skip
    assert shape(pub) == shape(local["publish"])
    ds = pub["dataset"]
    assert pub["holders"] == [SUPERVISOR] and pub["on_chain"] is False
    net.sync()
    held = net.held(ds)
    assert held[OWNER] == (1, 1) and held[SUPERVISOR] == (1, 1)  # key + blob replica
    assert held[GRANTEE] == (0, 0)

    # request / approve with the existing remote commands, then fetch via bank-b's node.
    gid = _grant(net, ds)
    out = tmp_path / "got.csv"
    got = js("fetch", gid[:12], "--as", GRANTEE, "-o", out, *b)
    assert out.read_bytes() == src.read_bytes()
    assert shape(got) == shape(local["fetch"])
    assert got["released_by"] == [SUPERVISOR] and got["plaintext_sha256"] == pub["plaintext_sha256"]
    text = run("fetch", gid, "--as", GRANTEE, "-o", tmp_path / "again.csv", *b)
    assert "fetched and verified" in text

    # rotate-key: epoch 2 everywhere, the old blob gone from both nodes that held it.
    rot = js("dataset", "rotate-key", ds[:12], "--as", OWNER, *a)
    assert rot["epoch"] == 2 and rot["old_entries_destroyed"] == 2
    assert shape(rot) == shape(local["rotate"])

    # revoke: the chain refuses every later release, and the key moved to epoch 3.
    revoked = js("grant", "revoke", gid, "--as", OWNER, "--reason", "study over", *a)
    assert shape(revoked) == shape(local["revoke"])
    net.sync()
    epoch = js("dataset", "show", ds, *b, "--as", GRANTEE)
    assert epoch["status"] == "active"
    # Where to run may also come before the command (the root's options).
    assert js(*b, "dataset", "show", ds, "--as", GRANTEE) == epoch
    refused = run("fetch", gid, "--as", GRANTEE, "-o", tmp_path / "late.csv", *b, code=2)
    assert "key release refused (revoked)" in refused and f"{SUPERVISOR}'s node" in refused
    assert "the chain refused (revoked:" in refused
    assert not (tmp_path / "late.csv").exists()

    # purge: recorded on the chain; every node shreds its keys and blobs.
    purged = js("dataset", "purge", ds, "--as", OWNER, "--reason", "consent withdrawn", *a)
    assert shape(purged) == shape(local["purge"]) and purged["dataset"] == ds
    net.sync()
    assert net.held(ds) == {OWNER: (0, 0), GRANTEE: (0, 0), SUPERVISOR: (0, 0)}
    assert js("dataset", "show", ds, *b, "--as", GRANTEE)["status"] == "purged"
    trail = js("audit", ds, *a, "--as", OWNER)
    assert "dataset.purge" in [e["type"] for e in trail]
    again = run("fetch", gid, "--as", GRANTEE, "-o", tmp_path / "gone.csv", *b, code=2)
    assert "refused" in again and not (tmp_path / "gone.csv").exists()
    # A purge the chain refuses prints its code: it is purged already.
    assert "transaction rejected (" in run("dataset", "purge", ds, "--as", OWNER, *a, code=2)


def test_network_file_threshold_fetch_and_shred_on_commit(net: Net, tmp_path: Path) -> None:
    netfile = net.network_file("network.json")
    src = _data(tmp_path / "labs.csv", 200_000)
    pub = js("dataset", "publish", src, "--as", OWNER, "--title", "labs",
             "--custody", "threshold", "--network", netfile)  # fmt: skip
    ds = pub["dataset"]
    assert pub["holders"] == [GRANTEE, SUPERVISOR] and pub["threshold"] == 2
    gid = _grant(net, ds)
    out = tmp_path / "labs.out"
    got = js("fetch", gid, "--as", GRANTEE, "-o", out, "--network", netfile)
    assert out.read_bytes() == src.read_bytes()
    assert got["released_by"] == [GRANTEE, SUPERVISOR]

    # Purge with a network file that does not list the regulator's node: it is not asked,
    # yet it shreds its share and replica by itself as soon as it commits the purge.
    partial = tmp_path / "partial.json"
    body = json.loads(netfile.read_text())
    body["nodes"] = [n for n in body["nodes"] if n["org"] != SUPERVISOR]
    partial.write_text(json.dumps(body))
    js("dataset", "purge", ds, "--as", OWNER, "--network", partial)
    net.sync()
    wait_until(lambda: set(net.held(ds).values()) == {(0, 0)})
    keys = DataDir.open(net.source).keys(GRANTEE)
    with NodeClient(net.urls[SUPERVISOR], GRANTEE, keys.signing) as c:
        status = c.status()["data_plane"]
    assert ds in [r["dataset"] for r in status["shredded"]]
    refused = run("fetch", gid, "--as", GRANTEE, "-o", tmp_path / "x", "--network", netfile, code=2)
    assert "key release refused (revoked)" in refused


def test_unreachable_custodian_is_named(net: Net, tmp_path: Path) -> None:
    src = _data(tmp_path / "notes.csv", 100_000)
    a = ("-d", net.source, "--node", net.urls[OWNER])
    ds = js("dataset", "publish", src, "--as", OWNER, "--title", "notes",
            "--custody", "supervisor", *a)["dataset"]  # fmt: skip
    gid = _grant(net, ds)
    dead = net.network_file("dead.json", down=SUPERVISOR)
    text = run("fetch", gid, "--as", GRANTEE, "-o", tmp_path / "n", "--network", dead, code=2)
    assert f"could not reach custodian {SUPERVISOR}'s node at {DEAD}" in text
    assert not (tmp_path / "n").exists()
    # The owner's tools cannot deposit with a custodian whose node is down either.
    text = run("dataset", "publish", src, "--as", OWNER, "--title", "n2",
               "--custody", "supervisor", "--network", dead, code=2)  # fmt: skip
    assert f"could not reach custodian {SUPERVISOR}'s node at {DEAD}" in text
    assert "pending cleanup" not in text  # nothing reached that node, nothing to clean
