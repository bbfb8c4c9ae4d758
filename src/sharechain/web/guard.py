"""The console's gate: who may see a page, who may act, and the headers every answer carries.

`ConsoleGuard` is an ASGI middleware in front of everything under `/ui`:

- without a live session it serves only the login page and the static files;
  a page asked for redirects to the login page, anything else gets a 401;
- every answer carries a Content-Security-Policy that allows only the node's
  own scripts and styles (no inline script or style runs), and headers that
  keep the console out of frames and caches.

Roles are checked by the route of every action (`require`), CSRF tokens by
`check_csrf`, never by what a page showed: a forged POST from a viewer or
without its token is refused whatever the page offered.
"""

from __future__ import annotations

from collections.abc import Mapping
from http.cookies import SimpleCookie
from urllib.parse import quote

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sharechain.errors import SharechainError
from sharechain.web.accounts import Accounts
from sharechain.web.sessions import Session, SessionBook, same_token

__all__ = [
    "COOKIE",
    "CSP",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "LOGIN_COOKIE",
    "PREFIX",
    "ConsoleGuard",
    "RefusedError",
    "check_csrf",
    "require",
    "session_of",
]

PREFIX = "/ui"
COOKIE = "sc_session"
LOGIN_COOKIE = "sc_login"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
# Pico's form controls draw their arrows and ticks as data: SVG images, hence img-src data:.
CSP = (
    "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'; object-src 'none'"
)
_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
_OPEN = (f"{PREFIX}/login", f"{PREFIX}/static/")


class RefusedError(SharechainError):
    """A console request that may not proceed; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def require(session: Session, roles: frozenset[str], what: str) -> None:
    """Refuse (403) unless the operator's role is among `roles`."""
    if session.role not in roles:
        raise RefusedError(
            403,
            f"{what} needs the role {' or '.join(sorted(roles))}; operator {session.name} is a "
            f"{session.role}. Ask an admin of this node to change your role",
        )


def check_csrf(session: Session, form: Mapping[str, object], headers: Mapping[str, str]) -> None:
    """Refuse (403) a state-changing request without the session's CSRF token."""
    given = form.get(CSRF_FIELD) or headers.get(CSRF_HEADER) or ""
    if not isinstance(given, str) or not same_token(given, session.csrf):
        raise RefusedError(
            403,
            "the form's CSRF token is missing or stale; reload the page and submit it again",
        )


def session_of(request: Request) -> Session:
    """The session the guard found for this request (every route but login has one)."""
    session = request.scope.get("state", {}).get("session")
    if not isinstance(session, Session):
        raise RefusedError(401, "log in first")
    return session


def cookie(scope: Scope, name: str) -> str:
    for key, value in scope.get("headers", ()):
        if key == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:
                return ""
            if name in jar:
                return jar[name].value
    return ""


class ConsoleGuard:
    """Sessions and security headers for every path under `/ui` (other paths pass by)."""

    def __init__(self, app: ASGIApp, sessions: SessionBook, accounts: Accounts) -> None:
        self.app = app
        self.sessions = sessions
        self.accounts = accounts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        static = path.startswith(f"{PREFIX}/static/")

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS.items():
                    headers[name] = value
                if not static:
                    headers["cache-control"] = "no-store"
            await send(message)

        if not path.startswith(_OPEN):
            token = cookie(scope, COOKIE)
            session = self.sessions.find(token) if token else None
            if session is not None:
                # The account as it is now: a removed operator is out, a new role applies.
                account = self.accounts.find(session.name)
                if account is None:
                    self.sessions.close_all(session.name)
                    session = None
                elif account.role != session.role:
                    session = self.sessions.set_role(session.token, account.role)
            if session is None:
                await _to_login(scope)(scope, receive, send_secured)
                return
            scope.setdefault("state", {})["session"] = session
        await self.app(scope, receive, send_secured)


def _to_login(scope: Scope) -> Response:
    request = Request(scope)
    target = f"{PREFIX}/login?next={quote(request.url.path)}"
    if request.headers.get("hx-request"):
        # htmx would swap the login page into a fragment; ask it to navigate instead.
        return PlainTextResponse("log in first", 401, headers={"HX-Redirect": target})
    if request.method in ("GET", "HEAD"):
        return RedirectResponse(target, 303)
    return PlainTextResponse("log in first: this console serves nothing else", 401)
