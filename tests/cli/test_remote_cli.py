"""The command line against running nodes (`--node URL`, `--network FILE`).

Two nodes serve their API on 127.0.0.1 in this process: hospital-a orders
(solo), bank-b follows it; both poll each other's attestations. The same
commands run on an embedded data directory of the same consortium, so the
JSON of both modes can be compared key for key.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sharechain.cli.main import app
from sharechain.node.launcher import node_data_dir
from sharechain.node.server import ServerThread
from sharechain.node.service import Node, NodeConfig
from sharechain.sharing.agreement import NodeFile, write_node_file
from sharechain.storage.datadir import OrgSpec, init_consortium

runner = CliRunner()

ORGS = (
    OrgSpec("hospital-a", ("member", "admin")),
    OrgSpec("bank-b", ("member", "admin")),
    OrgSpec("regulator", ("member", "supervisor", "admin")),
)


@dataclass
class Net:
    source: Path
    """Consortium directory holding every key (the `--data-dir` of the signers)."""
    embedded: Path
    """An embedded data directory of its own (same consortium, own ledger)."""
    a: str
    b: str
    dirs: dict[str, Path]
    nodes: dict[str, Node]
    base: Path


def run(*args: str | Path, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    out = result.stdout + result.stderr
    assert result.exit_code == code, out
    assert "Traceback" not in out
    if "--json" in args:
        return result.stdout
    return " ".join(out.split())


def js(*args: str | Path, code: int = 0) -> Any:
    return json.loads(run(*args, "--json", code=code))


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def shape(value: Any) -> Any:
    """The keys (recursively) and value kinds of a JSON document."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__ if value is not None else "null"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    base = tmp_path_factory.mktemp("remote")
    source = base / "consortium"
    init_consortium(source, ORGS, consortium="test")
    embedded = base / "embedded"
    embedded.mkdir()
    for name in ("consortium.json", "genesis.cbor"):
        (embedded / name).write_bytes((source / name).read_bytes())
    (embedded / "keys").mkdir()
    for org in ("hospital-a", "bank-b", "regulator"):
        (embedded / "keys" / f"{org}.key").write_bytes(
            (source / "keys" / f"{org}.key").read_bytes()
        )
        (embedded / "keys" / f"{org}.key").chmod(0o600)
    dirs = {o: node_data_dir(source, base / "nodes" / o, o) for o in ("hospital-a", "bank-b")}
    servers: dict[str, ServerThread] = {}
    a_node = Node(NodeConfig(data_dir=dirs["hospital-a"], org="hospital-a", max_wait=0.005))
    a_node.start()
    servers["hospital-a"] = ServerThread(a_node).start()
    a_url = servers["hospital-a"].url
    b_node = Node(
        NodeConfig(
            data_dir=dirs["bank-b"],
            org="bank-b",
            orderer_url=a_url,
            peers=(("hospital-a", a_url),),
            poll_interval=0.2,
        )
    )
    b_node.start()
    servers["bank-b"] = ServerThread(b_node).start()
    nodes = {"hospital-a": a_node, "bank-b": b_node}
    try:
        yield Net(source, embedded, a_url, servers["bank-b"].url, dirs, nodes, base)
    finally:
        for node in nodes.values():  # told at once: their last waits overlap
            node.stop_event.set()
        for o in ("bank-b", "hospital-a"):
            servers[o].stop()
            nodes[o].stop()


