"""Joint computations through the Plane, embedded and over four nodes: PSI and aggregation."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from plane_sides import Side

from sharechain.contracts.computations import APPROVE, COMMIT
from sharechain.errors import AccessDeniedError, NotFoundError
from sharechain.privacy.psi import PsiLimitError
from sharechain.sharing.computing import Computations
from sharechain.sharing.sessions import ComputationError

HOLDER, CLIENT = "hospital-b", "hospital-a"


_OPENED: list[Computations] = []


@pytest.fixture(autouse=True)
def _close_computations() -> Iterator[None]:
    yield
    while _OPENED:
        _OPENED.pop().close()


def comps(side: Side, org: str) -> Computations:
    """`org`'s computations, polling often (the tests wait for each other)."""
    made = side.plane(org).computations()
    _OPENED.append(made)
    return Computations(replace(made.cx, poll=0.02))


def offer(side: Side, cap: int = 10, approval: bool = True) -> str:
    sid = comps(side, HOLDER).psi_offer(
        HOLDER,
        CLIENT,
        max_set_size=cap,
        purpose="blacklist match",
        column="name",
        supervisor_approval=approval,
    )
    if approval:
        side.submit("regulator", APPROVE, {"session": sid})
    side.sync()
    return sid


def test_psi_between_two_banks_equals_the_set_intersection(side: Side) -> None:
    holder_set = ["Zoë Adams", "bob  ", "Carol", "dave"]
    client_set = ["zoe\u0308 adams", "Bob", "Eve", "Bob", "Mallory"]
    sid = offer(side)
    h, c = comps(side, HOLDER), comps(side, CLIENT)
    answered, matched = Computations.together(
        [h.side_psi_answer(HOLDER, sid, holder_set), c.side_psi_match(CLIENT, sid, client_set)],
        timeout=30,
    )
    assert matched.matches == ("zoe\u0308 adams", "Bob")
    assert (matched.client_set_size, matched.holder_set_size) == (4, 4)
    assert (answered.client_set_size, answered.holder_set_size) == (4, 4)
    side.sync()
    record = c.session(sid)
    assert record.status == "done" and record.result is not None
    assert record.result["intersection_size"] == 2
    assert CLIENT in record.raw["receipts"]


def test_a_set_over_the_cap_is_refused_before_anything_is_sent(side: Side) -> None:
    sid = offer(side, cap=2)
    c = comps(side, CLIENT)
    with pytest.raises(PsiLimitError, match="more than the session's cap of 2"):
        c.psi_match(CLIENT, sid, ["a", "b", "c"], timeout=5)
    assert CLIENT not in c.session(sid).committed


def test_a_holder_that_never_answers_ends_the_session(side: Side) -> None:
    sid = offer(side, approval=False)
    c = comps(side, CLIENT)
    with pytest.raises(ComputationError, match="now rejected on the chain with no result"):
        c.psi_match(CLIENT, sid, ["a"], timeout=1.0)
    side.sync()
    record = c.session(sid)
    assert record.status == "rejected"
    assert "timed out waiting for the answer" in record.raw["rejected"]["reason"]
    # Its mailboxes are dropped: nothing more is taken or read.
    with pytest.raises(NotFoundError, match="mailboxes are closed"):
        c.cx.mailbox.read(sid, CLIENT, "psi.response")


def test_a_client_that_never_comes_past_the_deadline_leaves_the_session_expired(
    side: Side,
) -> None:
    h = comps(side, HOLDER)
    sid = h.psi_offer(
        HOLDER, CLIENT, max_set_size=5, purpose="x", duration_ms=1, supervisor_approval=False
    )
    side.sync()
    with pytest.raises(ComputationError, match="now expired on the chain with no result"):
        h.psi_answer(HOLDER, sid, ["a"], timeout=0.5)
    side.sync()
    record = h.session(sid)
    assert record.status == "expired"
    assert record.raw["expired"]["without_input"] == [HOLDER, CLIENT]


def test_a_request_other_than_the_committed_one_is_refused(side: Side) -> None:
    sid = offer(side, approval=False)
    c, h = comps(side, CLIENT), comps(side, HOLDER)
    c.join(CLIENT, sid)
    side.sync()
    c.cx.submit(
        CLIENT, COMMIT, {"session": sid, "digest": hashlib.sha256(b"x").digest(), "size": 1}
    )
    c.cx.mailbox.post(sid, CLIENT, HOLDER, "psi.request", b"\x01" + bytes(4))
    side.sync()
    with pytest.raises(ComputationError, match="not the one committed") as err:
        h.psi_answer(HOLDER, sid, ["secret-customer"], timeout=10)
    assert "secret-customer" not in str(err.value)
    assert h.session(sid).status == "rejected"


