"""Key-release sessions: issued by the custodian's node, bound to a grant and a caller, used once.

The chain counts a release against the grant's `max_uses` and the risk
contract once per session: the shares of one threshold fetch name a common
session and count as one use. A session the grantee could choose, or use
twice, would therefore be a free release. So a custodian's node releases
only under a session it issued itself to this caller for this grant
(`POST /v1/grants/{grant}/key-session`), unexpired and unused, and consumes
it; or under a session another custodian released under to the same caller
for the same grant less than `ON_CHAIN_WINDOW` ago, as the chain records (the
further shares of one threshold fetch come right after the first), once per
node.

A restart must not reopen a used session. Issued sessions live in memory, so
a restart forgets them and refuses every session issued before it. The
sessions this node released under are kept in SQLite in the node's data
directory (`key-sessions.sqlite`) for `USED_MEMORY`, longer than any window
in which a session could be accepted again, and written before anything is
released, so a node killed at any point still refuses their reuse after it
restarts. Rows older than that are deleted; at most `MAX_USED` are kept (a
release beyond is refused, never a session forgotten early).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sharechain.errors import AccessDeniedError, QuotaError

__all__ = [
    "MAX_USED",
    "ON_CHAIN_WINDOW",
    "SESSIONS_FILE",
    "SESSION_LIFETIME",
    "USED_MEMORY",
    "Issued",
    "KeySessions",
]

SESSION_LIFETIME: Final = 120.0
"""Seconds an issued session stays usable."""
ON_CHAIN_WINDOW: Final = SESSION_LIFETIME + 30.0
"""Seconds after the first release of a session (its block time; 30 s of clock skew) in
which the other custodians release under it too."""
USED_MEMORY: Final = 2 * ON_CHAIN_WINDOW
"""Seconds a node remembers a session it released under, across restarts."""
MAX_USED: Final = 1_000_000
"""Most used sessions remembered at once; a release beyond is refused (429)."""
SESSIONS_FILE: Final = "key-sessions.sqlite"
"""The file in a node's data directory that remembers the used sessions."""


@dataclass(frozen=True, slots=True)
class Issued:
    """A session this node issued."""

    session: str
    """The random session id (32 hex digits)."""
    grant: str
    """The grant it is bound to."""
    caller: str
    """The organisation it was issued to."""
    expires: float
    """When it stops being usable (Unix seconds)."""


class KeySessions:
    """The sessions one node issued and the ones it released under. Thread-safe.

    `path`: the SQLite file remembering used sessions (None: memory only, for
    tests of this class).
    """

    def __init__(
        self,
        per_caller: int,
        *,
        path: Path | None = None,
        now: Callable[[], float] = time.time,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.per_caller = per_caller
        self._path = path
        self._now = now
        self._rng = rng
        self._issued: dict[str, Issued] = {}
        self._memory: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        with self._db() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS used (grant_id TEXT NOT NULL, session TEXT NOT NULL,"
                " at REAL NOT NULL, PRIMARY KEY (grant_id, session)) WITHOUT ROWID"
            )
            db.execute("CREATE INDEX IF NOT EXISTS used_at ON used (at)")

    def _db(self) -> _Closing:
        """A connection (short-lived on a file: nothing stays open when the node stops)."""
        if self._path is None:
            if self._memory is None:
                self._memory = sqlite3.connect(":memory:", check_same_thread=False)
            return _Kept(self._memory)
        db = sqlite3.connect(self._path, timeout=10.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # written before a release: survives a crash
        return _Closing(db)

    def issue(self, grant: str, caller: str) -> Issued:
        """A fresh session for `caller` under `grant`; 429 past `per_caller` unused ones."""
        t = self._now()
        with self._lock:
            self._forget_issued(t)
            held = sum(1 for s in self._issued.values() if s.caller == caller)
            if held >= self.per_caller:
                raise QuotaError(
                    f"{caller} holds {held} unused key-release sessions on this node; use "
                    f"them or wait {SESSION_LIFETIME:.0f} s for them to expire",
                    retry_after=int(SESSION_LIFETIME),
                )
            issued = Issued(self._rng(16).hex(), grant, caller, t + SESSION_LIFETIME)
            self._issued[issued.session] = issued
            return issued

    def holds(self, session: str) -> bool:
        """Did this node issue `session` (to anyone), unexpired and unused?"""
        with self._lock:
            self._forget_issued(self._now())
            return session in self._issued

    def consume(self, session: str, grant: str, caller: str, *, released_at: float | None) -> None:
        """Use `session` for one release; raise `AccessDeniedError` saying why it may not.

        `released_at`: when the chain recorded the first release of `grant` to
        `caller` under this session (by another custodian: a further share of the
        same fetch), as block time in Unix seconds; None when it records none.
        """
        t = self._now()
        with self._lock:
            self._forget_issued(t)
            issued = self._issued.get(session)
            if issued is None:
                if released_at is None:
                    raise AccessDeniedError(
                        f"session {session!r} was not issued by this node for grant {grant} "
                        "(or was issued before the node restarted); ask for one first "
                        "(POST /v1/grants/{grant}/key-session)"
                    )
                if t - released_at > ON_CHAIN_WINDOW:
                    raise AccessDeniedError(
                        f"session {session} of grant {grant} was first used more than "
                        f"{ON_CHAIN_WINDOW:.0f} s ago; ask this node for a new session"
                    )
            elif (issued.grant, issued.caller) != (grant, caller):
                raise AccessDeniedError(
                    f"session {session} was issued for another grant or caller; ask for your own"
                )
            with self._db() as db:
                db.execute("DELETE FROM used WHERE at < ?", (t - USED_MEMORY,))
                if db.execute(
                    "SELECT 1 FROM used WHERE grant_id = ? AND session = ?", (grant, session)
                ).fetchone():
                    raise AccessDeniedError(
                        f"this node already released under session {session} of grant "
                        f"{grant}; ask for a new session (POST /v1/grants/{grant}/key-session)"
                    )
                (kept,) = db.execute("SELECT count(*) FROM used").fetchone()
                if kept >= MAX_USED:
                    raise QuotaError(
                        f"this node remembers {kept} key-release sessions of the last "
                        f"{USED_MEMORY:.0f} s; try again later",
                        retry_after=int(SESSION_LIFETIME),
                    )
                db.execute("INSERT INTO used VALUES (?, ?, ?)", (grant, session, t))
            self._issued.pop(session, None)

    def _forget_issued(self, t: float) -> None:
        if any(s.expires <= t for s in self._issued.values()):
            self._issued = {k: s for k, s in self._issued.items() if s.expires > t}


class _Closing:
    """A connection used as `with`: commit (or roll back) on exit, then close it."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        return self.db

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            if exc_type is None:
                self.db.commit()
            else:
                self.db.rollback()
        finally:
            self.db.close()


class _Kept(_Closing):
    """The same for the in-memory database, which lives as long as its `KeySessions`."""

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.db.commit()
        else:
            self.db.rollback()
