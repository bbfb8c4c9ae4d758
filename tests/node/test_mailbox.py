"""The computation routes of a node: the session record and its organisation's mailbox.

One node (hospital-a, solo); bank-b and the regulator sign requests to it. The
mailbox on it is hospital-a's: the other parties post, only hospital-a reads.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from node_helpers import Running
from test_replication import wait_until

from sharechain.api.client import raise_for_reply
from sharechain.contracts import derive_id
from sharechain.contracts.computations import PROPOSE, REJECT
from sharechain.errors import AccessDeniedError, EncodingError
from sharechain.ledger.transactions import sign_transaction
from sharechain.sharing import mailbox
from sharechain.sharing.mailbox import MAX_MESSAGE

HOUR = 3_600_000


def submit(running: Running, org: str, type: str, payload: dict[str, object]) -> bytes:
    stx = sign_transaction(running.consortium.keys(org).signing, type, org, payload)
    with running.client(org) as c:
        return c.submit_checked(stx.raw).tx_id


def session(running: Running) -> str:
    body = {
        "kind": "psi",
        "parties": ["bank-b", "hospital-a"],
        "client": "bank-b",
        "purpose": "blacklist match",
        "duration": HOUR,
        "max_set_size": 10,
    }
    return derive_id("computation", submit(running, "bank-b", PROPOSE, body))


def post(running: Running, org: str, sid: str, kind: str, body: bytes) -> httpx.Response:
    with running.client(org) as c:
        return c.http.post(f"/v1/computations/{sid}/mailbox/{kind}", json={"body": body.hex()})


def read(running: Running, org: str, sid: str, kind: str) -> httpx.Response:
    with running.client(org) as c:
        return c.http.get(f"/v1/computations/{sid}/mailbox/{kind}")


def test_a_party_posts_and_only_the_node_organisation_reads(orderer: Running) -> None:
    sid = session(orderer)
    reply = post(orderer, "bank-b", sid, "psi.request", b"blinded")
    raise_for_reply(reply)
    assert reply.json() == {
        "session": sid,
        "to": "hospital-a",
        "sender": "bank-b",
        "kind": "psi.request",
        "size": 7,
    }
    mine = read(orderer, "hospital-a", sid, "psi.request")
    assert mine.json()["messages"] == [{"sender": "bank-b", "body": b"blinded".hex()}]
    # The sender cannot read the recipient's mailbox, nor replace what it sent.
    assert read(orderer, "bank-b", sid, "psi.request").status_code == 403
    again = post(orderer, "bank-b", sid, "psi.request", b"other")
    assert again.status_code == 403 and "second one is refused" in again.json()["detail"]


def test_strangers_and_bad_kinds_are_refused(orderer: Running) -> None:
    sid = session(orderer)
    stranger = post(orderer, "regulator", sid, "psi.request", b"x")
    assert stranger.status_code == 403 and "only the parties" in stranger.json()["detail"]
    assert post(orderer, "bank-b", sid, "Bad Kind", b"x").status_code in (404, 422)
    assert post(orderer, "bank-b", "ab" * 32, "psi.request", b"x").status_code == 404
    # A supervisor reads the session record, a stranger to it could not.
    with orderer.client("regulator") as c:
        view = c.get_json(f"/v1/computations/{sid}")
    assert view["parties"] == ["bank-b", "hospital-a"] and view["client"] == "bank-b"
    assert view["status"] == "proposed" and view["limits"] == {"max_set_size": 10}


def test_oversized_messages_are_refused(orderer: Running) -> None:
    sid = session(orderer)
    reply = post(orderer, "bank-b", sid, "psi.request", bytes(MAX_MESSAGE + 1))
    assert reply.status_code in (400, 413, 422)
    assert read(orderer, "hospital-a", sid, "psi.request").json()["messages"] == []


def test_a_rejected_session_drops_its_mailbox(orderer: Running) -> None:
    sid = session(orderer)
    raise_for_reply(post(orderer, "bank-b", sid, "psi.request", b"blinded"))
    mailbox = orderer.node.datadir.path / "mailbox" / sid
    assert mailbox.exists()
    submit(orderer, "regulator", REJECT, {"session": sid, "reason": "no legal basis"})
    wait_until(lambda: read(orderer, "hospital-a", sid, "psi.request").status_code == 404)
    assert not mailbox.exists()
    late = post(orderer, "bank-b", sid, "psi.other", b"late")
    assert late.status_code == 404 and "rejected on the chain" in late.json()["detail"]


def test_a_session_holds_a_bounded_number_of_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mailbox, "MAX_MESSAGES", 2)
    store = mailbox.MailboxStore(tmp_path)
    store.put("ab", "hospital-a", "bank-b", "agg.announce", b"1")
    store.put("ab", "bank-b", "hospital-a", "agg.announce", b"2")
    with pytest.raises(AccessDeniedError, match="maximum of 2 messages"):
        store.put("ab", "bank-b", "regulator", "agg.announce", b"3")
    with pytest.raises(EncodingError, match="not a lowercase name"):
        store.put("ab", "bank-b", "regulator", "../escape", b"3")
    with pytest.raises(EncodingError, match="session id is hex"):
        store.put("../ab", "bank-b", "regulator", "agg.x", b"3")
    assert store.get("ab", "bank-b", "agg.announce") == {"hospital-a": b"2"}
    assert store.drop("ab") and store.count("ab") == 0
