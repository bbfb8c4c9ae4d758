"""JSON views of the contracts' records, for the command line and the REST API.

Bytes become hex, tuples become lists, a policy becomes its canonical map,
and times gain an ISO 8601 rendering next to the block-time milliseconds.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from sharechain.contracts.policies import Policy, policy_to_value
from sharechain.contracts.queries import AuditEntry, GrantView, Lineage

__all__ = ["iso", "to_json"]

_TIMES = ("created_at", "issued_at", "expires_at", "timestamp", "window_start")


def iso(ms: int) -> str:
    """Block time in ms as ISO 8601 UTC."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def to_json(value: Any) -> Any:
    """A JSON-ready rendering of a record (or a list or tuple of them)."""
    if isinstance(value, AuditEntry):
        return {**value.to_json(), "time": iso(value.timestamp)}
    if isinstance(value, GrantView):
        return {**to_json(value.grant), "effective_status": value.status}
    if isinstance(value, Lineage):
        return {
            "root": value.root,
            "nodes": [to_json(n) for n in value.nodes],
            "edges": [{"from": a, "to": b, "kind": k} for a, b, k in value.edges],
        }
    if isinstance(value, Policy):
        return policy_to_value(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            out[f.name] = to_json(v)
            if f.name in _TIMES and isinstance(v, int):
                out[f"{f.name}_iso"] = iso(v)
        return out
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value
