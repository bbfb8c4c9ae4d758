"""Joint computations between organisations: PSI and secure aggregation, each side once.

The protocol steps are in `sharechain.privacy` (pure); this module carries
them between the parties through their mailboxes (`sharing.mailbox`) and
records the session on the chain (`contracts.computations`). Each party's
side is a generator of steps (`sharing.sessions`), run by `drive` (one
process per organisation, the command line) or `drive_all` (the demo).

PSI, blacklist matching::

    holder  psi_offer    proposes (holder, client, cap on the client's set)
    client  psi_client   accepts; once open: blinds its set, commits its
                         request's digest and size, posts the request
    holder  psi_holder   checks the request is the one committed (digest,
                         size, cap), evaluates it under a fresh key, commits
                         its own set size, posts the answer
    client               finishes, records the intersection size, receipt

Secure aggregation, a joint average (`sharing.aggregates`)::

    aggregator  aggregate_propose   parties, length, bits, scale, max_dropouts
    each        aggregate_side      accepts; posts its mask key's announcement
                                    (with one Shamir share per recipient only),
                                    masks and proves its values, commits the
                                    commitments' digest (and, for short vectors,
                                    the commitments and proofs the chain checks),
                                    posts its submission to the aggregator;
                                    later releases its shares of dropped parties
                                    when asked, and checks the result's digest
    aggregator  aggregate_result    waits for the submissions (dropouts after
                                    `grace` seconds), unmasks, checks the sums
                                    against the commitments, records the
                                    contributors and the sums' digest, sends
                                    the sums to the contributors

Every message is checked against what its sender committed on the chain, so
a party cannot show one input to the chain and send another. A refused
message ends the session with the reason (naming the sender, never the other
party's inputs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

from sharechain.contracts.computations import (
    ACCEPT,
    COMMIT,
    PROPOSE,
    RECEIPT,
    RESULT,
    Computation,
)
from sharechain.contracts.ids import derive_id
from sharechain.crypto import oprf
from sharechain.errors import ConfigError, SharechainError
from sharechain.privacy import psi
from sharechain.sharing.sessions import (
    ComputationError,
    Computing,
    Steps,
    alive,
    end_session,
    until,
    until_mail,
)

__all__ = [
    "PsiAnswered",
    "PsiMatched",
    "accept_and_open",
    "propose",
    "psi_client",
    "psi_holder",
    "psi_offer",
    "refuse",
    "sha",
]

HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class PsiAnswered:
    """What the holder learned: the size of the client's set, nothing else."""

    session: str
    """The session."""
    client_set_size: int
    """How many distinct elements the client sent."""
    holder_set_size: int
    """How many distinct elements the holder offered."""


@dataclass(frozen=True, slots=True)
class PsiMatched:
    """What the client learned."""

    session: str
    """The session."""
    matches: tuple[str, ...]
    """The client's elements (its spelling) the holder also has, in the client's order."""
    client_set_size: int
    """How many distinct elements the client sent."""
    holder_set_size: int
    """How many distinct elements the holder has."""


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def propose(cx: Computing, org: str, payload: dict[str, Any]) -> str:
    return derive_id("computation", cx.submit(org, PROPOSE, payload).tx_id)


def refuse(cx: Computing, me: str, session: str, sender: str, exc: SharechainError) -> NoReturn:
    """End the session because `sender`'s message was refused, and say so."""
    status = end_session(cx, me, session, f"{sender}'s message was refused")
    raise ComputationError(
        f"{sender}'s message was refused ({exc}); computation {session} is {status}"
    ) from None


def accept_and_open(cx: Computing, me: str, session: str) -> Steps[Computation]:
    c = alive(cx, session)
    if me not in c.parties:
        raise ConfigError(f"{me} is not a party of computation {session}")
    if me not in c.accepted:
        cx.submit(me, ACCEPT, {"session": session})
    return (
        yield from until(
            cx,
            session,
            lambda c: c if c.status in ("open", "done") else None,
            "every party's acceptance and the supervisor's approval",
        )
    )


# -- private set intersection ---------------------------------------------------------


