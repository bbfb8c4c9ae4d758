"""Who is who on a node's chain: organisation records as of the last commit.

Every signed request looks its signer up (its key, its roles, whether it was
removed), and reading the store for each would wait behind a commit's fsync.
`Members` keeps the records read since the last block that wrote one; a
commit that writes an organisation clears them (`forget`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from sharechain.ledger.identities import Organisation, org_key

__all__ = ["MAX_CACHED", "Members"]

MAX_CACHED = 4096
"""Records kept at most: unknown ids looked up by callers must not grow the cache forever."""


class Members:
    """Organisation records of one node's chain, read through `read` and cached."""

    def __init__(self, read: Callable[[str], Organisation | None]) -> None:
        self._read = read
        self._cache: dict[str, Organisation | None] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def organisation(self, org: str) -> Organisation | None:
        """An organisation's record as of the last commit (None if unknown)."""
        with self._lock:
            if org in self._cache:
                return self._cache[org]
            generation = self._generation
        found = self._read(org)
        with self._lock:
            # A block that wrote organisations while we read may have made `found` stale.
            if generation == self._generation:
                if len(self._cache) >= MAX_CACHED:
                    self._cache.clear()
                self._cache[org] = found
        return found

    def forget(self, writes: Mapping[str, bytes | None]) -> None:
        """Drop the cache if a committed block wrote any organisation record."""
        prefix = org_key("")
        if any(key.startswith(prefix) for key in writes):
            with self._lock:
                self._generation += 1
                self._cache.clear()

    def public_key(self, org: str) -> bytes | None:
        """The current signing key of an active organisation, from the chain."""
        found = self.organisation(org)
        return found.sign_key if found is not None and found.active else None

    def request_key(self, org: str) -> bytes | None:
        """The key a request signed as `org` is checked with: active or removed members'.

        A removed organisation's requests must still verify, so that its former
        peers can answer 403 with the reason (`removed_reason`) to the holder of
        its key, and 401 to anyone else.
        """
        found = self.organisation(org)
        return (
            found.sign_key if found is not None and found.status in ("active", "removed") else None
        )

    def removed_reason(self, org: str) -> str | None:
        """Why `org`'s requests are refused with 403 (None: it is not a removed member)."""
        found = self.organisation(org)
        if found is None or found.status != "removed":
            return None
        return (
            f"{org} was removed from the consortium at block {found.since}: its former peers "
            "refuse its requests; an admin may propose to admit it again (`sharechain org propose`)"
        )

    def roles(self, org: str) -> tuple[str, ...]:
        """An active organisation's roles (none for an unknown or removed one)."""
        found = self.organisation(org)
        return found.roles if found is not None and found.active else ()
