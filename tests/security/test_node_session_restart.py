"""Attack 3 (residual): replay a used key-release session after the custodian restarts.

The chain counts the releases of one session once. A node that forgot at a
restart which sessions it released under would release once more under a
session already on the chain: a release that counts nothing. Defence: the
node keeps the sessions it used in SQLite in its data directory (written
before it releases), forgets the ones it issued but nobody used, and accepts
another custodian's session only shortly after its first release.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from api_helpers import Consortium, InProcess, publish_and_grant, serve

from sharechain.errors import AccessDeniedError, QuotaError
from sharechain.sharing.key_sessions import ON_CHAIN_WINDOW, USED_MEMORY, KeySessions

OWNER, GRANTEE = "hospital-a", "bank-b"


def _release(running: InProcess, gid: str, session: str) -> tuple[int, str]:
    with running.client(GRANTEE) as c:
        reply = c.http.post(f"/v1/grants/{gid}/key-release", json={"session": session})
        return reply.status_code, str(reply.json().get("detail", ""))


def _session(running: InProcess, gid: str) -> str:
    with running.client(GRANTEE) as c:
        reply = c.http.post(f"/v1/grants/{gid}/key-session")
        assert reply.status_code == 200
        return str(reply.json()["session"])


def test_a_used_session_stays_used_across_a_restart(tmp_path: Path) -> None:
    consortium = Consortium.make(tmp_path)
    running = serve(consortium, OWNER)
    try:
        _, gid = publish_and_grant(running, tmp_path)
        used = _session(running, gid)
        assert _release(running, gid, used)[0] == 200
    finally:
        running.stop()
    running = serve(consortium, OWNER)  # the same data directory, a new process state
    try:
        status, detail = _release(running, gid, used)
        assert status == 403 and "already released under session" in detail
        assert _release(running, gid, _session(running, gid))[0] == 200  # a new one works
    finally:
        running.stop()


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def test_another_custodians_session_is_accepted_only_shortly_after_its_first_release(
    tmp_path: Path,
) -> None:
    clock = Clock()
    sessions = KeySessions(4, path=tmp_path / "s.sqlite", now=clock)
    first = clock.t - 5  # a further share of a threshold fetch, 5 s after the first
    sessions.consume("s1", "g", "bank-b", released_at=first)
    with pytest.raises(AccessDeniedError, match="first used more than"):
        sessions.consume("s2", "g", "bank-b", released_at=clock.t - ON_CHAIN_WINDOW - 1)
    with pytest.raises(AccessDeniedError, match="already released"):
        sessions.consume("s1", "g", "bank-b", released_at=first)


def test_used_sessions_are_forgotten_only_after_they_can_no_longer_be_accepted(
    tmp_path: Path,
) -> None:
    assert USED_MEMORY > ON_CHAIN_WINDOW  # a remembered session outlives its window
    clock = Clock()
    path = tmp_path / "s.sqlite"
    KeySessions(4, path=path, now=clock).consume("s1", "g", "b", released_at=clock.t)
    clock.t += USED_MEMORY - 1
    with pytest.raises(AccessDeniedError, match="already released"):
        KeySessions(4, path=path, now=clock).consume("s1", "g", "b", released_at=clock.t)
    clock.t += 2  # past its memory, and long past any window in which it is accepted
    with pytest.raises(AccessDeniedError, match="first used more than"):
        KeySessions(4, path=path, now=clock).consume("s1", "g", "b", released_at=clock.t - 300)


def test_a_full_memory_refuses_releases_instead_of_forgetting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sharechain.sharing.key_sessions.MAX_USED", 2)
    clock = Clock()
    sessions = KeySessions(4, path=tmp_path / "s.sqlite", now=clock)
    sessions.consume("s1", "g", "b", released_at=clock.t)
    sessions.consume("s2", "g", "b", released_at=clock.t)
    with pytest.raises(QuotaError, match="remembers 2 key-release sessions"):
        sessions.consume("s3", "g", "b", released_at=clock.t)
    with pytest.raises(AccessDeniedError, match="already released"):
        sessions.consume("s1", "g", "b", released_at=clock.t)
