"""A tampered store is quarantined on open; attestations are filed once.

Who is wrong when attestations disagree: `tests/security/test_attest_quorum.py`.
"""

from __future__ import annotations

import sqlite3

import httpx
import pytest
from node_helpers import Consortium, Running, committed_and_a_lie, run_node, shutdown
from test_replication import _records, _same_head, wait_until

from sharechain.errors import OrderingError
from sharechain.ledger.attestations import sign_attestation
from sharechain.ledger.store import Head
from sharechain.node.service import repair_store


def test_tampered_store_is_quarantined_then_resynced(
    consortium: Consortium, orderer: Running
) -> None:
    follower = run_node(consortium, "bank-b", orderer_url=orderer.url)
    with orderer.client() as client:
        for tag in range(3):
            client.submit(_records(consortium, "hospital-a", 10, tag=tag))
    wait_until(lambda: _same_head([orderer, follower]))
    shutdown(follower)
    db = consortium.node_dir("bank-b") / "ledger.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE state SET value = x'a0' WHERE key = 'org/hospital-a'")
    conn.close()
    tampered = run_node(consortium, "bank-b", orderer_url=orderer.url)
    try:
        assert tampered.node.problem is not None
        assert "failed verification" in tampered.node.problem
        with tampered.client() as client, pytest.raises(OrderingError, match="repair"):
            client.status()
        with httpx.Client(base_url=tampered.url) as http:
            ready = http.get("/v1/ready")
            assert ready.status_code == 503 and "repair" in ready.json()["problem"]
    finally:
        shutdown(tampered)
    moved = repair_store(consortium.node_dir("bank-b"))
    assert moved is not None and moved.exists()
    repaired = run_node(consortium, "bank-b", orderer_url=orderer.url)
    try:
        assert repaired.node.problem is None
        wait_until(lambda: _same_head([orderer, repaired]))
    finally:
        shutdown(repaired)


def test_an_attestation_served_poll_after_poll_is_filed_once(orderer: Running) -> None:
    head, bank, lie = committed_and_a_lie(orderer)
    node = orderer.node
    att = sign_attestation("bank-b", bank, lie)
    first = node.book.receive(att, node.public_key("bank-b"))
    assert first is not None and first.peer == "bank-b"
    # The same attestation again (every poll returns the latest few): no second conflict.
    assert node.book.receive(att, node.public_key("bank-b")) is None
    assert len(node.book.conflicts) == 1
    # One with the same height but another statement is checked afresh: forged is ignored.
    other = Head(head.height, head.hash, b"\x03" * 32, head.timestamp)
    forged = sign_attestation("bank-b", orderer.consortium.keys("regulator").signing, other)
    assert node.book.receive(forged, node.public_key("bank-b")) is None
    assert len(node.book.conflicts) == 1
    signed = sign_attestation("bank-b", bank, other)
    second = node.book.receive(signed, node.public_key("bank-b"))
    assert second is not None and second.theirs == signed
    assert len(node.book.conflicts) == 2