def psi_offer(
    cx: Computing,
    holder: str,
    client: str,
    *,
    max_set_size: int,
    purpose: str,
    dataset: str = "",
    column: str = "",
    duration_ms: int = HOUR_MS,
    supervisor_approval: bool = True,
) -> str:
    """Propose a PSI session in which `holder` offers its set to `client`; its id."""
    payload = {
        "kind": "psi",
        "parties": [holder, client],
        "client": client,
        "purpose": purpose,
        "duration": duration_ms,
        "max_set_size": max_set_size,
        "supervisor_approval": supervisor_approval,
        "dataset": dataset,
        "column": column,
    }
    return propose(cx, holder, payload)


def psi_holder(
    cx: Computing, holder: str, session: str, values: Iterable[str], *, case: psi.CaseRule = "fold"
) -> Steps[PsiAnswered]:
    """The holder's side: answer the client's committed request with a fresh key."""
    c = alive(cx, session)
    if c.kind != "psi" or holder != c.holder:
        raise ConfigError(f"{holder} is not the holder of PSI session {session}")
    c = yield from until(
        cx,
        session,
        lambda c: c if c.client in c.committed else None,
        f"{c.client} to accept and commit its request",
    )
    digest, size = c.committed[c.client]
    mail = yield from until_mail(cx, session, holder, "psi.request", [c.client], "the request")
    try:
        raw = mail[c.client]
        if sha(raw) != digest:
            raise ComputationError("the request is not the one committed on the chain")
        request = psi.PsiRequest.decode(raw)
        if len(request.blinded) != size:
            raise ComputationError(f"the request has another count than the committed {size}")
        cx.progress("evaluating", 0, size)
        response = psi.holder_respond(
            oprf.generate_key(cx.rng),
            request,
            values,
            case=case,
            max_request=c.limits["max_set_size"],
        )
        cx.progress("evaluating", size, size)
    except SharechainError as exc:
        refuse(cx, holder, session, c.client, exc)
    tags = b"".join(response.tags)
    cx.submit(holder, COMMIT, {"session": session, "digest": sha(tags), "size": len(tags) // 16})
    cx.mailbox.post(session, holder, c.client, "psi.response", response.encode())
    return PsiAnswered(session, size, len(response.tags))


def psi_client(
    cx: Computing, client: str, session: str, values: Iterable[str], *, case: psi.CaseRule = "fold"
) -> Steps[PsiMatched]:
    """The client's side: accept, send the blinded set, learn the matches, record the size."""
    c = alive(cx, session)
    if c.kind != "psi" or client != c.client:
        raise ConfigError(f"{client} is not the client of PSI session {session}")
    if client in c.committed:
        raise ComputationError(f"{client} already sent its request in session {session}")
    items = list(values)
    cx.progress("blinding", 0, len(items))
    # Refused here, before anything is sent, when the set is over the session's cap.
    state, request = psi.client_request(
        items, case=case, max_size=c.limits["max_set_size"], rng=cx.rng
    )
    cx.progress("blinding", len(items), len(items))
    c = yield from accept_and_open(cx, client, session)
    raw = request.encode()
    cx.submit(client, COMMIT, {"session": session, "digest": sha(raw), "size": len(state.elements)})
    cx.mailbox.post(session, client, c.holder, "psi.request", raw)
    mail = yield from until_mail(cx, session, client, "psi.response", [c.holder], "the answer")
    c = yield from until(
        cx, session, lambda c: c if c.holder in c.committed else None, "the holder's commit"
    )
    try:
        response = psi.PsiResponse.decode(mail[c.holder])
        if (sha(b"".join(response.tags)), len(response.tags)) != c.committed[c.holder]:
            raise ComputationError("the answer is not the set committed on the chain")
        result = psi.client_finish(state, response)
    except SharechainError as exc:
        refuse(cx, client, session, c.holder, exc)
    found = len(result.intersection)
    cx.submit(client, RESULT, {"session": session, "intersection_size": found})
    cx.submit(client, RECEIPT, {"session": session})
    return PsiMatched(session, result.intersection, len(state.elements), result.holder_set_size)
