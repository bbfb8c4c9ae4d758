"""What an operator can do in the console: log in and out, approve, deny, revoke, vote, clear.

Approve and deny act on access requests and on computation sessions (PSI,
aggregation); a session's buttons are refused before anything is signed
unless this node's organisation may take the decision on the chain (a
supervisor approves; a supervisor or a party denies).

Each action is a transaction signed with the organisation's key by the node
(as its own key releases are) and submitted to its ordering path; the
payload names the operator (`operator`), so the transaction on the chain says
which person acted: the contracts check the name (`contracts.operators`) and
record it on what the action changed, and audit trails show
`hospital-a (alice)`. Every action route checks, in this order: a live session
(the guard), the operator's role, the form's CSRF token; only then does it
sign anything. The outcome (the block and the validation code) is shown on
the next page.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from sharechain.contracts import privacy_queries as pq
from sharechain.contracts.access import APPROVE, REJECT
from sharechain.contracts.computations import APPROVE as SESSION_APPROVE
from sharechain.contracts.computations import REJECT as SESSION_REJECT
from sharechain.contracts.grants import REVOKE
from sharechain.contracts.membership import VOTE
from sharechain.contracts.risk import CLEAR
from sharechain.errors import AuthenticationError, NotFoundError, SharechainError
from sharechain.ledger.transactions import sign_transaction
from sharechain.ordering.solo import Receipt
from sharechain.web.accounts import ACTION_ROLES, VOTE_ROLES
from sharechain.web.console import Console, console_of
from sharechain.web.describe import OPERATOR_FIELD
from sharechain.web.guard import (
    COOKIE,
    CSRF_FIELD,
    LOGIN_COOKIE,
    PREFIX,
    RefusedError,
    check_csrf,
    cookie,
    require,
    session_of,
)
from sharechain.web.sessions import ThrottledError, same_token

__all__ = ["ACTION_TIMEOUT", "MAX_TEXT", "router"]

router = APIRouter(include_in_schema=False)
ACTION_TIMEOUT = 20.0
MAX_TEXT = 500


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _next(target: str) -> str:
    """Where to go after login: a console path only (no open redirect)."""
    if target.startswith(f"{PREFIX}/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{PREFIX}/"


@router.get(f"{PREFIX}/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "") -> Response:
    console = console_of(request)
    token = cookie(request.scope, LOGIN_COOKIE) or console.rng(32).hex()
    response = console.render(request, "login.html", login_token=token, next=_next(next), error="")
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        path=f"{PREFIX}/login",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


@router.post(f"{PREFIX}/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    console = console_of(request)
    form = await request.form()
    name = str(form.get("name", ""))[:64]
    password = str(form.get("password", ""))[:1024]
    target = _next(str(form.get("next", "")))
    expected = cookie(request.scope, LOGIN_COOKIE)
    if not same_token(str(form.get(CSRF_FIELD, "")), expected):
        raise RefusedError(403, "the login form's token is missing or stale; reload the page")
    client = request.client.host if request.client else "unknown"
    keys = (f"address:{client}", f"name:{name}")

    def again(status: int, error: str, headers: dict[str, str] | None = None) -> Response:
        response = console.render(
            request,
            "login.html",
            http_status=status,
            login_token=expected,
            next=target,
            error=error,
        )
        response.headers.update(headers or {})
        return response

    try:
        console.throttle.check(*keys)
        account = await run_in_threadpool(console.accounts.check, name, password)
    except ThrottledError as exc:
        return again(429, str(exc), {"Retry-After": str(int(exc.retry_after) + 1)})
    except AuthenticationError as exc:
        console.throttle.failed(*keys)
        return again(401, str(exc))
    console.throttle.succeeded(*keys)
    session = console.sessions.open(account)
    response = RedirectResponse(target, 303)
    response.set_cookie(
        COOKIE,
        session.token,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path=f"{PREFIX}/login")
    return response


@router.post(f"{PREFIX}/logout")
async def logout(request: Request) -> Response:
    console = console_of(request)
    session = session_of(request)
    check_csrf(session, await request.form(), request.headers)
    console.sessions.close(session.token)
    response = RedirectResponse(f"{PREFIX}/login", 303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


def _submit(console: Console, type: str, payload: dict[str, Any]) -> Receipt:
    node = console.node
    stx = sign_transaction(node.keys.signing, type, node.org, payload, now=node.now)
    (future,) = node.submit([stx.raw])
    try:
        receipt: Receipt = future.result(timeout=ACTION_TIMEOUT)
    except FutureTimeout:
        raise RefusedError(
            503,
            f"transaction {stx.id.hex()} was not committed within {ACTION_TIMEOUT:.0f}s; it "
            "stays queued: look it up under Blocks in a moment",
        ) from None
    except SharechainError as exc:
        raise RefusedError(503, f"the node could not submit the transaction: {exc}") from None
    return receipt


async def _act(
    request: Request,
    *,
    roles: frozenset[str],
    what: str,
    type: str,
    payload: dict[str, Any],
    back: str,
    may: Callable[[Console], None] = lambda console: None,
) -> Response:
    console = console_of(request)
    session = session_of(request)
    require(session, roles, what)
    form = await request.form()
    check_csrf(session, form, request.headers)
    may(console)
    for name in ("reason", "note"):
        if name in payload:
            payload[name] = str(form.get(name, ""))[:MAX_TEXT]
    body = {**payload, OPERATOR_FIELD: session.name}
    receipt = await run_in_threadpool(_submit, console, type, body)
    outcome = "done" if receipt.ok else f"refused by the chain ({receipt.code}: {receipt.reason})"
    console.flash(
        session.token,
        f"{what}: {outcome}; transaction {receipt.tx_id.hex()[:16]} in block {receipt.height}, "
        f"signed by {console.node.org} for operator {session.name}",
    )
    return RedirectResponse(back, 303)


@router.post(f"{PREFIX}/requests/{{rid}}/approve")
async def approve(request: Request, rid: str) -> Response:
    return await _act(
        request,
        roles=ACTION_ROLES,
        what=f"approve request {rid[:12]}",
        type=APPROVE,
        payload={"request": rid},
        back=f"{PREFIX}/inbox",
    )


@router.post(f"{PREFIX}/requests/{{rid}}/deny")
async def deny(request: Request, rid: str) -> Response:
    return await _act(
        request,
        roles=ACTION_ROLES,
        what=f"deny request {rid[:12]}",
        type=REJECT,
        payload={"request": rid, "reason": ""},
        back=f"{PREFIX}/inbox",
    )


@router.post(f"{PREFIX}/grants/{{gid}}/revoke")
async def revoke(request: Request, gid: str, ds: str = "") -> Response:
    back = f"{PREFIX}/datasets/{ds}" if ds.isalnum() else f"{PREFIX}/datasets"
    return await _act(
        request,
        roles=ACTION_ROLES,
        what=f"revoke grant {gid[:12]}",
        type=REVOKE,
        payload={"grant": gid, "reason": ""},
        back=back,
    )


@router.post(f"{PREFIX}/alerts/{{aid}}/clear")
async def clear_alert(request: Request, aid: str) -> Response:
    return await _act(
        request,
        roles=ACTION_ROLES,
        what=f"clear alert {aid[:12]}",
        type=CLEAR,
        payload={"alert": aid, "note": ""},
        back=f"{PREFIX}/inbox",
    )


@router.post(f"{PREFIX}/proposals/{{pid}}/vote/{{side}}")
async def vote(request: Request, pid: str, side: str) -> Response:
    if side not in ("yes", "no"):
        raise RefusedError(404, "a vote is yes or no")
    return await _act(
        request,
        roles=VOTE_ROLES,
        what=f"vote {side} on proposal {pid[:12]}",
        type=VOTE,
        payload={"proposal": pid, "approve": side == "yes"},
        back=f"{PREFIX}/org",
    )


def _decides(approve: bool, sid: str) -> Callable[[Console], None]:
    """Refuse (403, 404) a session decision this node's organisation cannot take on the chain."""

    def check(console: Console) -> None:
        node = console.node
        try:
            c = pq.computation(node.store, sid)
        except NotFoundError as exc:
            raise RefusedError(404, str(exc)) from None
        supervisor = "supervisor" in node.roles(node.org)
        if approve and not supervisor:
            raise RefusedError(403, f"only a supervisor approves computations; {node.org} is not")
        if not approve and not supervisor and node.org not in c.parties:
            raise RefusedError(
                403,
                f"only its parties and supervisors reject computation {c.id}; "
                f"{node.org} is neither",
            )

    return check


@router.post(f"{PREFIX}/privacy/sessions/{{sid}}/approve")
async def approve_session(request: Request, sid: str) -> Response:
    return await _act(
        request,
        roles=ACTION_ROLES,
        what=f"approve computation {sid[:12]}",
        type=SESSION_APPROVE,
        payload={"session": sid},
        back=f"{PREFIX}/privacy/sessions/{sid}",
        may=_decides(True, sid),
    )


@router.post(f"{PREFIX}/privacy/sessions/{{sid}}/deny")
async def deny_session(request: Request, sid: str) -> Response:
    return await _act(
        request,
        roles=ACTION_ROLES,
        what=f"deny computation {sid[:12]}",
        type=SESSION_REJECT,
        payload={"session": sid, "reason": ""},
        back=f"{PREFIX}/privacy/sessions/{sid}",
        may=_decides(False, sid),
    )
