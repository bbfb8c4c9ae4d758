"""Nodes cosign checkpoints: the quorum checkpoint, cosign refusals, consistency proofs,
and `chain export|checkpoint|consistency --node` sealed by the nodes' quorum checkpoint."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from node_helpers import ORGS, Consortium, Running, shutdown_all
from typer.testing import CliRunner

from sharechain.cli.main import app
from sharechain.contracts import default_registry
from sharechain.crypto.merkle import verify_consistency
from sharechain.crypto.signed_note import parse_note
from sharechain.ledger.checkpoints import (
    Checkpoint,
    parse_checkpoint,
    roster_of,
    verify_checkpoint,
)
from sharechain.ledger.export import verify_export
from sharechain.ledger.identities import Organisation
from sharechain.ledger.transactions import sign_transaction
from sharechain.node.launcher import free_ports
from sharechain.node.server import ServerThread
from sharechain.node.service import Node, NodeConfig

runner = CliRunner()


def _run(*args: str | Path, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result.stdout if "--json" in args else " ".join((result.stdout + result.stderr).split())


@pytest.fixture
def nodes(consortium: Consortium) -> Iterator[list[Running]]:
    """Three nodes (hospital-a orders, the others follow), every one the others' peer,
    checkpointing every 2 blocks or 0.2 s."""
    cfg = consortium.source / "consortium.json"
    body = json.loads(cfg.read_text())
    cfg.write_text(
        json.dumps({**body, "settings": {"checkpoint_blocks": 2, "checkpoint_seconds": 0.2}})
    )
    ports = free_ports(len(ORGS))
    urls = {o.id: f"http://127.0.0.1:{p}" for o, p in zip(ORGS, ports, strict=True)}
    running = []
    for spec, port in zip(ORGS, ports, strict=True):
        peers = tuple((o, u) for o, u in urls.items() if o != spec.id)
        orderer = None if spec.id == "hospital-a" else urls["hospital-a"]
        config = NodeConfig(
            data_dir=consortium.node_dir(spec.id),
            org=spec.id,
            orderer_url=orderer,
            peers=peers,
            max_wait=0.005,
            poll_interval=0.1,
        )
        node = Node(config)
        node.start()
        running.append(Running(node, ServerThread(node, port).start(), consortium))
    try:
        yield running
    finally:
        shutdown_all(running)


def _roster(consortium: Consortium) -> list[Organisation]:
    return [
        Organisation(o.id, o.roles, consortium.keys(o.id).signing.public_key, b"") for o in ORGS
    ]


def _grow(nodes: list[Running], n: int, tag: int = 0) -> int:
    """Record `n` notary transactions through hospital-a; wait until every node has them."""
    a = nodes[0]
    key = a.consortium.keys("hospital-a").signing
    with a.client() as c:
        for i in range(n):
            payload = {"digest": bytes([tag, i]) * 16}
            c.submit_checked(sign_transaction(key, "notary.record", "hospital-a", payload).raw)
    height = a.node.ledger.height
    for r in nodes:
        assert r.node.wait_height(height, 10)
    return height


def _wait_checkpoint(running: Running, size: int) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    with running.client() as c:
        while True:
            body: dict[str, Any] = c.get_json("/v1/checkpoint")
            if body["size"] >= size or time.monotonic() > deadline:
                return body
            time.sleep(0.05)


def test_nodes_cosign_quorum_checkpoints_on_their_own(
    nodes: list[Running], consortium: Consortium
) -> None:
    height = _grow(nodes, 3)
    roster = roster_of(_roster(consortium), {})
    for r in nodes:
        body = _wait_checkpoint(r, height + 1)
        cp = verify_checkpoint(body["note"], roster, origin=body["origin"])
        assert cp.size >= height + 1 and body["size"] == cp.size and body["quorum"] == 2
        assert len(body["signers"]) >= 2 and body["root"] == cp.root.hex()
        # The founders' genesis note comes with it: what seals an export.
        first = verify_checkpoint(body["genesis"], roster, origin=body["origin"])
        assert first.size == 1
    # Only the loops move the latest checkpoint past one that exists: grow, and wait.
    later = _grow(nodes, 2, tag=9)
    for r in nodes:
        assert _wait_checkpoint(r, later + 1)["size"] >= later + 1


def test_on_demand_checkpoint_covers_the_head_and_is_cosigned_by_every_node(
    nodes: list[Running], consortium: Consortium
) -> None:
    height = _grow(nodes, 2, tag=1)
    with nodes[1].client() as c:
        reply = c.http.post("/v1/checkpoint")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["size"] == height + 1
    names = {n.split("/")[0] for n in body["signers"]}
    assert names == {o.id for o in ORGS}  # every peer was up and cosigned
    verify_checkpoint(body["note"], roster_of(_roster(consortium), {}))


def _cosign(running: Running, text: str) -> tuple[int, str]:
    with running.client("bank-b") as c:
        reply = c.http.post("/v1/checkpoint/cosign", json={"checkpoint": text})
    return reply.status_code, reply.text


def test_a_node_cosigns_only_the_history_it_has(nodes: list[Running]) -> None:
    height = _grow(nodes, 2, tag=2)
    regulator = nodes[2]
    mine = regulator.node.ledger.height + 1
    cp = app_cosigner(regulator).checkpoint(mine)
    status, text = _cosign(regulator, cp.text())
    assert status == 200
    note = parse_note(json.loads(text)["note"])
    assert note.text == cp.text() and [s.name.split("/")[0] for s in note.signatures] == [
        "regulator"
    ]
    forked = Checkpoint(cp.origin, cp.size, bytes(32))
    beyond = Checkpoint(cp.origin, height + 50, cp.root)
    other = Checkpoint("sharechain/" + "00" * 32, cp.size, cp.root)
    for bad, reason in (
        (forked.text(), "a fork"),
        (beyond.text(), "does not cosign a history it does not have"),
        (other.text(), "not of sharechain/"),
        ("not a checkpoint\n", "needs an origin"),
    ):
        status, text = _cosign(regulator, bad)
        assert status == 409 and reason in json.loads(text)["detail"], text


def app_cosigner(running: Running) -> Any:
    return running.server.app.state.cosigner


def test_consistency_proofs_between_sizes(nodes: list[Running]) -> None:
    height = _grow(nodes, 3, tag=3)
    with nodes[1].client() as c:
        body = c.get_json("/v1/checkpoint/consistency", old=2, new=height + 1)
        verify_consistency(
            2,
            height + 1,
            bytes.fromhex(body["old_root"]),
            bytes.fromhex(body["new_root"]),
            [bytes.fromhex(p) for p in body["proof"]],
        )
        with pytest.raises(Exception, match="must not exceed"):
            c.get_json("/v1/checkpoint/consistency", old=3, new=2)
        with pytest.raises(Exception, match="not 1000"):
            c.get_json("/v1/checkpoint/consistency", old=1, new=1000)


def test_cli_against_a_node_exports_sealed_by_the_nodes(
    nodes: list[Running], consortium: Consortium, tmp_path: Path
) -> None:
    height = _grow(nodes, 2, tag=4)
    a = nodes[0]
    where = ("--node", a.url, "-d", a.node.config.data_dir)
    out = tmp_path / "from-node.jsonl"
    done = json.loads(_run("chain", "export", "--out", out, *where, "--json"))
    assert done["blocks"] >= height + 1
    lines = out.read_text().splitlines()
    summary = verify_export(lines, default_registry())
    assert summary.blocks == done["blocks"] == len(lines) - 1
    # One node's data directory holds one key: embedded, it cannot seal alone.
    refused = _run("chain", "export", "--out", tmp_path / "x", "-d", a.node.config.data_dir, code=2)
    assert "not a quorum" in refused and not (tmp_path / "x").exists()
    cp = json.loads(_run("chain", "checkpoint", *where, "--json"))
    assert cp["size"] >= height + 1 and len(cp["signers"]) >= 2
    proof = json.loads(_run("chain", "consistency", "1", str(cp["size"]), *where, "--json"))
    assert proof["new_root"] == cp["root"] and proof["old_size"] == 1
    note = tmp_path / "cp.note"
    note.write_text(cp["note"])
    assert parse_checkpoint(parse_note(cp["note"]).text).size == cp["size"]
    again = json.loads(_run("chain", "consistency", note, str(cp["size"]), *where, "--json"))
    assert again["proof"] == []
