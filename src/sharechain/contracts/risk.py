"""Risk control: per-organisation counters over block-time windows.

Every access request counts against the requester and every key release
against the grantee, in fixed windows of block time (`window` ms, aligned to
time 0, so every peer puts a transaction in the same window). The
transaction that takes a counter past its threshold still succeeds, but it
also records an alert on the chain and, when the governance setting
`risk.suspend_on_alert` is on, suspends the organisation's grants: no key
release and no read receipt is accepted under them until a supervisor clears
every alert that suspended it (`alerts.clear`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sharechain.contracts import _fields as f
from sharechain.contracts import operators
from sharechain.contracts.codes import BAD_STATE
from sharechain.contracts.governance import governance
from sharechain.contracts.keys import alert_key, idx, suspended_key
from sharechain.ledger.contract import BlockContext, ContractRegistry, Reject, State
from sharechain.ledger.transactions import SignedTransaction

__all__ = [
    "CLEAR",
    "KEY_RELEASES",
    "REQUESTS",
    "Alert",
    "alert_from_value",
    "count",
    "is_suspended",
    "registry",
]

CLEAR = "alerts.clear"
REQUESTS = "requests"
KEY_RELEASES = "key_releases"


@dataclass(frozen=True, slots=True)
class Alert:
    """A risk threshold crossed by an organisation."""

    id: str
    """Hex id, derived from the transaction that crossed the threshold."""
    org: str
    """The organisation whose counter crossed it."""
    kind: str
    """`requests` or `key_releases`."""
    window_start: int
    """Start of the window (block time, ms)."""
    count: int
    """The counter's value when the alert was raised."""
    threshold: int
    """The threshold it crossed."""
    suspends: bool
    """Whether it suspended the organisation's grants."""
    status: str
    """`open` or `cleared`."""
    height: int
    """Block height of the crossing transaction."""
    timestamp: int
    """Its block time (ms)."""
    tx_id: bytes
    """The crossing transaction."""
    cleared_by: str
    """The supervisor that cleared it, or empty."""


def alert_from_value(v: Any) -> Alert:
    return Alert(
        id=v["id"],
        org=v["org"],
        kind=v["kind"],
        window_start=v["window_start"],
        count=v["count"],
        threshold=v["threshold"],
        suspends=v["suspends"],
        status=v["status"],
        height=v["height"],
        timestamp=v["timestamp"],
        tx_id=v["tx_id"],
        cleared_by=v.get("cleared", {}).get("by", ""),
    )


def is_suspended(state: State, org: str) -> bool:
    return state.get(suspended_key(org)) is not None


def count(state: State, org: str, kind: str, stx: SignedTransaction, ctx: BlockContext) -> None:
    """Add one to `org`'s `kind` counter; past the threshold, raise an alert."""
    settings = governance(state).risk
    start = ctx.timestamp - ctx.timestamp % settings.window
    key = f"risk/count/{org}/{kind}/{start}"
    n = (state.get(key) or 0) + 1
    state.put(key, n)
    limit = settings.max_requests if kind == REQUESTS else settings.max_key_releases
    if n != limit + 1:  # one alert per window, when the threshold is first crossed
        return
    alert = f.derive_id("alert", stx.id)
    state.put(
        alert_key(alert),
        {
            "id": alert,
            "org": org,
            "kind": kind,
            "window_start": start,
            "count": n,
            "threshold": limit,
            "suspends": settings.suspend_on_alert,
            "status": "open",
            "height": ctx.height,
            "timestamp": ctx.timestamp,
            "tx_id": stx.id,
        },
    )
    state.touch(alert_key(alert))
    state.touch(f"org/{org}")
    f.add_index(state, idx("alerts-open", "all", alert))
    if settings.suspend_on_alert:
        state.put(suspended_key(org), [*(state.get(suspended_key(org)) or []), alert])


def _clear(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    me = f.sender(state, stx.tx.sender)
    f.require_role(me, "supervisor", "clear risk alerts")
    aid = f.object_id(stx.tx.payload, "alert")
    note = f.text(stx.tx.payload, "note", required=False)
    operator = operators.checked(stx.tx.payload)
    value = operators.recorded(f.load(state, alert_key(aid), "alert"), me.id, operator)
    if value["status"] != "open":
        raise Reject(BAD_STATE, f"alert {aid} was already cleared")
    value["status"] = "cleared"
    value["cleared"] = {"by": me.id, "note": note, "height": ctx.height, "timestamp": ctx.timestamp}
    state.put(alert_key(aid), value)
    state.delete(idx("alerts-open", "all", aid))
    state.touch(f"org/{value['org']}")
    left = [a for a in state.get(suspended_key(value["org"])) or [] if a != aid]
    if left:
        state.put(suspended_key(value["org"]), left)
    else:
        state.delete(suspended_key(value["org"]))


def registry() -> ContractRegistry:
    return ContractRegistry({CLEAR: _clear})
