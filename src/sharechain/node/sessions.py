"""Key-release sessions: issued by the custodian's node, bound to a grant and a caller, used once.

The chain counts a release against the grant's `max_uses` and the risk
contract once per session: the shares of one threshold fetch name a common
session and count as one use. A session the grantee could choose, or use
twice, would therefore be a free release. So a custodian's node releases
only under a session it issued itself to this caller for this grant
(`POST /v1/grants/{grant}/key-session`), unexpired and unused, and consumes
it; or under a session another custodian already released under to the same
caller for the same grant, as the chain records (the further shares of one
threshold fetch), once per node.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sharechain.errors import AccessDeniedError
from sharechain.node.quotas import QuotaError

__all__ = ["SESSION_LIFETIME", "Issued", "KeySessions"]

SESSION_LIFETIME: Final = 120.0
"""Seconds an issued session stays usable."""


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
    """The sessions one node issued and the ones it released under. Thread-safe."""

    def __init__(
        self,
        per_caller: int,
        *,
        now: Callable[[], float] = time.time,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.per_caller = per_caller
        self._now = now
        self._rng = rng
        self._issued: dict[str, Issued] = {}
        self._used: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def issue(self, grant: str, caller: str) -> Issued:
        """A fresh session for `caller` under `grant`; 429 past `per_caller` unused ones."""
        t = self._now()
        with self._lock:
            self._forget(t)
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

    def consume(self, session: str, grant: str, caller: str, *, on_chain: bool) -> None:
        """Use `session` for one release; raise `AccessDeniedError` saying why it may not.

        `on_chain`: the chain already records a release of `grant` to `caller` under
        this session (by another custodian: a further share of the same fetch).
        """
        t = self._now()
        with self._lock:
            self._forget(t)
            if (grant, session) in self._used:
                raise AccessDeniedError(
                    f"this node already released under session {session} of grant {grant}; "
                    "ask for a new session (POST /v1/grants/{grant}/key-session)"
                )
            issued = self._issued.get(session)
            if issued is None and not on_chain:
                raise AccessDeniedError(
                    f"session {session!r} was not issued by this node for grant {grant}; ask "
                    "for one first (POST /v1/grants/{grant}/key-session)"
                )
            if issued is not None and (issued.grant, issued.caller) != (grant, caller):
                raise AccessDeniedError(
                    f"session {session} was issued for another grant or caller; ask for your own"
                )
            self._issued.pop(session, None)
            self._used[(grant, session)] = t

    def _forget(self, t: float) -> None:
        if any(s.expires <= t for s in self._issued.values()):
            self._issued = {k: s for k, s in self._issued.items() if s.expires > t}
        # Used sessions are kept for the process's life (a reuse must stay refused);
        # a node that restarts forgets them: see docs/security.md for that residue.
        if len(self._used) > 1_000_000:
            oldest = sorted(self._used.items(), key=lambda kv: kv[1])[: len(self._used) // 2]
            for key, _ in oldest:
                del self._used[key]
