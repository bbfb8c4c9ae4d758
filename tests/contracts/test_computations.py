"""The computations contract: sessions, approvals, commits, results, receipts and deadlines."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from contracts_kit import Clock, Net

from sharechain.contracts import computations as comp
from sharechain.contracts import derive_id
from sharechain.crypto import rangeproof
from sharechain.ledger.state import StateReader

HOUR = 3_600_000


def with_contract(path: Path, clock: Clock, governance: dict[str, Any] | None) -> Net:
    return Net(path, clock, governance)


@pytest.fixture
def chain(tmp_path: Path, clock: Clock) -> Iterator[Net]:
    net = with_contract(tmp_path / "chain", clock, None)
    yield net
    net.emb.close()


def propose(net: Net, by: str = "hospital-a", **extra: Any) -> str:
    payload = {
        "kind": "psi",
        "parties": [by, "hospital-b"],
        "purpose": "blacklist match",
        "duration": HOUR,
        "max_set_size": 100,
        **extra,
    }
    return derive_id("computation", net.ok(by, comp.PROPOSE, payload).tx_id)


def get(net: Net, sid: str) -> dict[str, Any]:
    value: dict[str, Any] = net.state(comp.computation_key(sid))
    return value


def refused(net: Net, org: str, type: str, payload: dict[str, Any], code: str, text: str) -> None:
    r = net.send(org, type, payload)
    assert r.code == code and text in r.reason, (r.code, r.reason)


def test_psi_session_from_proposal_to_receipts(chain: Net) -> None:
    sid = propose(chain)
    assert get(chain, sid)["status"] == "proposed"
    chain.ok("hospital-b", comp.ACCEPT, {"session": sid})
    assert get(chain, sid)["status"] == "proposed"  # the supervisor has not approved yet
    refused(chain, "hospital-b", comp.APPROVE, {"session": sid}, "denied", "supervisor")
    chain.ok("regulator", comp.APPROVE, {"session": sid})
    assert get(chain, sid)["status"] == "open"
    digest = hashlib.sha256(b"request").digest()
    refused(
        chain,
        "hospital-a",
        comp.COMMIT,
        {"session": sid, "digest": digest, "size": 101},
        "denied",
        "over this session's cap of 100",
    )
    chain.ok("hospital-a", comp.COMMIT, {"session": sid, "digest": digest, "size": 100})
    refused(
        chain,
        "hospital-a",
        comp.COMMIT,
        {"session": sid, "digest": digest, "size": 5},
        "duplicate",
        "second one is refused",
    )
    refused(
        chain,
        "hospital-a",
        comp.RESULT,
        {"session": sid, "intersection_size": 3},
        "bad_state",
        "both parties must commit",
    )
    chain.ok("hospital-b", comp.COMMIT, {"session": sid, "digest": digest, "size": 40})
    refused(
        chain,
        "hospital-b",
        comp.RESULT,
        {"session": sid, "intersection_size": 3},
        "denied",
        "only the PSI client",
    )
    refused(
        chain,
        "hospital-a",
        comp.RESULT,
        {"session": sid, "intersection_size": 41},
        "bad_payload",
        "larger than either set",
    )
    chain.ok("hospital-a", comp.RESULT, {"session": sid, "intersection_size": 3})
    value = get(chain, sid)
    assert value["status"] == "done" and value["result"]["intersection_size"] == 3
    for org in ("hospital-a", "hospital-b"):
        chain.ok(org, comp.RECEIPT, {"session": sid})
    refused(chain, "clinic-c", comp.RECEIPT, {"session": sid}, "denied", "only a party")
    assert get(chain, sid)["receipts"] == ["hospital-a", "hospital-b"]


def aggregate_session(chain: Net, length: int = 2, dropouts: int = 1) -> str:
    parties = ["hospital-a", "hospital-b", "clinic-c", "insurer-d"]
    sid = propose(
        chain,
        kind="aggregate",
        parties=parties,
        length=length,
        bits=16,
        max_dropouts=dropouts,
        supervisor_approval=False,
    )
    for org in parties[1:]:
        chain.ok(org, comp.ACCEPT, {"session": sid})
    assert get(chain, sid)["status"] == "open"
    return sid


def proved_input(sid: str, org: str, values: list[int]) -> dict[str, Any]:
    commitments, proofs = [], []
    for i, v in enumerate(values):
        context = rangeproof.session_context(bytes.fromhex(sid), org, i)
        c, _, proof = rangeproof.prove_value(v, 16, context)
        commitments.append(c)
        proofs.append(proof)
    digest = hashlib.sha256(b"".join(commitments)).digest()
    return {
        "session": sid,
        "digest": digest,
        "size": len(values),
        "commitments": commitments,
        "proofs": proofs,
    }


def test_aggregation_commits_are_checked_and_dropouts_bounded(chain: Net) -> None:
    sid = aggregate_session(chain)
    good = proved_input(sid, "hospital-a", [5, 7])
    chain.ok("hospital-a", comp.COMMIT, good)
    # A's proofs are bound to A: B cannot present them as its own.
    refused(chain, "hospital-b", comp.COMMIT, {**good}, "bad_payload", "range proof refused")
    wrong_digest = {**proved_input(sid, "hospital-b", [1, 2]), "digest": bytes(32)}
    refused(chain, "hospital-b", comp.COMMIT, wrong_digest, "bad_payload", "SHA-256")
    refused(
        chain,
        "hospital-b",
        comp.COMMIT,
        {"session": sid, "digest": bytes(32), "size": 3},
        "bad_payload",
        "takes 2 values",
    )
    chain.ok("hospital-b", comp.COMMIT, proved_input(sid, "hospital-b", [1, 2]))
    two = {"session": sid, "contributors": ["hospital-a", "hospital-b"], "sums_digest": bytes(32)}
    refused(chain, "hospital-a", comp.RESULT, two, "bad_state", "2 parties dropped out")
    chain.ok("clinic-c", comp.COMMIT, {"session": sid, "digest": bytes(32), "size": 2})
    liar = {**two, "contributors": ["hospital-a", "hospital-b", "insurer-d"]}
    refused(chain, "hospital-a", comp.RESULT, liar, "bad_payload", "exactly the parties")
    three = {**two, "contributors": ["hospital-a", "hospital-b", "clinic-c"]}
    chain.ok("hospital-a", comp.RESULT, three)
    assert get(chain, sid)["result"]["contributors"] == three["contributors"]


def test_bad_proposals_are_refused(chain: Net) -> None:
    base = {
        "kind": "psi",
        "parties": ["hospital-a", "hospital-b"],
        "purpose": "match",
        "duration": HOUR,
        "max_set_size": 10,
    }
    cases = [
        ({"kind": "vote"}, "bad_payload", "kind must be"),
        ({"parties": ["hospital-b", "hospital-a"]}, "bad_payload", "start with the proposer"),
        ({"parties": ["hospital-a", "nobody"]}, "denied", "nobody is not an active member"),
        ({"parties": ["hospital-a", "hospital-b", "clinic-c"]}, "bad_payload", "exactly two"),
        ({"max_set_size": 0}, "bad_payload", "max_set_size"),
        ({"duration": 10**12}, "bad_payload", "duration"),
        ({"kind": "aggregate", "length": 1}, "bad_payload", "at least three parties"),
        (
            {
                "kind": "aggregate",
                "parties": ["hospital-a", "hospital-b", "clinic-c"],
                "length": 1,
                "max_dropouts": 1,
            },
            "bad_payload",
            "max_dropouts must be at most 0",
        ),
        (
            {
                "kind": "aggregate",
                "parties": ["hospital-a", "hospital-b", "clinic-c"],
                "length": 1,
                "bits": 63,
            },
            "bad_payload",
            "64 bits",
        ),
        ({"supervisor_approval": "yes"}, "bad_payload", "true or false"),
    ]
    for change, code, text in cases:
        refused(chain, "hospital-a", comp.PROPOSE, {**base, **change}, code, text)


def test_deadlines_end_sessions_with_a_clear_state(chain: Net, clock: Clock) -> None:
    sid = propose(chain)
    refused(chain, "hospital-b", comp.CLOSE, {"session": sid}, "bad_state", "runs until")
    clock.t += 2 * HOUR / 1000
    refused(chain, "hospital-b", comp.ACCEPT, {"session": sid}, "expired", "close it")
    refused(chain, "clinic-c", comp.CLOSE, {"session": sid}, "denied", "supervisor")
    chain.ok("hospital-b", comp.CLOSE, {"session": sid})
    value = get(chain, sid)
    assert value["status"] == "expired"
    assert value["expired"]["without_input"] == ["hospital-a", "hospital-b"]
    refused(chain, "hospital-b", comp.CLOSE, {"session": sid}, "bad_state", "is expired")


def test_rejection_and_strangers(chain: Net) -> None:
    sid = propose(chain)
    refused(chain, "clinic-c", comp.ACCEPT, {"session": sid}, "denied", "only a party")
    refused(chain, "hospital-a", comp.ACCEPT, {"session": sid}, "duplicate", "already accepted")
    chain.ok("regulator", comp.REJECT, {"session": sid, "reason": "no legal basis"})
    value = get(chain, sid)
    assert value["status"] == "rejected" and value["rejected"]["by"] == "regulator"
    refused(chain, "hospital-b", comp.ACCEPT, {"session": sid}, "bad_state", "is rejected")
    refused(chain, "hospital-b", comp.ACCEPT, {"session": "ab" * 32}, "not_found", "computation")


def test_proposals_count_as_requests_in_the_risk_counters(chain: Net) -> None:
    propose(chain)
    propose(chain)
    counts = [v for _, v in StateReader(chain.store).scan("risk/count/hospital-a/requests/")]
    assert sum(counts) == 2


def test_a_suspended_organisation_cannot_propose(tmp_path: Path, clock: Clock) -> None:
    net = with_contract(tmp_path / "strict", clock, {"risk": {"max_requests": 1}})
    try:
        propose(net)
        propose(net)  # crosses the threshold: an alert suspends hospital-a
        payload = {
            "kind": "psi",
            "parties": ["hospital-a", "hospital-b"],
            "purpose": "x",
            "duration": HOUR,
            "max_set_size": 1,
        }
        refused(net, "hospital-a", comp.PROPOSE, payload, "suspended", "risk alert")
    finally:
        net.emb.close()


def test_the_holder_may_offer_and_the_named_client_is_capped_and_records(chain: Net) -> None:
    sid = propose(
        chain,
        by="hospital-b",
        parties=["hospital-b", "hospital-a"],
        client="hospital-a",
        dataset="ab" * 32,
        column="name",
        supervisor_approval=False,
    )
    value = get(chain, sid)
    assert value["client"] == "hospital-a" and value["input"]["column"] == "name"
    chain.ok("hospital-a", comp.ACCEPT, {"session": sid})
    digest = hashlib.sha256(b"x").digest()
    refused(
        chain,
        "hospital-a",
        comp.COMMIT,
        {"session": sid, "digest": digest, "size": 101},
        "denied",
        "cap of 100",
    )
    chain.ok("hospital-b", comp.COMMIT, {"session": sid, "digest": digest, "size": 500})
    chain.ok("hospital-a", comp.COMMIT, {"session": sid, "digest": digest, "size": 10})
    refused(
        chain,
        "hospital-b",
        comp.RESULT,
        {"session": sid, "intersection_size": 1},
        "denied",
        "only the PSI client",
    )
    chain.ok("hospital-a", comp.RESULT, {"session": sid, "intersection_size": 1})
    # The client is counted, not the holder that proposed.
    counts = [v for _, v in StateReader(chain.store).scan("risk/count/hospital-a/requests/")]
    assert sum(counts) == 1


def test_a_client_that_is_not_a_party_is_refused(chain: Net) -> None:
    payload = {
        "kind": "psi",
        "parties": ["hospital-b", "hospital-a"],
        "client": "clinic-c",
        "purpose": "x",
        "duration": HOUR,
        "max_set_size": 5,
    }
    refused(chain, "hospital-b", comp.PROPOSE, payload, "bad_payload", "one of the two parties")


def test_psi_sessions_per_client_are_capped_per_window(chain: Net) -> None:
    for _ in range(comp.MAX_SESSIONS_PER_WINDOW):
        propose(chain, by="hospital-b", parties=["hospital-b", "hospital-a"], client="hospital-a")
    payload = {
        "kind": "psi",
        "parties": ["hospital-b", "hospital-a"],
        "client": "hospital-a",
        "purpose": "x",
        "duration": HOUR,
        "max_set_size": 5,
    }
    refused(
        chain, "hospital-b", comp.PROPOSE, payload, "denied", "PSI sessions in this risk window"
    )


def test_the_contract_is_in_the_default_registry() -> None:
    from sharechain.contracts import TX_TYPES, default_registry

    assert set(comp.TX_TYPES) <= set(default_registry().handlers) & set(TX_TYPES)


def test_proofs_from_another_session_are_refused(chain: Net) -> None:
    first, second = aggregate_session(chain), aggregate_session(chain)
    elsewhere = {**proved_input(first, "hospital-a", [5, 7]), "session": second}
    refused(chain, "hospital-a", comp.COMMIT, elsewhere, "bad_payload", "range proof refused")
    chain.ok("hospital-a", comp.COMMIT, proved_input(second, "hospital-a", [5, 7]))
