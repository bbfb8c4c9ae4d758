"""Object ids: how a dataset, request, grant, proposal or alert is named.

Every object's id is the hex SHA-256 of its kind, a counter and the id of the
transaction that created it, so a client knows the id of what it creates as
soon as it has signed the transaction, and every peer derives the same id.
"""

from __future__ import annotations

import hashlib

__all__ = ["KINDS", "derive_id"]

KINDS = ("dataset", "request", "grant", "proposal", "alert")
"""The kinds of object the contracts create (the first part of their state keys)."""


def derive_id(kind: str, tx_id: bytes, n: int = 0) -> str:
    """A deterministic object id: hex of SHA-256(kind, 0, n, 0, creating tx id)."""
    prefix = _PREFIXES.get(kind) if n == 0 and type(n) is int else None
    if prefix is None:
        prefix = f"{kind}\x00{n}\x00".encode()
    return hashlib.sha256(prefix + tx_id).hexdigest()


# The prefix of the first (n = 0) object of each kind, written once: every
# request and grant derives its id, thousands per block.
_PREFIXES = {kind: f"{kind}\x000\x00".encode() for kind in KINDS}
