"""Attack: a grantee reuses or invents a key-release session to get releases that never count.

The chain counts the releases of one session once (the shares of a threshold
fetch). Defence: a custodian's node releases only under a session it issued to
the caller for the grant (`POST /v1/grants/{grant}/key-session`), once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from api_helpers import Consortium, InProcess, publish_and_grant, serve

OWNER, GRANTEE, SUPERVISOR = "hospital-a", "bank-b", "regulator"


@pytest.fixture(scope="module")
def granted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcess, str]]:
    base = tmp_path_factory.mktemp("sessions")
    running = serve(Consortium.make(base), OWNER)
    try:
        _, gid = publish_and_grant(running, base)
        yield running, gid
    finally:
        running.stop()


def _release(running: InProcess, org: str, gid: str, session: str) -> tuple[int, dict[str, str]]:
    with running.client(org) as c:
        reply = c.http.post(f"/v1/grants/{gid}/key-release", json={"session": session})
        return reply.status_code, reply.json()


def _session(running: InProcess, org: str, gid: str) -> str:
    with running.client(org) as c:
        reply = c.http.post(f"/v1/grants/{gid}/key-session")
        assert reply.status_code == 200
        return str(reply.json()["session"])


def test_a_caller_chosen_session_is_refused_before_anything_is_released(
    granted: tuple[InProcess, str],
) -> None:
    running, gid = granted
    height = running.node.ledger.height
    status, body = _release(running, GRANTEE, gid, os.urandom(16).hex())
    assert status == 403 and "not issued by this node" in body["detail"]
    assert running.node.ledger.height == height  # nothing was wrapped, nothing submitted


def test_an_issued_session_releases_once_and_its_replay_is_refused(
    granted: tuple[InProcess, str],
) -> None:
    running, gid = granted
    session = _session(running, GRANTEE, gid)
    status, body = _release(running, GRANTEE, gid, session)
    assert status == 200 and body["to"] == GRANTEE and body["session"] == session
    status, body = _release(running, GRANTEE, gid, session)
    assert status == 403 and "already released under session" in body["detail"]


def test_a_session_issued_to_another_caller_is_refused(granted: tuple[InProcess, str]) -> None:
    running, gid = granted
    theirs = _session(running, SUPERVISOR, gid)
    status, body = _release(running, GRANTEE, gid, theirs)
    assert status == 403 and "another grant or caller" in body["detail"]


def test_unused_sessions_per_caller_are_bounded(granted: tuple[InProcess, str]) -> None:
    running, gid = granted
    limit = running.server.app.state.limits.key_sessions_per_caller
    with running.client(SUPERVISOR) as c:
        codes = [c.http.post(f"/v1/grants/{gid}/key-session").status_code for _ in range(limit + 1)]
    # the regulator may hold one unused session from another test of this module
    assert codes[-1] == 429 and codes.count(200) >= limit - 1 and set(codes) == {200, 429}
