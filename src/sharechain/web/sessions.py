"""Console sessions, their CSRF tokens, and the brake on guessing passwords.

A successful login opens a session: a random token in an HttpOnly,
SameSite=Strict cookie, and a second random token, the CSRF token, that every
form and every htmx request must send back. A session ends after
`IDLE_SECONDS` without a request or `MAX_SECONDS` after login, whichever
comes first; sessions live in the node's memory, so a restart logs everyone out.

Login attempts are counted per client address and per account name: after
`MAX_FAILURES` failures within `WINDOW_SECONDS`, further attempts are refused
until the oldest failure leaves the window, right password or not.
"""

from __future__ import annotations

import hmac
import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from sharechain.errors import AuthenticationError
from sharechain.web.accounts import Account

__all__ = [
    "IDLE_SECONDS",
    "MAX_FAILURES",
    "MAX_SECONDS",
    "WINDOW_SECONDS",
    "LoginThrottle",
    "Session",
    "SessionBook",
    "ThrottledError",
]

IDLE_SECONDS = 30 * 60
MAX_SECONDS = 12 * 3600
MAX_FAILURES = 5
WINDOW_SECONDS = 300.0
_TOKEN_BYTES = 32


class ThrottledError(AuthenticationError):
    """Too many failed logins from this address or for this name; wait `retry_after` s."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            f"too many failed logins; wait {int(retry_after) + 1} seconds before trying again"
        )
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in operator."""

    token: str
    """The cookie value (random, 256 bits)."""
    name: str
    """The operator's account name."""
    role: str
    """The operator's role when logging in."""
    csrf: str
    """The token every state-changing request must carry."""
    started: float
    """Login time (Unix seconds)."""
    seen: float
    """Time of the latest request."""


def _token(rng: Callable[[int], bytes]) -> str:
    return rng(_TOKEN_BYTES).hex()


def same_token(given: str, expected: str) -> bool:
    """Constant-time comparison of two tokens (an empty one never matches)."""
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


class SessionBook:
    """Open sessions of one node's console. Thread-safe."""

    def __init__(
        self,
        *,
        now: Callable[[], float],
        rng: Callable[[int], bytes] = os.urandom,
        idle: float = IDLE_SECONDS,
        lifetime: float = MAX_SECONDS,
    ) -> None:
        self._now = now
        self._rng = rng
        self._idle = idle
        self._lifetime = lifetime
        self._open: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, account: Account) -> Session:
        t = self._now()
        session = Session(_token(self._rng), account.name, account.role, _token(self._rng), t, t)
        with self._lock:
            self._drop_expired(t)
            self._open[session.token] = session
        return session

    def find(self, token: str) -> Session | None:
        """The live session of `token` (its idle clock restarted), or None."""
        t = self._now()
        with self._lock:
            session = self._open.get(token)
            if session is None:
                return None
            if self._expired(session, t):
                del self._open[token]
                return None
            session = self._open[token] = replace(session, seen=t)
        return session

    def set_role(self, token: str, role: str) -> Session | None:
        """The session with the operator's current role (None if it has ended)."""
        with self._lock:
            session = self._open.get(token)
            if session is not None:
                session = self._open[token] = replace(session, role=role)
        return session

    def close(self, token: str) -> None:
        with self._lock:
            self._open.pop(token, None)

    def close_all(self, name: str) -> None:
        """End every session of operator `name` (its account was removed or changed)."""
        with self._lock:
            for token in [k for k, s in self._open.items() if s.name == name]:
                del self._open[token]

    def _expired(self, s: Session, t: float) -> bool:
        return t - s.seen > self._idle or t - s.started > self._lifetime

    def _drop_expired(self, t: float) -> None:
        for token in [k for k, s in self._open.items() if self._expired(s, t)]:
            del self._open[token]


class LoginThrottle:
    """Failed logins per key (client address, account name) in a sliding window."""

    def __init__(
        self,
        *,
        now: Callable[[], float],
        limit: int = MAX_FAILURES,
        window: float = WINDOW_SECONDS,
    ) -> None:
        self._now = now
        self._limit = limit
        self._window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, *keys: str) -> None:
        """Raise `ThrottledError` if any key has used up its failures."""
        t = self._now()
        with self._lock:
            for key in keys:
                seen = self._recent(key, t)
                if len(seen) >= self._limit:
                    raise ThrottledError(seen[0] + self._window - t)

    def failed(self, *keys: str) -> None:
        t = self._now()
        with self._lock:
            for key in keys:
                self._recent(key, t).append(t)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)

    def _recent(self, key: str, t: float) -> deque[float]:
        if len(self._failures) > 100_000:  # bound memory under a flood of names
            cutoff = t - self._window
            self._failures = {k: v for k, v in self._failures.items() if v and v[-1] > cutoff}
        seen = self._failures.setdefault(key, deque())
        while seen and seen[0] <= t - self._window:
            seen.popleft()
        return seen
