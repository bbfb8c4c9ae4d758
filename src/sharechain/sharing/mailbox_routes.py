"""Computation sessions between nodes (REST API): the session record and the mailboxes.

The messages of a PSI or aggregation session travel node to node, never
through the chain (`sharechain.sharing.mailbox` keeps them and states the
rules). Each node holds its own organisation's mailboxes:

- `GET /v1/computations/{session}`: the session as this node's chain records
  it, to its parties and to supervisors.
- `POST /v1/computations/{session}/mailbox/{kind}`: another party of the
  session leaves a message of `kind` for this node's organisation; one per
  sender and kind, bounded in size and in number per session.
- `GET /v1/computations/{session}/mailbox/{kind}`: this node's organisation
  reads the messages of `kind` it received.

Who is a party is read from this node's copy of the chain at each request; a
session rejected or expired there has its mailboxes dropped (404 from then on).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam

from sharechain.api.mailbox import ComputationView, MailBody, MailPosted, MailRead
from sharechain.api.problems import SIGNED_ERRORS
from sharechain.api.serving import Auth, HexId, NodeDep, ServingNode
from sharechain.contracts.computations import Computation
from sharechain.errors import AccessDeniedError
from sharechain.sharing.mailbox import (
    MailboxStore,
    guarded_post,
    guarded_read,
    recorded_computation,
    view,
)

__all__ = ["router"]

router = APIRouter(tags=["computations"], responses=SIGNED_ERRORS)

Kind = Annotated[str, PathParam(min_length=1, max_length=32, pattern="^[a-z][a-z0-9.-]*$")]
"""A message kind in a path (`psi.request`, `agg.submission`, ...)."""


def _store(node: ServingNode) -> MailboxStore:
    return MailboxStore(node.datadir.path / "mailbox")


def _computation(node: ServingNode, session: str) -> Computation:
    return recorded_computation(node.store, session, f"{node.org}'s chain")


@router.get("/v1/computations/{session}", response_model=ComputationView)
def computation(session: HexId, who: Auth, node: NodeDep) -> dict[str, Any]:
    """A computation session as this node's chain records it (parties and supervisors)."""
    c = _computation(node, session)
    if who.org not in c.parties and not who.supervisor:
        raise AccessDeniedError(f"only its parties and supervisors read computation {session}")
    return view(c)


@router.post("/v1/computations/{session}/mailbox/{kind}", response_model=MailPosted)
def post_message(
    session: HexId, kind: Kind, body: MailBody, who: Auth, node: NodeDep
) -> dict[str, Any]:
    """Leave a message of `kind` for this node's organisation (another party of the session)."""
    data = bytes.fromhex(body.body)
    guarded_post(_store(node), _computation(node, session), who.org, node.org, kind, data)
    return {"session": session, "to": node.org, "sender": who.org, "kind": kind, "size": len(data)}


@router.get("/v1/computations/{session}/mailbox/{kind}", response_model=MailRead)
def read_messages(session: HexId, kind: Kind, who: Auth, node: NodeDep) -> dict[str, Any]:
    """The messages of `kind` this node's organisation received (its own tools only)."""
    if who.org != node.org:
        raise AccessDeniedError(f"only {node.org} reads its own mailbox")
    found = guarded_read(_store(node), _computation(node, session), node.org, kind)
    return {
        "session": session,
        "kind": kind,
        "messages": [{"sender": s, "body": b.hex()} for s, b in found.items()],
    }
