"""Actions: the role is checked by the server, the CSRF token too, and the chain records
which operator acted."""

from __future__ import annotations

import pytest
from web_kit import GRANTEE, OWNER, Chain, csrf_of, login
from web_testclient import TestClient

from sharechain.contracts import derive_id
from sharechain.contracts import queries as q
from sharechain.ledger.transactions import decode_transaction


def _payload_of_last(chain: Chain, type: str) -> dict[str, object]:
    store = chain.node.store
    entries = [e for e in q.audit(store, org=OWNER, proofs=False) if e.type == type]
    assert entries, f"no {type} by {OWNER}"
    from sharechain.codec import decode_trusted

    e = entries[-1]
    block = decode_trusted(store.block_bytes(e.height))
    return dict(decode_transaction(block["txs"][e.index]).tx.payload)


def test_approver_approves_and_the_chain_names_the_operator(
    chain: Chain, client: TestClient
) -> None:
    ds = chain.register()
    rid = chain.request(ds)
    login(client, "anna")
    inbox = client.get("/ui/inbox").text
    assert f"/ui/requests/{rid}/approve" in inbox
    r = client.post(f"/ui/requests/{rid}/approve", data={"csrf": csrf_of(inbox)})
    assert r.status_code == 200 and "approve request" in r.text and "done" in r.text
    req = q.request(chain.node.store, rid)
    assert req.approvals == ((OWNER, "owner"),) and req.status == "open"
    payload = _payload_of_last(chain, "access.approve")
    assert payload == {"request": rid, "operator": "anna"}
    # The request left hospital-a's inbox; the trail shows who approved.
    assert rid not in client.get("/ui/inbox").text
    assert "by hospital-a (anna)" in client.get(f"/ui/datasets/{ds}").text


def test_deny_records_the_reason(chain: Chain, client: TestClient) -> None:
    rid = chain.request(chain.register())
    login(client, "adam")
    token = csrf_of(client.get("/ui/inbox").text)
    client.post(f"/ui/requests/{rid}/deny", data={"csrf": token, "reason": "no consent"})
    assert q.request(chain.node.store, rid).status == "rejected"
    assert _payload_of_last(chain, "access.reject") == {
        "request": rid,
        "reason": "no consent",
        "operator": "adam",
    }


def test_a_viewer_sees_no_buttons_and_a_forged_post_is_refused(
    chain: Chain, client: TestClient
) -> None:
    ds = chain.register()
    rid = chain.request(ds)
    login(client, "vera")
    inbox = client.get("/ui/inbox").text
    assert "Approve" not in inbox and "Deny" not in inbox and "/approve" not in inbox
    token = csrf_of(inbox)  # the logout form's: a valid token of this session
    height = chain.node.ledger.height
    r = client.post(f"/ui/requests/{rid}/approve", data={"csrf": token})
    assert r.status_code == 403 and "needs the role admin or approver" in r.text
    assert chain.node.ledger.height == height
    assert q.request(chain.node.store, rid).approvals == ()


@pytest.mark.parametrize("token", [None, "", "0" * 64])
def test_an_action_without_its_csrf_token_is_refused(
    chain: Chain, client: TestClient, token: str | None
) -> None:
    rid = chain.request(chain.register())
    login(client, "anna")
    data = {} if token is None else {"csrf": token}
    r = client.post(f"/ui/requests/{rid}/approve", data=data)
    assert r.status_code == 403 and "CSRF token" in r.text
    assert q.request(chain.node.store, rid).approvals == ()


def test_another_sessions_token_does_not_do(chain: Chain, client: TestClient) -> None:
    rid = chain.request(chain.register())
    login(client, "adam")
    old = csrf_of(client.get("/ui/").text)
    client.post("/ui/logout", data={"csrf": old})
    login(client, "adam")
    r = client.post(f"/ui/requests/{rid}/approve", data={"csrf": old})
    assert r.status_code == 403


def test_revoke_after_joint_approval(chain: Chain, client: TestClient) -> None:
    ds = chain.register()
    rid = chain.request(ds)
    chain.send("regulator", "access.approve", {"request": rid})
    login(client, "anna")
    client.post(f"/ui/requests/{rid}/approve", data={"csrf": csrf_of(client.get("/ui/").text)})
    gid = q.request(chain.node.store, rid).grant
    page = client.get(f"/ui/datasets/{ds}").text
    assert f"/ui/grants/{gid}/revoke" in page
    r = client.post(
        f"/ui/grants/{gid}/revoke?ds={ds}", data={"csrf": csrf_of(page), "reason": "study over"}
    )
    assert r.status_code == 200 and r.url.path == f"/ui/datasets/{ds}"
    assert q.grant(chain.node.store, gid).status == "revoked"
    assert _payload_of_last(chain, "grant.revoke")["operator"] == "anna"
    assert "revoked" in r.text


def test_a_refused_transaction_is_reported_not_hidden(chain: Chain, client: TestClient) -> None:
    rid = chain.request(chain.register())
    chain.send(GRANTEE, "access.cancel", {"request": rid})
    login(client, "anna")
    r = client.post(f"/ui/requests/{rid}/approve", data={"csrf": csrf_of(client.get("/ui/").text)})
    assert "refused by the chain (bad_state" in r.text


def test_only_admins_vote(chain: Chain, client: TestClient) -> None:
    propose = {
        "action": "admit",
        "org": "clinic-c",
        "roles": ["member"],
        "sign_key": bytes(range(32)),
        "enc_key": bytes(range(1, 33)),
        "name": "Clinic C",
    }
    pid = derive_id("proposal", chain.send(GRANTEE, "org.propose", propose).tx_id)
    login(client, "anna")
    page = client.get("/ui/org").text
    assert "/vote/yes" not in page
    r = client.post(f"/ui/proposals/{pid}/vote/yes", data={"csrf": csrf_of(page)})
    assert r.status_code == 403 and "needs the role admin" in r.text
    client.post("/ui/logout", data={"csrf": csrf_of(page)})
    login(client, "adam")
    page = client.get("/ui/org").text
    assert f"/ui/proposals/{pid}/vote/yes" in page
    client.post(f"/ui/proposals/{pid}/vote/yes", data={"csrf": csrf_of(page)})
    (proposal,) = q.proposals(chain.node.store)
    assert OWNER in proposal.yes
    assert _payload_of_last(chain, "org.vote") == {"proposal": pid, "approve": True,
                                                   "operator": "adam"}  # fmt: skip
