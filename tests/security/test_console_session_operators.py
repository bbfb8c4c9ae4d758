"""Attack: lie in the audit trail through the operator of a computation approval or rejection.

The console's Approve and Deny buttons on a session page name the person who
pressed them (`operator`), like the other console actions; the computation
contract checks the name as `contracts.operators` does and refuses a bidi,
invisible or control character with `bad_payload`, leaving the session as it
was. A good name is recorded on the session and shown in its trail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from security_kit import Net, consortium

from sharechain.contracts import derive_id, queries
from sharechain.contracts.computations import APPROVE, PROPOSE, REJECT


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    with consortium(tmp_path) as n:
        yield n


def _session(net: Net) -> str:
    payload = {
        "kind": "psi",
        "parties": ["hospital-a", "hospital-b"],
        "purpose": "blacklist match",
        "max_set_size": 10,
        "duration": 3_600_000,
    }
    return derive_id("computation", net.ok("hospital-a", PROPOSE, payload).tx_id)


@pytest.mark.parametrize("lie", ["\u202eecila", "ali\u200bce", "alice\n(regulator) approved", ""])
def test_a_lying_operator_is_refused_and_the_session_is_unchanged(net: Net, lie: str) -> None:
    sid = _session(net)
    before = net.state(f"computation/{sid}")
    for org, type, payload in (
        ("regulator", APPROVE, {"session": sid}),
        ("regulator", REJECT, {"session": sid, "reason": "no"}),
        ("hospital-b", REJECT, {"session": sid}),
    ):
        r = net.send(org, type, {**payload, "operator": lie})
        assert r.code == "bad_payload" and "operator" in r.reason, (type, r.code, r.reason)
    assert net.state(f"computation/{sid}") == before
    # The refusals are in the senders' trails, without the name they carried.
    trail = queries.audit(net.store, org="regulator", proofs=False)
    refused = [e for e in trail if e.type in (APPROVE, REJECT)]
    assert [(e.code, e.by) for e in refused] == [("bad_payload", "regulator")] * 2


def test_good_operators_are_recorded_and_shown(net: Net) -> None:
    sid = _session(net)
    net.ok("regulator", APPROVE, {"session": sid, "operator": "rita"})
    net.ok("hospital-b", REJECT, {"session": sid, "reason": "changed our mind"})  # CLI: nobody
    value = net.state(f"computation/{sid}")
    assert value["approved_by"] == "regulator" and value["status"] == "rejected"
    assert value["operators"] == {"regulator": "rita"}
    trail = queries.audit(net.store, computation_id=sid, proofs=False)
    assert [(e.type, e.by) for e in trail] == [
        (PROPOSE, "hospital-a"),
        (APPROVE, "regulator (rita)"),
        (REJECT, "hospital-b"),
    ]
