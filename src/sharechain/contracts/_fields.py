"""Payload checks and small helpers shared by the contracts.

Payload fields are checked here and a bad one refuses the transaction with
`bad_payload` and a reason naming the field, so a sender always learns what
to fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sharechain.contracts.codes import BAD_PAYLOAD, DENIED, NOT_FOUND
from sharechain.contracts.ids import derive_id as derive_id  # re-exported for older imports
from sharechain.ledger.contract import Reject, State
from sharechain.ledger.identities import Organisation, org_from_value, org_key
from sharechain.ledger.state import derived

# `derive_id` is imported from here by older code; its public home is `sharechain.contracts.ids`.

MAX_TEXT = 4096
MAX_ITEMS = 256


def text(p: Mapping[str, Any], name: str, *, required: bool = True, limit: int = MAX_TEXT) -> str:
    value = p.get(name, None if required else "")
    if not isinstance(value, str) or (required and not value) or len(value) > limit:
        need = "non-empty text" if required else "text"
        raise Reject(BAD_PAYLOAD, f"{name} must be {need} of at most {limit} characters")
    return value


def integer(p: Mapping[str, Any], name: str, *, default: int | None = None, low: int = 0) -> int:
    value = p.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise Reject(BAD_PAYLOAD, f"{name} must be an integer of at least {low}")
    return value


def digest(p: Mapping[str, Any], name: str, *, required: bool = True) -> bytes:
    value = p.get(name, None if required else b"")
    if not isinstance(value, bytes) or ((required or value) and len(value) != 32):
        raise Reject(BAD_PAYLOAD, f"{name} must be a 32-byte SHA-256 digest")
    return value


def texts(p: Mapping[str, Any], name: str, *, limit: int = MAX_ITEMS) -> tuple[str, ...]:
    value = p.get(name, ())
    if value == () or value == []:  # absent or empty: no generator to run over it
        return ()
    if (
        not isinstance(value, list | tuple)
        or len(value) > limit
        or not all(isinstance(v, str) and 0 < len(v) <= 256 for v in value)
    ):
        raise Reject(BAD_PAYLOAD, f"{name} must be a list of at most {limit} non-empty texts")
    return tuple(value)


def object_id(p: Mapping[str, Any], name: str) -> str:
    value = p.get(name)
    if not isinstance(value, str) or len(value) != 64:
        raise Reject(BAD_PAYLOAD, f"{name} must be a 64-character hex id")
    try:
        bytes.fromhex(value)
    except ValueError:
        raise Reject(BAD_PAYLOAD, f"{name} must be a 64-character hex id") from None
    return value


def load(state: State, key: str, what: str) -> Any:
    """The value at `key`, touched for the audit trail; refuses when absent."""
    state.touch(key)
    value = state.get(key)
    if value is None:
        raise Reject(NOT_FOUND, f"no {what} {key.split('/', 1)[1]}")
    return value


def organisation(state: State, org: str) -> Organisation | None:
    value = state.get(org_key(org))
    return None if value is None else derived(value, org_from_value)


def sender(state: State, org: str) -> Organisation:
    """The sending organisation (the ledger already checked it is active)."""
    key = org_key(org)
    value = state.get(key)
    if value is None:  # pragma: no cover - the ledger refuses unknown senders first
        raise Reject(DENIED, f"{org} is not a member")
    state.touch(key)
    return derived(value, org_from_value)


def require_role(org: Organisation, role: str, doing: str) -> None:
    if not org.has_role(role):
        raise Reject(DENIED, f"only an organisation with the {role} role may {doing}")


def active_with_role(state: State, role: str) -> list[Organisation]:
    return [
        o
        for o in (org_from_value(v) for _, v in state.scan("org/"))
        if o.active and o.has_role(role)
    ]


def add_index(state: State, key: str) -> None:
    state.put(key, 1)


def without(items: Sequence[Any], value: Any) -> list[Any]:
    return [x for x in items if x != value]
