"""Secure aggregation with a party that never answers: timeouts end the session, clearly.

Embedded (one data directory), the sides run interleaved in this thread; the
same sides run over the nodes in `tests/sharing/test_computing.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from sharechain.sharing.computing import Computations
from sharechain.sharing.plane import Plane
from sharechain.sharing.sessions import ComputationError
from sharechain.storage.datadir import OrgSpec, init_consortium

ORGS = ("bank-a", "bank-b", "bank-c")
SALARIES = {"bank-a": "71234.56", "bank-b": "68765.43", "bank-c": "80808.08"}


@pytest.fixture
def planes(tmp_path: Path) -> Iterator[dict[str, Computations]]:
    init_consortium(
        tmp_path / "c",
        [
            OrgSpec("bank-a", ("member", "admin")),
            OrgSpec("bank-b", ("member",)),
            OrgSpec("bank-c", ("member",)),
            OrgSpec("regulator", ("member", "supervisor")),
        ],
    )
    plane = Plane.local(tmp_path / "c")
    made = plane.computations()
    try:
        yield {o: Computations(replace(made.cx, poll=0.02)) for o in ORGS}
    finally:
        made.close()
        plane.close()


def propose(planes: dict[str, Computations]) -> str:
    sid = planes["bank-a"].aggregate_propose(
        "bank-a", ORGS, length=1, bits=24, scale=2, max_dropouts=0, purpose="salaries",
        supervisor_approval=False,
    )  # fmt: skip
    for org in ORGS[1:]:
        planes[org].join(org, sid)
    return sid


def assert_no_salary_in(text: str) -> None:
    assert not any(v.split(".")[0] in text for v in SALARIES.values())


def test_a_party_that_never_announces_ends_the_session(planes: dict[str, Computations]) -> None:
    sid = propose(planes)
    sides = [planes[o].side_aggregate_submit(o, sid, [SALARIES[o]]) for o in ORGS[:2]]
    with pytest.raises(ComputationError, match="now rejected on the chain with no result") as err:
        Computations.together(sides, timeout=0.5)
    assert "bank-c" in str(err.value)  # it names who never came
    assert_no_salary_in(str(err.value))
    record = planes["bank-a"].session(sid)
    assert record.status == "rejected" and record.result is None
    assert "timed out waiting for the announcements from bank-c" in record.raw["rejected"]["reason"]


def test_an_aggregator_that_never_answers_ends_the_session(planes: dict[str, Computations]) -> None:
    sid = propose(planes)
    # Every party submits, the aggregator included, but it never computes the result.
    sides = [planes[o].side_aggregate_submit(o, sid, [SALARIES[o]]) for o in ORGS]
    with pytest.raises(ComputationError, match="now rejected on the chain with no result") as err:
        Computations.together(sides, timeout=1.0)
    assert_no_salary_in(str(err.value))
    record = planes["bank-b"].session(sid)
    assert record.status == "rejected" and record.result is None
    assert set(record.committed) == set(ORGS)  # they committed; no result was ever recorded
    assert "timed out waiting for the aggregator's result" in record.raw["rejected"]["reason"]
    # A session ended on the chain stops every side still waiting on it.
    with pytest.raises(ComputationError, match="was rejected on the chain"):
        planes["bank-a"].aggregate_result("bank-a", sid, grace=0.1, timeout=5)
