"""Attack 5: one lying attester must not halt the honest majority; a diverged node stops itself.

Real nodes in this process (a solo orderer and two followers polling each
other for attestations). A node's stored state roots are tampered with a
SQLite trigger while it runs, so it commits and attests a state no peer has.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))

from node_helpers import ORGS, Consortium, Running, shutdown_all
from test_replication import _records, wait_until

from sharechain.errors import OrderingError
from sharechain.ledger.attestations import sign_attestation
from sharechain.ledger.quarantine import judge
from sharechain.ledger.store import Head
from sharechain.node.server import ServerThread
from sharechain.node.service import Node, NodeConfig
from sharechain.ordering.etcd_process import free_ports
from sharechain.storage.datadir import init_consortium

ORDERER = "hospital-a"


@pytest.fixture
def consortium(tmp_path: Path) -> Consortium:
    init_consortium(tmp_path / "consortium", ORGS, consortium="test")
    return Consortium(tmp_path / "consortium", tmp_path)


@pytest.fixture
def nodes(consortium: Consortium) -> Iterator[dict[str, Running]]:
    """Three nodes that know each other; hospital-a orders (solo)."""
    orgs = [o.id for o in ORGS]
    ports = dict(zip(orgs, free_ports(len(orgs)), strict=True))
    running: dict[str, Running] = {}
    try:
        for org in orgs:
            extra = {} if org == ORDERER else {"orderer_url": f"http://127.0.0.1:{ports[ORDERER]}"}
            node = Node(
                NodeConfig(
                    data_dir=consortium.node_dir(org),
                    org=org,
                    peers=tuple((o, f"http://127.0.0.1:{p}") for o, p in ports.items() if o != org),
                    poll_interval=0.2,
                    max_wait=0.005,
                    **extra,  # type: ignore[arg-type]
                )
            )
            node.start()
            running[org] = Running(node, ServerThread(node, port=ports[org]).start(), consortium)
        yield running
    finally:
        shutdown_all(running.values())


def test_a_lying_attester_is_reported_and_ignored(nodes: dict[str, Running]) -> None:
    orderer = nodes[ORDERER]
    node = orderer.node
    with orderer.client() as client:
        client.submit(_records(orderer.consortium, ORDERER, 5))
        head = node.store.head()
        assert head is not None
        lie = Head(head.height, head.hash, b"\x01" * 32, head.timestamp)
        att = sign_attestation("bank-b", orderer.consortium.keys("bank-b").signing, lie)
        conflict = node.book.receive(att, node.public_key("bank-b"))
        assert conflict is not None
        node.on_conflict(conflict)
        # Reported, not obeyed: the node goes on committing.
        assert node.halted is None
        status = client.attestation_status()
        assert status["suspects"] == ["bank-b"] and not status["quarantined"]
        assert status["conflicts"][0]["peer"] == "bank-b"
        receipts = client.submit(_records(orderer.consortium, ORDERER, 3, tag=9))
        assert {r.code for r in receipts} == {"valid"}
    metrics = httpx.get(f"{orderer.url}/metrics").text
    assert 'sharechain_attestation_suspect{peer="bank-b"} 1.0' in metrics
    with httpx.Client(base_url=orderer.url) as http:
        assert http.get("/v1/ready").status_code == 200
    # An attestation signed with another organisation's key proves nothing: not even a suspect.
    forged = sign_attestation("regulator", orderer.consortium.keys("bank-b").signing, lie)
    assert node.book.receive(forged, node.public_key("regulator")) is None


def test_a_node_with_a_tampered_state_quarantines_itself(nodes: dict[str, Running]) -> None:
    orderer = nodes[ORDERER]
    with orderer.client() as client:
        client.submit(_records(orderer.consortium, ORDERER, 5))
    tampered = nodes["regulator"]
    db = tampered.consortium.node_dir("regulator") / "ledger.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TRIGGER tamper AFTER INSERT ON blocks BEGIN "
            "UPDATE blocks SET state_root = zeroblob(32) WHERE height = NEW.height; END"
        )
    conn.close()
    with orderer.client() as client:
        for tag in range(1, 4):
            client.submit(_records(orderer.consortium, ORDERER, 5, tag=tag))
    wait_until(lambda: tampered.node.halted is not None)
    assert "quarantined" in (tampered.node.halted or "")
    assert "sharechain node repair" in (tampered.node.halted or "")
    assert tampered.node.judge.verdict.quorum == ("bank-b", ORDERER)
    # Its state is wrong: it serves no writes, no key releases, no reads until repaired.
    with tampered.client() as client, pytest.raises(OrderingError, match="quarantined"):
        client.submit(_records(orderer.consortium, "regulator", 1, tag=7))
    with httpx.Client(base_url=tampered.url) as http:
        ready = http.get("/v1/ready")
        assert ready.status_code == 503 and "repair" in ready.json()["halted"]
        assert http.get("/v1/custody/x/1/owner").status_code == 503
    assert "sharechain_ready 0.0" in httpx.get(f"{tampered.url}/metrics").text

    # The honest two report the tampered node (a suspect if they saw its attestations
    # before it stopped answering, else its quarantine as the peer's error) and go on.
    def reported(org: str) -> bool:
        node = nodes[org].node
        error = node.peer_errors.get("regulator") or ""
        return "regulator" in node.judge.verdict.suspects or "quarantined" in error

    for org in (ORDERER, "bank-b"):
        wait_until(lambda org=org: reported(org))
    with nodes["bank-b"].client() as client:
        receipts = client.submit(_records(orderer.consortium, "bank-b", 4, tag=8))
    assert {r.code for r in receipts} == {"valid"}
    assert orderer.node.halted is None and nodes["bank-b"].node.halted is None


def test_the_quorum_is_more_than_half_of_the_nodes(nodes: dict[str, Running]) -> None:
    node = nodes[ORDERER].node
    keys = nodes[ORDERER].consortium.keys
    with nodes[ORDERER].client() as client:
        client.submit(_records(nodes[ORDERER].consortium, ORDERER, 2))
    head = node.store.head()
    assert head is not None
    other = Head(head.height, head.hash, b"\x05" * 32, head.timestamp)
    conflicts = [
        c
        for org in ("bank-b", "regulator")
        if (
            c := node.book.receive(
                sign_attestation(org, keys(org).signing, other), node.public_key(org)
            )
        )
    ]
    assert len(conflicts) == 2
    # Two of three agree against us: we are the odd one out.
    assert judge(conflicts, 3).quorum == ("bank-b", "regulator")
    # Two of four, or two peers that disagree with each other, are no quorum.
    assert judge(conflicts, 4).against_us is None
    assert judge(conflicts, 4).suspects == ("bank-b", "regulator")
    assert judge(conflicts[:1], 3).suspects == ("bank-b",)