def sha(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


_registered = itertools.count()


def register(net: Net, *where: str | Path, org: str = "hospital-a") -> Any:
    cipher = sha(f"c{next(_registered)}")  # a ciphertext digest names one dataset only
    return js(
        "dataset", "register", "--as", org, "--title", "ward stays",
        "--plaintext-digest", sha("p"), "--ciphertext-digest", cipher, "--size", "10",
        "--tag", "clinical", *where,
    )  # fmt: skip


def test_workflow_through_a_node_has_the_embedded_json(net: Net, tmp_path: Path) -> None:
    node = ("-d", net.source, "--node", net.b)
    local = ("-d", net.embedded)
    f = tmp_path / "report.pdf"
    f.write_bytes(b"quarterly report")

    # Submitting: same receipt document, committed on the node.
    remote_rec = js("notarize", f, "--as", "bank-b", *node)
    local_rec = js("notarize", f, "--as", "bank-b", *local)
    assert shape(remote_rec) == shape(local_rec)
    assert remote_rec["digest"] == local_rec["digest"] and remote_rec["height"] >= 1
    assert net.nodes["bank-b"].store.tx_location(bytes.fromhex(remote_rec["tx_id"])) is not None

    # check FILE: the record and its verified inclusion proof, through the node.
    checked = js("check", f, *node, "--as", "bank-b")
    assert checked["recorder"] == "bank-b" and checked["tx_id"] == remote_rec["tx_id"]
    assert shape(checked) == shape(js("check", f, *local))
    other = tmp_path / "other"
    other.write_bytes(b"never recorded")
    assert js("check", other, *node, "--as", "bank-b", code=1)["recorded"] is False

    # Datasets: registered as hospital-a through bank-b's node (relayed), then read.
    ds = register(net, "-d", net.source, "--node", net.b)["dataset"]
    local_ds = register(net, *local)["dataset"]
    listed = js("dataset", "list", *node, "--as", "bank-b")
    assert [d["id"] for d in listed] == [ds]
    assert shape(listed) == shape(js("dataset", "list", *local))
    shown = js("dataset", "show", ds[:10], *node, "--as", "bank-b")
    assert shown["owner"] == "hospital-a" and shown["tags"] == ["clinical"]
    assert shape(shown) == shape(js("dataset", "show", local_ds, *local))
    assert js("dataset", "lineage", ds, *node, "--as", "bank-b")["root"] == ds

    # Request and approval: the default policy needs the owner's approval.
    req = js("request", "create", ds[:12], "--as", "bank-b", "--purpose", "treatment", *node)
    assert req["status"] == "open"
    inbox = js("request", "list", "--as", "hospital-a", "-d", net.source, "--node", net.a)
    assert [r["id"] for r in inbox] == [req["request"]]
    # Joint approval: the owner, then the supervisor (signing through hospital-a's node).
    first = js("request", "approve", req["request"][:12], "--as", "hospital-a",
               "-d", net.source, "--node", net.a)  # fmt: skip
    assert first["status"] == "open"
    approved = js("request", "approve", req["request"][:12], "--as", "regulator",
                  "-d", net.source, "--node", net.a)  # fmt: skip
    assert approved["status"] == "granted" and approved["grant"]
    assert shape(approved) == shape(first) | {"grant": "str"}
    wait_until(lambda: net.nodes["bank-b"].ledger.height >= approved["height"])
    grants = js("grant", "list", "--org", "bank-b", *node, "--as", "bank-b")
    assert [g["id"] for g in grants] == [approved["grant"]]
    assert grants[0]["effective_status"] == "active"

    # Audit: the dataset owner reads its trail, every proof verified against the node.
    trail = js("audit", ds, "-d", net.source, "--node", net.a, "--as", "hospital-a")
    assert [e["type"] for e in trail][:1] == ["dataset.register"]
    assert all(e["proof_verified"] for e in trail)
    assert "every inclusion proof verified" in run(
        "audit", "--org", "bank-b", *node, "--as", "bank-b"
    )

    # Chain info and proof: same documents as embedded.
    info = js("chain", "info", *node, "--as", "bank-b")
    local_info = js("chain", "info", *local)
    assert shape(info) == shape(local_info) | {"data_dir": "null", "node": "str"}
    assert info["node"] == net.b and info["data_dir"] is None
    assert info["genesis_hash"] == local_info["genesis_hash"]
    assert set(info["organisations"]) == {"hospital-a", "bank-b", "regulator"}
    proof = js("chain", "proof", remote_rec["tx_id"], *node, "--as", "bank-b")
    assert proof["tx_id"] == remote_rec["tx_id"]
    assert shape(proof) == shape(js("chain", "proof", local_rec["tx_id"], *local))
    assert "against the chain's block hash" in run(
        "chain", "proof", remote_rec["tx_id"], *node, "--as", "bank-b"
    )
    orgs = js("org", "list", *node, "--as", "bank-b")
    assert {o["id"] for o in orgs["organisations"]} == {"hospital-a", "bank-b", "regulator"}


def test_a_rejected_transaction_prints_its_code(net: Net) -> None:
    reg = register(net, "-d", net.source, "--node", net.a)
    ds = reg["dataset"]
    # bank-b's node must have the dataset before it can resolve the id (replication lag).
    wait_until(lambda: net.nodes["bank-b"].ledger.height >= reg["height"])
    text = run("dataset", "retire", ds, "--as", "bank-b", "-d", net.source, "--node", net.b, code=2)
    assert "transaction rejected (" in text and "Traceback" not in text
    # A prefix that differs from this dataset's id in its eighth digit: no dataset of the
    # network starts with it (the others would have to match 32 random bits).
    absent = ds[:7] + format((int(ds[7], 16) + 8) % 16, "x")
    assert f"no dataset id starts with {absent}" in run(
        "dataset", "retire", absent, "--as", "bank-b", "-d", net.source, "--node", net.b, code=2
    )


def test_a_member_may_not_read_another_members_trail(net: Net) -> None:
    text = run(
        "audit", "--org", "hospital-a", "--as", "bank-b", "-d", net.source, "--node", net.b,
        code=2,
    )  # fmt: skip
    assert f"the node at {net.b} refused" in text and "HTTP 403" in text
    assert "bank-b may not read the audit trail of hospital-a" in text
    # The supervisor may.
    assert js("audit", "--org", "hospital-a", "--as", "regulator", "-d", net.source,
              "--node", net.b) is not None  # fmt: skip


def test_a_key_the_chain_does_not_know_is_refused(net: Net, tmp_path: Path) -> None:
    other = tmp_path / "other"
    init_consortium(other, (OrgSpec("bank-b", ("member",)),), consortium="other")
    text = run("dataset", "list", "-d", other, "--node", net.b, code=2)
    assert f"the node at {net.b} refused" in text and "HTTP 401" in text


def test_unreachable_node_says_where_and_what_to_do(net: Net) -> None:
    text = run("chain", "info", "-d", net.source, "--as", "bank-b",
               "--node", "http://127.0.0.1:9", code=2)  # fmt: skip
    assert "cannot reach the node at http://127.0.0.1:9" in text
    assert "sharechain network status" in text


def test_network_file_picks_the_signers_node(net: Net, tmp_path: Path) -> None:
    path = tmp_path / "network.json"
    path.write_text(
        json.dumps(
            {
                "state": "up",
                "consortium_dir": str(net.source),
                "nodes": [{"org": "hospital-a", "url": net.a}, {"org": "bank-b", "url": net.b}],
            }
        )
    )
    f = tmp_path / "x"
    f.write_bytes(b"via the network file")
    rec = js("notarize", f, "--as", "bank-b", "--network", path)
    assert net.nodes["bank-b"].store.tx_location(bytes.fromhex(rec["tx_id"])) is not None
    # Queries without --as sign as the first node's organisation.
    assert js("check", f, "--network", tmp_path)["recorder"] == "bank-b"
    result = runner.invoke(app, ["chain", "info", "--json"], env={"SHARECHAIN_NETWORK": str(path)})
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["node"] == net.a
    down = tmp_path / "down"
    down.mkdir()
    (down / "network.json").write_text(json.dumps({"state": "down", "nodes": []}))
    assert "sharechain network up" in run("chain", "info", "--network", down, code=2)


def test_verify_reports_attestations_in_every_mode(net: Net, tmp_path: Path) -> None:
    f = tmp_path / "y"
    f.write_bytes(b"attested")
    js("notarize", f, "--as", "hospital-a", "-d", net.source, "--node", net.a)
    wait_until(lambda: any(p.checked >= 1 and p.agrees for p in net.nodes["bank-b"].book.peers()))
    # Embedded: one ledger, nothing to compare.
    local = js("chain", "verify", "-d", net.embedded)
    assert local["attestations"]["applicable"] is False
    assert "attestations: not applicable (embedded, single ledger)" in run(
        "chain", "verify", "-d", net.embedded
    )
    # --node: the node's own comparison, naming each peer's latest attestation.
    remote = js("chain", "verify", "-d", net.source, "--as", "bank-b", "--node", net.b)
    assert shape({k: v for k, v in remote.items() if k != "attestations"}) == shape(
        {k: v for k, v in local.items() if k != "attestations"}
    )
    assert remote["ok"] is True and remote["attestations"]["ok"] is True
    (peer,) = remote["attestations"]["peers"]
    assert peer["org"] == "hospital-a" and peer["agrees"] is True
    assert len(peer["block_hash"]) == 64 and len(peer["state_root"]) == 64
    # A node's data directory: this ledger compared here with the peers' signed word.
    b_dir = net.dirs["bank-b"]
    write_node_file(b_dir, NodeFile("bank-b", net.b, (("hospital-a", net.a),)))
    mine = js("chain", "verify", "-d", b_dir)
    assert mine["ok"] is True and mine["attestations"]["applicable"] is True
    (peer,) = mine["attestations"]["peers"]
    assert peer["org"] == "hospital-a" and peer["agrees"] is True and peer["checked"] >= 1
    text = run("chain", "verify", "-d", b_dir)
    assert "hospital-a: latest attested height" in text and "agrees with ours" in text
