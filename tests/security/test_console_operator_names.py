"""Attack: lie in every peer's audit trail through the console's `operator` field.

A console action names the person who pressed the button (`operator`), and
every peer's audit trail shows it next to the organisation. A name that
carries a bidi override, a newline, an escape sequence or invisible text
would make the trail say something else than what happened; the contracts
refuse such a transaction with `bad_payload` and change nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from security_kit import Net, consortium

from sharechain.contracts import derive_id, queries
from sharechain.contracts.access import APPROVE, REJECT
from sharechain.contracts.computations import APPROVE as SESSION_APPROVE
from sharechain.contracts.computations import REJECT as SESSION_REJECT
from sharechain.contracts.grants import REVOKE
from sharechain.contracts.membership import VOTE
from sharechain.contracts.operators import MAX_OPERATOR, OPERATED, refusal
from sharechain.contracts.risk import CLEAR


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    with consortium(tmp_path) as n:
        yield n


BAD = [
    "",
    " alice",
    "alice ",
    "a" * (MAX_OPERATOR + 1),
    "alice\nbob approved",
    "alice\x1b[2J",
    "alice\x9b31m",
    "\u202eecila",  # right-to-left override
    "ali\u2066ce\u2069",  # isolates
    "ali\u200bce",  # zero-width space
    "ali\u00adce",  # soft hyphen
    "alice\u2028",  # line separator
    "\ufeffalice",
    "alice\U000e0041",  # tag character
    "ali\ue000ce",  # private use
    "alice\ufffe",
    42,
    b"alice",
    ["alice"],
]


@pytest.mark.parametrize("name", BAD, ids=lambda v: ascii(v)[:24])
def test_a_bad_operator_name_is_refused(name: object) -> None:
    assert refusal(name) != ""


@pytest.mark.parametrize("name", ["alice", "anna.b", "José Núñez", "李雷", "o'brien-2"])
def test_a_plain_name_of_any_script_is_accepted(name: str) -> None:
    assert refusal(name) == ""


def test_the_console_actions_all_check_the_name() -> None:
    assert {APPROVE, REJECT, REVOKE, VOTE, CLEAR, SESSION_APPROVE, SESSION_REJECT} == OPERATED


def test_a_bidi_operator_is_refused_by_every_action_and_changes_nothing(net: Net) -> None:
    ds = net.register()
    rid = derive_id("request", net.request(ds).tx_id)
    gid = net.granted(net.register())
    pid = derive_id(
        "proposal",
        net.ok("hospital-a", "org.propose", {"action": "remove", "org": "clinic-c"}).tx_id,
    )
    lie = "\u202eecila"
    for org, type, payload in (
        ("hospital-a", APPROVE, {"request": rid}),
        ("hospital-a", REJECT, {"request": rid, "reason": "no"}),
        ("hospital-a", REVOKE, {"grant": gid}),
        ("hospital-b", VOTE, {"proposal": pid, "approve": True}),
    ):
        before = net.store.head()
        r = net.send(org, type, {**payload, "operator": lie})
        assert r.code == "bad_payload" and "U+202E" in r.reason, (type, r.code, r.reason)
        assert net.store.head() != before  # committed, as a refusal
    assert net.state(f"request/{rid}")["status"] == "open"
    assert net.state(f"request/{rid}")["approvals"] == []
    assert net.state(f"grant/{gid}")["status"] == "active"
    proposal = net.state(f"proposal/{pid}")
    assert "hospital-b" not in proposal["yes"] + proposal["no"]
    # The refused attempts are in the senders' trails, without the name they carried.
    trail = queries.audit(net.store, org="hospital-a", proofs=False)
    refused = [e for e in trail if e.code == "bad_payload"]
    assert len(refused) == 3 and all(e.operator == "" and e.by == "hospital-a" for e in refused)


def test_a_good_operator_is_recorded_and_shown_in_the_trail(net: Net) -> None:
    ds = net.register()
    rid = derive_id("request", net.request(ds).tx_id)
    net.ok("hospital-a", APPROVE, {"request": rid, "operator": "alice"})
    net.ok("regulator", APPROVE, {"request": rid})  # the command line names nobody
    assert net.state(f"request/{rid}")["operators"] == {"hospital-a": "alice"}
    approvals = [e for e in queries.audit(net.store, ds=ds) if e.type == APPROVE]
    assert [e.by for e in approvals] == ["hospital-a (alice)", "regulator"]
    assert approvals[0].to_json()["operator"] == "alice"
