"""Where the contracts keep things in world state.

Records sit at point keys; indexes are empty-valued keys under `idx/`, so
every query is a point read or a prefix scan:

| key | value |
| --- | --- |
| `dataset/<id>` | dataset record |
| `request/<id>` | access request |
| `grant/<id>` | grant |
| `proposal/<id>` | membership proposal |
| `alert/<id>` | risk alert |
| `risk/count/<org>/<kind>/<window>` | counter |
| `risk/suspended/<org>` | ids of the open alerts suspending the organisation |
| `keyrel/<grant>/<session>` | a key-release session (shares count once) |
| `digest/<hex>` | the dataset (and owner) that owns a sealed payload (`digests.py`) |
| `idx/digest/<hex>/<dataset>` | datasets naming a sealed payload (the shredder's check) |
| `idx/ds-owner/<org>/<dataset>` | datasets by owner |
| `idx/ds-tag/<tag>/<dataset>` | datasets by tag |
| `idx/ds-class/<classification>/<dataset>` | datasets by classification |
| `idx/children/<parent>/<child>` | lineage, parent to derived datasets |
| `idx/inbox/<org or @supervisor>/<request>` | open requests an approver may act on |
| `idx/req-by-org/<org>/<request>` | requests by requester |
| `idx/req-by-ds/<dataset>/<request>` | requests by dataset |
| `idx/grants-by-org/<org>/<grant>` | grants by grantee |
| `idx/grants-by-ds/<dataset>/<grant>` | grants by dataset |
| `idx/alerts-open/<alert>` | open alerts |

Index keys, counters, key-release session markers and digest owners are derived data: they
are left out of the ledger's history index (`UNINDEXED`). The history index
of the ledger gives audit trails: every transaction
that concerns a dataset touches `dataset/<id>`, every one that concerns a
grant touches `grant/<id>`, and every one an organisation sends or receives a
grant by touches `org/<id>`.
"""

from __future__ import annotations

from typing import Any

from sharechain.ledger.contract import BlockContext, State

SUPERVISOR_INBOX = "@supervisor"
UNINDEXED = ("idx/", "risk/count/", "keyrel/", "digest/")
"""Derived keys kept out of the ledger's history index (see `ContractRegistry.unindexed`)."""


def dataset_key(ds: str) -> str:
    return f"dataset/{ds}"


def request_key(req: str) -> str:
    return f"request/{req}"


def grant_key(grant: str) -> str:
    return f"grant/{grant}"


def proposal_key(prop: str) -> str:
    return f"proposal/{prop}"


def alert_key(alert: str) -> str:
    return f"alert/{alert}"


def suspended_key(org: str) -> str:
    return f"risk/suspended/{org}"


def idx(kind: str, owner: str, item: str = "") -> str:
    return f"idx/{kind}/{owner}/{item}"


def index_items(state: State, kind: str, owner: str) -> list[str]:
    prefix = idx(kind, owner)
    return [k[len(prefix) :] for k, _ in state.scan(prefix)]


def close_request(
    state: State, req: dict[str, Any], status: str, reason: str, ctx: BlockContext, by: str
) -> None:
    """Close an open request (granted, rejected, cancelled) and clear its inbox entries."""
    req["status"] = status
    req["closed"] = {"by": by, "reason": reason, "height": ctx.height, "timestamp": ctx.timestamp}
    for org in req["inbox"]:
        state.delete(idx("inbox", org, req["id"]))
    req["inbox"] = []
    state.put(request_key(req["id"]), req)


def cancel_requests(
    state: State, kind: str, owner: str, reason: str, ctx: BlockContext, by: str
) -> None:
    """Cancel every open request listed in index `kind/owner`."""
    for rid in index_items(state, kind, owner):
        key = request_key(rid)
        value = state.get(key)
        if value is not None and value["status"] == "open":
            state.touch(key)
            close_request(state, dict(value), "cancelled", reason, ctx, by)


def revoke(state: State, grant: dict[str, Any], by: str, reason: str, ctx: BlockContext) -> None:
    grant["status"] = "revoked"
    grant["revoked"] = {
        "by": by,
        "reason": reason,
        "height": ctx.height,
        "timestamp": ctx.timestamp,
    }
    state.put(grant_key(grant["id"]), grant)
    state.touch(f"org/{grant['grantee']}")
    state.touch(dataset_key(grant["dataset"]))


def revoke_grants(
    state: State, kind: str, owner: str, by: str, reason: str, ctx: BlockContext
) -> None:
    """Revoke every active grant listed in index `kind/owner`."""
    for gid in index_items(state, kind, owner):
        value = state.get(grant_key(gid))
        if value is not None and value["status"] == "active":
            revoke(state, dict(value), by, reason, ctx)
