"""The console's privacy pages: joint computations, and a dataset's masked releases and budgets.

- `/ui/privacy`: the PSI and aggregation sessions this organisation takes
  part in (a supervisor sees every one), with their kind, parties, policy,
  state, who accepted, the result's size or contributors and the receipts;
  and the masking profiles registered on the chain.
- `/ui/privacy/sessions/{id}`: one session, party by party, with its
  timeline (every transaction that touched it, from the history index);
  an approver or admin of a supervisor's node approves a session waiting
  for a supervisor there, and one of a party's or a supervisor's node
  denies a proposed or open session (`web.actions`).

Read like the other pages through `sharechain.contracts.privacy_queries`
(the functions behind the REST API's reads of the same records) and under the API's rule for
sessions: their parties and supervisors read them. `dataset_privacy` gives
the dataset page its transformation records and privacy budgets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from sharechain.contracts import privacy_queries as pq
from sharechain.contracts import queries as q
from sharechain.contracts.computations import Computation
from sharechain.contracts.datasets import Dataset
from sharechain.errors import NotFoundError
from sharechain.ledger.store import Store
from sharechain.node.service import Node
from sharechain.web import describe
from sharechain.web.console import console_of
from sharechain.web.guard import PREFIX, RefusedError

__all__ = ["DatasetPrivacy", "dataset_privacy", "router"]

router = APIRouter(include_in_schema=False)
SESSION_ROWS = 100


def _supervisor(node: Node) -> bool:
    return "supervisor" in node.roles(node.org)


def _limits(c: Computation) -> str:
    if c.kind == "psi":
        return f"client's set at most {c.limits['max_set_size']}"
    dropouts = c.limits.get("max_dropouts", 0)
    return (
        f"{c.limits['length']} value(s) of {c.limits['bits']} bits per party, "
        f"at most {dropouts} dropout(s)"
    )


def _result(c: Computation) -> str:
    if c.result is None:
        return ""
    if c.kind == "psi":
        return f"intersection of {c.result['intersection_size']}"
    return f"sums of {len(c.result['contributors'])} participant(s)"


def _approval(c: Computation) -> str:
    raw = c.raw
    if not raw["approval_required"]:
        return "not required"
    return f"by {raw['approved_by']}" if raw["approved_by"] else "waiting for a supervisor"


def _row(c: Computation) -> dict[str, Any]:
    return {
        "c": c,
        "purpose": c.raw["purpose"],
        "limits": _limits(c),
        "result": _result(c),
        "approval": _approval(c),
        "receipts": tuple(c.raw["receipts"]),
        "input": c.raw.get("input") or {"dataset": "", "column": ""},
        "rejected": c.raw.get("rejected"),
        "expired": c.raw.get("expired"),
    }


@router.get(f"{PREFIX}/privacy", response_class=HTMLResponse)
def privacy(request: Request) -> Response:
    console = console_of(request)
    node = console.node
    supervisor = _supervisor(node)
    found = pq.computations(node.store, party=None if supervisor else node.org)
    return console.render(
        request,
        "privacy.html",
        page="privacy",
        sessions=[_row(c) for c in found[:SESSION_ROWS]],
        total=len(found),
        supervisor=supervisor,
        profiles=q.profiles(node.store),
    )


def _parties(c: Computation) -> list[dict[str, Any]]:
    raw = c.raw
    out = []
    for party in c.parties:
        committed = c.committed.get(party)
        role = "proposer" if party == c.proposer else "party"
        if c.kind == "psi":
            role = "client" if party == c.client else "holder"
        out.append(
            {
                "org": party,
                "role": role,
                "accepted": party in c.accepted,
                "size": None if committed is None else committed[1],
                "digest": "" if committed is None else committed[0].hex(),
                "receipt": party in raw["receipts"],
            }
        )
    return out


@router.get(f"{PREFIX}/privacy/sessions/{{sid}}", response_class=HTMLResponse)
def session(
    request: Request, sid: str, trail_before: Annotated[str | None, Query(max_length=256)] = None
) -> Response:
    console = console_of(request)
    node = console.node
    store = node.store
    try:
        c = pq.computation(store, q.resolve(store, "computation", sid))
    except NotFoundError as exc:
        raise RefusedError(404, str(exc)) from None
    supervisor = _supervisor(node)
    if node.org not in c.parties and not supervisor:
        raise RefusedError(
            403, f"only its parties and supervisors read computation {c.id}; {node.org} is neither"
        )
    live = c.status in ("proposed", "open")
    waiting = c.status == "proposed" and c.raw["approval_required"] and not c.raw["approved_by"]
    trail = describe.trail_view(store, trail_before, computation_id=c.id)
    return console.render(
        request,
        "session.html",
        page="privacy",
        row=_row(c),
        parties=_parties(c),
        may_approve=supervisor and waiting,
        may_deny=live,
        **trail,
    )


@dataclass(frozen=True, slots=True)
class DatasetPrivacy:
    """What the dataset page shows of masking: the masked releases and the budgets spent."""

    releases: tuple[pq.Transformation, ...]
    """Transformation records of the masked versions made from this dataset."""
    budgets: tuple[tuple[pq.Budget, str], ...]
    """Epsilon spent per grantee, with what is left of the policy's budget (`unlimited`)."""
    masked_for: str
    """When the dataset is itself a masked release: the grant it was made for."""


def dataset_privacy(store: Store, ds: Dataset) -> DatasetPrivacy:
    """The masked releases made from `ds` and its privacy budgets."""
    budgets = tuple((b, b.left or "unlimited") for b in pq.budgets(store, ds.id))
    return DatasetPrivacy(tuple(pq.transformations(store, ds.id)), budgets, ds.masked_for)
