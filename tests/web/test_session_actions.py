"""A computation session's Approve and Deny buttons: the supervisor's approver decides, the
server checks the operator's role, the CSRF token and the organisation's standing, and the
chain records which operator acted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from web_kit import GRANTEE, ORGS, OWNER, PASSWORD, SUPERVISOR, Chain, csrf_of, login, node_dir
from web_testclient import TestClient

from sharechain.contracts import derive_id
from sharechain.contracts import privacy_queries as pq
from sharechain.node.app import create_app
from sharechain.node.service import Node, NodeConfig
from sharechain.storage.datadir import init_consortium
from sharechain.web import mount


def _psi(chain: Chain, parties: tuple[str, str] = (OWNER, GRANTEE)) -> str:
    payload = {
        "kind": "psi",
        "parties": list(parties),
        "purpose": "blacklist match",
        "max_set_size": 100,
        "duration": 3_600_000,
    }
    tx = chain.send(parties[0], "computation.propose", payload).tx_id
    return derive_id("computation", tx)


@pytest.fixture
def regulator(tmp_path: Path) -> Iterator[tuple[Chain, TestClient]]:
    """The supervisor's node (ordering alone) with its console and operators."""
    source = tmp_path / "consortium"
    init_consortium(source, ORGS, consortium="test")
    config = NodeConfig(
        data_dir=node_dir(source, tmp_path, SUPERVISOR), org=SUPERVISOR, max_wait=0.005
    )
    node = Node(config)
    node.start()
    try:
        app = create_app(node, (mount,))
        for name, role in (("rita", "approver"), ("vic", "viewer")):
            app.state.console.accounts.add(name, role, PASSWORD)
        with TestClient(app) as client:
            yield Chain(source, node), client
    finally:
        node.stop()


def _last_payload(chain: Chain, sid: str) -> dict[str, object]:
    from sharechain.codec import decode_trusted
    from sharechain.contracts import queries as q
    from sharechain.ledger.transactions import decode_transaction

    e = q.audit(chain.node.store, computation_id=sid, proofs=False)[-1]
    block = decode_trusted(chain.node.store.block_bytes(e.height))
    return dict(decode_transaction(block["txs"][e.index]).tx.payload)


def test_the_supervisors_approver_approves_and_denies(
    regulator: tuple[Chain, TestClient],
) -> None:
    chain, client = regulator
    sid, other = _psi(chain), _psi(chain)
    login(client, "rita")
    page = client.get(f"/ui/privacy/sessions/{sid}").text
    assert f"/ui/privacy/sessions/{sid}/approve" in page
    assert f"/ui/privacy/sessions/{sid}/deny" in page
    r = client.post(f"/ui/privacy/sessions/{sid}/approve", data={"csrf": csrf_of(page)})
    assert r.status_code == 200 and r.url.path == f"/ui/privacy/sessions/{sid}"
    assert "approve computation" in r.text and "done" in r.text
    c = pq.computation(chain.node.store, sid)
    assert c.raw["approved_by"] == SUPERVISOR and c.raw["operators"] == {SUPERVISOR: "rita"}
    assert _last_payload(chain, sid) == {"session": sid, "operator": "rita"}
    # Approved: no second Approve button; the trail names the person.
    assert "/approve" not in r.text and "by regulator (rita)" in r.text

    page = client.get(f"/ui/privacy/sessions/{other}").text
    data = {"csrf": csrf_of(page), "reason": "no lawful purpose"}
    r = client.post(f"/ui/privacy/sessions/{other}/deny", data=data)
    assert "deny computation" in r.text and "done" in r.text
    denied = pq.computation(chain.node.store, other)
    assert denied.status == "rejected" and denied.raw["rejected"]["reason"] == "no lawful purpose"
    assert _last_payload(chain, other) == {
        "session": other,
        "reason": "no lawful purpose",
        "operator": "rita",
    }
    assert "Deny" not in r.text.split("<h2>Parties</h2>")[0]  # rejected: nothing left to decide


def test_a_viewer_sees_no_buttons_and_forgeries_are_refused(
    regulator: tuple[Chain, TestClient],
) -> None:
    chain, client = regulator
    sid = _psi(chain)
    login(client, "vic")
    page = client.get(f"/ui/privacy/sessions/{sid}").text
    assert "/approve" not in page and "/deny" not in page
    height = chain.node.ledger.height
    r = client.post(f"/ui/privacy/sessions/{sid}/approve", data={"csrf": csrf_of(page)})
    assert r.status_code == 403 and "needs the role admin or approver" in r.text
    client.post("/ui/logout", data={"csrf": csrf_of(page)})
    login(client, "rita")
    for data in ({}, {"csrf": "0" * 64}):
        r = client.post(f"/ui/privacy/sessions/{sid}/deny", data=data)
        assert r.status_code == 403 and "CSRF token" in r.text
    token = csrf_of(client.get("/ui/").text)
    missing = client.post("/ui/privacy/sessions/" + "ab" * 32 + "/approve", data={"csrf": token})
    assert missing.status_code == 404 and "no computation" in missing.text
    assert chain.node.ledger.height == height
    assert pq.computation(chain.node.store, sid).status == "proposed"


def test_a_party_denies_but_only_a_supervisor_approves(chain: Chain, client: TestClient) -> None:
    sid = _psi(chain)
    theirs = _psi(chain, (GRANTEE, SUPERVISOR))
    login(client, "anna")  # hospital-a's approver: a party, not a supervisor
    page = client.get(f"/ui/privacy/sessions/{sid}").text
    assert f"/ui/privacy/sessions/{sid}/deny" in page and "/approve" not in page
    height = chain.node.ledger.height
    token = csrf_of(page)
    r = client.post(f"/ui/privacy/sessions/{sid}/approve", data={"csrf": token})
    assert r.status_code == 403 and "only a supervisor approves" in r.text
    r = client.post(f"/ui/privacy/sessions/{theirs}/deny", data={"csrf": token})
    assert r.status_code == 403 and "is neither" in r.text
    assert chain.node.ledger.height == height  # nothing was signed
    r = client.post(f"/ui/privacy/sessions/{sid}/deny", data={"csrf": token, "reason": "no"})
    assert "done" in r.text and pq.computation(chain.node.store, sid).status == "rejected"
