"""A newly admitted organisation's node joins a running 3-node network and catches up
without anyone stopping; once removed, its former peers refuse it with 403 and a reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from node_helpers import ORGS as SPECS
from node_helpers import Consortium, Running, shutdown
from test_replication import wait_until
from test_snapshot_start import ORGS, Net, _with_settings
from typer.testing import CliRunner

from sharechain.api.client import NodeClient
from sharechain.cli.main import app
from sharechain.crypto.keyfile import OrgKeys, save_keys
from sharechain.errors import AccessDeniedError, AuthenticationError
from sharechain.ledger.transactions import sign_transaction
from sharechain.node.joining import JoinRefusedError, join_network
from sharechain.node.server import ServerThread
from sharechain.node.service import Node, NodeConfig
from sharechain.node.snapshots import start_from_snapshot
from sharechain.storage.datadir import init_consortium
from sharechain.storage.snapshot_format import SnapshotRefusedError

NEW = "clinic-d"


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    init_consortium(tmp_path / "consortium", SPECS, consortium="test")
    _with_settings(tmp_path / "consortium", snapshot_blocks=3)
    network = Net(Consortium(tmp_path / "consortium", tmp_path))
    try:
        for org in ORGS:
            network.start(org)
        yield network
    finally:
        for org in list(network.running):
            network.stop(org)


def _cli(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    value: dict[str, object] = json.loads(result.output)
    return value


def _seen_by(net: Net, org: str) -> None:
    """Wait until `org`'s node has every block hospital-a's has: a proposal made through
    hospital-a's node is voted on through another, which resolves its id from its chain."""
    proposer, voter = net.running["hospital-a"].node, net.running[org].node
    wait_until(lambda: voter.ledger.height >= proposer.ledger.height)


def _as(net: Net, org: str) -> list[str]:
    key = net.consortium.source / "keys" / f"{org}.key"
    return ["--as", org, "--node", net.url(org), "--key", str(key)]


def test_an_admitted_member_joins_a_running_network_and_a_removed_one_is_refused(
    net: Net, tmp_path: Path
) -> None:
    for tag in range(1, 4):
        net.submit("hospital-a", tag)
    # The new organisation makes its keys; an admin proposes it with the public halves.
    new_dir = tmp_path / "clinic-d-node"
    keys = OrgKeys.generate(NEW)
    save_keys(keys, new_dir / "keys" / f"{NEW}.key")
    public = [
        "--sign-key",
        keys.signing.public_key.hex(),
        "--enc-key",
        keys.encryption_public.hex(),
    ]
    proposed = _cli("org", "propose", NEW, "--role", "member", *public, *_as(net, "hospital-a"))
    pid = str(proposed["proposal"])

    # Not admitted yet: joining is refused with the reason, and nothing is written.
    refused = CliRunner().invoke(
        app,
        ["node", "start", "--org", NEW, "--data-dir", str(new_dir), "--join", net.url("bank-b")],
    )
    assert refused.exit_code == 2 and "admitted" in refused.output
    assert not (new_dir / "consortium.json").exists()

    _seen_by(net, "bank-b")
    _cli("org", "vote", pid, *_as(net, "bank-b"))
    a = net.running["hospital-a"]
    # Every node has committed the admission (the snapshot below comes from the
    # regulator's, which may follow a little behind hospital-a's).
    admitted = keys.signing.public_key
    wait_until(lambda: all(r.node.public_key(NEW) == admitted for r in net.running.values()))
    with pytest.raises(JoinRefusedError, match="genesis-hash"):
        join_network(new_dir, NEW, net.url("bank-b"), genesis_hash=bytes(32))
    joined = join_network(new_dir, NEW, net.url("bank-b"), genesis_hash=a.node.datadir.genesis_hash)
    assert {o for o, _ in joined.peers} == set(ORGS)
    assert joined.orderer_url == net.url("hospital-a")

    # It starts from a vouched snapshot and syncs forward while the others keep committing.
    wait_until(lambda: bool(a.node.snapshots.held()))
    # An organisation the chain has not admitted (or not yet, at that node) is told so.
    stranger = "clinic-e"
    save_keys(OrgKeys.generate(stranger), new_dir / "keys" / f"{stranger}.key")
    with pytest.raises(SnapshotRefusedError, match=f"not committed {stranger}'s admission yet"):
        start_from_snapshot(new_dir, stranger, net.url("regulator"), joined.peers)
    assert not list(new_dir.glob("ledger.db*"))
    installed = start_from_snapshot(new_dir, NEW, net.url("regulator"), joined.peers)
    assert installed.info.height >= 3
    node = Node(
        NodeConfig(
            data_dir=new_dir,
            org=NEW,
            orderer_url=joined.orderer_url,
            peers=joined.peers,
            poll_interval=0.2,
        )
    )
    node.start()
    clinic = Running(node, ServerThread(node).start(), net.consortium)
    try:
        net.submit("bank-b", 10)
        wait_until(lambda: node.store.head() == a.node.store.head())
        assert node.problem is None and node.halted is None
        # It works as a member: its own transaction, through its own node.
        record = sign_transaction(keys.signing, "notary.record", NEW, {"digest": b"\x07" * 32})
        with NodeClient(clinic.url, NEW, keys.signing) as client:
            assert client.submit([record.raw])[0].code == "valid"
        wait_until(lambda: node.store.head() == a.node.store.head())

        # Removed: its former peers answer its signed requests with 403 and the reason.
        removal = _cli("org", "remove", NEW, *_as(net, "hospital-a"))
        _seen_by(net, "bank-b")
        _cli("org", "vote", str(removal["proposal"]), *_as(net, "bank-b"))
        wait_until(lambda: all(r.node.removed_reason(NEW) for r in net.running.values()))
        for org in ORGS:
            with (
                NodeClient(net.url(org), NEW, keys.signing) as client,
                pytest.raises(AccessDeniedError, match="removed from the consortium"),
            ):
                client.status()
        # Someone else claiming to be it is not told anything more than 401.
        impostor = OrgKeys.generate(NEW).signing
        with (
            NodeClient(net.url("bank-b"), NEW, impostor) as client,
            pytest.raises(AuthenticationError),
        ):
            client.status()
    finally:
        shutdown(clinic)
