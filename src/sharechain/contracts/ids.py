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
    return hashlib.sha256(f"{kind}\x00{n}\x00".encode() + tx_id).hexdigest()