@pytest.mark.parametrize(
    ("point", "why"),
    [(bytes(32), "identity element"), (b"\xff" * 32, "not a valid ristretto255 encoding")],
)
def test_a_request_with_a_bad_point_ends_the_session(side: Side, point: bytes, why: str) -> None:
    sid = offer(side, approval=False)
    c, h = comps(side, CLIENT), comps(side, HOLDER)
    c.join(CLIENT, sid)
    side.sync()
    raw = b"\x01" + (1).to_bytes(4, "big") + point  # a request as committed, honestly counted
    c.cx.submit(CLIENT, COMMIT, {"session": sid, "digest": hashlib.sha256(raw).digest(), "size": 1})
    c.cx.mailbox.post(sid, CLIENT, HOLDER, "psi.request", raw)
    side.sync()
    with pytest.raises(ComputationError, match=why) as err:
        h.psi_answer(HOLDER, sid, ["secret-customer"], timeout=10)
    assert "secret-customer" not in str(err.value)
    assert h.session(sid).status == "rejected"
    assert HOLDER not in h.session(sid).committed  # the holder sent nothing of its set


def test_mailboxes_take_parties_only_and_one_message_per_kind(side: Side) -> None:
    sid = offer(side, approval=False)
    c = comps(side, CLIENT)
    c.cx.mailbox.post(sid, CLIENT, HOLDER, "psi.request", b"one")
    with pytest.raises(AccessDeniedError, match="second one is refused"):
        c.cx.mailbox.post(sid, CLIENT, HOLDER, "psi.request", b"two")
    stranger = comps(side, "insurer")
    with pytest.raises((AccessDeniedError, NotFoundError)):
        stranger.cx.mailbox.post(sid, "insurer", HOLDER, "psi.request", b"x")
    assert comps(side, HOLDER).cx.mailbox.read(sid, HOLDER, "psi.request") == {CLIENT: b"one"}


def aggregation(side: Side, dropouts: int) -> tuple[str, dict[str, Computations]]:
    orgs = ("hospital-a", "hospital-b", "insurer", "regulator")
    planes = {o: comps(side, o) for o in orgs}
    sid = planes["hospital-a"].aggregate_propose(
        "hospital-a",
        orgs,
        length=2,
        bits=24,
        scale=2,
        max_dropouts=dropouts,
        purpose="average salary of nurses",
        supervisor_approval=False,
    )
    for org in orgs[1:]:
        planes[org].join(org, sid)  # everyone accepts; who then submits is up to each test
    side.sync()
    return sid, planes


SALARIES: dict[str, Any] = {
    "hospital-a": ["52000.10", "3"],
    "hospital-b": ["48000", "5"],
    "insurer": ["61000.55", "2"],
    "regulator": ["45000", "4"],
}


def announce_then_leave(planes: dict[str, Computations], sid: str, org: str) -> None:
    """`org` announces its mask key, then never submits (a dropout)."""
    steps = planes[org].side_aggregate_submit(org, sid, SALARIES[org]).steps
    assert next(steps).startswith("the announcements")
    steps.close()


def test_joint_average_is_exact_and_survives_a_dropout(side: Side) -> None:
    sid, planes = aggregation(side, dropouts=1)
    present = ("hospital-a", "hospital-b", "insurer")
    announce_then_leave(planes, sid, "regulator")
    sides = [planes[o].side_aggregate_submit(o, sid, SALARIES[o]) for o in present]
    sides.append(planes["hospital-a"].side_aggregate_result("hospital-a", sid, grace=1.0))
    outcomes = Computations.together(sides, timeout=20)
    expected = tuple(sum(Decimal(SALARIES[o][i]) for o in present) for i in range(2))
    assert outcomes[0] is None  # the aggregator's own side just submits
    for outcome in outcomes[1:]:
        assert outcome.sums == expected and outcome.dropped == ("regulator",)
    assert outcomes[-1].means[0] == expected[0] / 3
    side.sync()
    assert planes["insurer"].session(sid).status == "done"


def test_too_many_dropouts_end_the_session_without_a_result(side: Side) -> None:
    sid, planes = aggregation(side, dropouts=0)
    announce_then_leave(planes, sid, "hospital-b")
    announce_then_leave(planes, sid, "regulator")
    sides = [
        planes[o].side_aggregate_submit(o, sid, SALARIES[o]) for o in ("hospital-a", "insurer")
    ]
    sides.append(planes["hospital-a"].side_aggregate_result("hospital-a", sid, grace=0.5))
    with pytest.raises(ComputationError, match="never submitted") as err:
        Computations.together(sides, timeout=20)
    assert "52000" not in str(err.value) and "61000" not in str(err.value)
    side.sync()
    assert planes["hospital-b"].session(sid).status == "rejected"


def test_a_value_out_of_range_is_refused_before_anything_is_sent(side: Side) -> None:
    sid, planes = aggregation(side, dropouts=0)
    with pytest.raises(Exception, match="out of range"):
        planes["insurer"].aggregate_submit("insurer", sid, ["200000.00", "1"], timeout=5)
    assert planes["insurer"].cx.mailbox.read(sid, "insurer", "agg.announce") == {}
