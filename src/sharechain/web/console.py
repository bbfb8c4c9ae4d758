"""The console of one node: its accounts, sessions, templates, and how it is mounted.

`mount(app, node)` is the whole hook the node's API calls: it adds the
`ConsoleGuard` middleware, the page and action routes under `/ui`, the
static files, and the handler that turns a refusal into an HTML page.

Pages are rendered on the server by Jinja2 with autoescaping on, so any text
a member put on the chain (a dataset's title, a justification) reaches the
browser as text, never as markup.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from sharechain.api.wire import iso
from sharechain.node.service import Node
from sharechain.web.accounts import ACTION_ROLES, VOTE_ROLES, Accounts
from sharechain.web.guard import CSRF_FIELD, PREFIX, ConsoleGuard, RefusedError, session_of
from sharechain.web.sessions import LoginThrottle, SessionBook
from sharechain.web.throughput import Sampler, rates

__all__ = ["Console", "console_of", "mount"]

_HERE = Path(__file__).parent
NAV = (
    ("overview", f"{PREFIX}/", "Overview"),
    ("blocks", f"{PREFIX}/blocks", "Blocks"),
    ("catalogue", f"{PREFIX}/datasets", "Catalogue"),
    ("inbox", f"{PREFIX}/inbox", "Inbox"),
    ("privacy", f"{PREFIX}/privacy", "Privacy"),
    ("checkpoints", f"{PREFIX}/checkpoints", "Checkpoints"),
    ("org", f"{PREFIX}/org", "Organisation"),
)


class Console:
    """Everything the console's routes share for one node."""

    def __init__(
        self,
        node: Node,
        *,
        now: Callable[[], float] = time.time,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.node = node
        """The `sharechain.node.service.Node` whose store and key the console uses."""
        self.now = now
        """The console's clock (sessions, throttling, samples); replaceable in tests."""
        self.rng = rng
        clock = self._clock
        self.accounts = Accounts(node.datadir.path, now=clock)
        self.sessions = SessionBook(now=clock, rng=rng)
        self.throttle = LoginThrottle(now=clock)
        self.sampler = Sampler(node.metrics.registry, now=clock)
        self.flashes: dict[str, str] = {}
        self._flash_lock = threading.Lock()
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters["iso"] = iso
        self.env.filters["short"] = lambda text, n=12: str(text)[:n]

    def _clock(self) -> float:
        return self.now()

    def flash(self, token: str, message: str) -> None:
        """A message for the operator's next page (the outcome of an action)."""
        with self._flash_lock:
            self.flashes[token] = message

    def sampler_rates(
        self,
    ) -> tuple[tuple[tuple[float, float], ...], tuple[tuple[float, float], ...]]:
        """Transactions per second and mean commit time (ms) over the last hour."""
        return rates(self.sampler.samples())

    def render(
        self, request: Request, template: str, *, http_status: int = 200, **ctx: Any
    ) -> HTMLResponse:
        """A page of the console, with the layout's navigation and the operator's tokens."""
        session = request.scope.get("state", {}).get("session")
        flash = ""
        if session is not None:
            with self._flash_lock:
                flash = self.flashes.pop(session.token, "")
        ctx.setdefault("page", "")
        html = self.env.get_template(template).render(
            session=session,
            org=self.node.org,
            consortium=self.node.datadir.consortium,
            nav=NAV,
            prefix=PREFIX,
            csrf_field=CSRF_FIELD,
            can_act=session is not None and session.role in ACTION_ROLES,
            can_vote=session is not None and session.role in VOTE_ROLES,
            flash=flash,
            **ctx,
        )
        return HTMLResponse(html, http_status)


def console_of(request: Request) -> Console:
    console = request.app.state.console
    assert isinstance(console, Console)
    return console


def _refused(request: Request, exc: Exception) -> HTMLResponse:
    assert isinstance(exc, RefusedError)
    console = console_of(request)
    # A refusal outside a session (login) has no navigation to show.
    try:
        session_of(request)
    except RefusedError:
        request.scope.setdefault("state", {}).pop("session", None)
    return console.render(
        request, "error.html", http_status=exc.status, status=exc.status, message=str(exc)
    )


def mount(app: FastAPI, node: Node) -> Console:
    """Serve the console of `node` under `/ui` in `app`."""
    from sharechain.web import actions, checkpoints, pages, privacy  # they import Console

    console = Console(node, now=node.now)
    app.state.console = console
    app.add_middleware(ConsoleGuard, sessions=console.sessions, accounts=console.accounts)
    app.add_exception_handler(RefusedError, _refused)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=_HERE / "static"), name="ui-static")
    app.include_router(pages.router)
    app.include_router(privacy.router)
    app.include_router(checkpoints.router)
    app.include_router(actions.router)
    node.spawn("console-sampler", lambda: console.sampler.run(node.stop_event))
    node.on_close(console.accounts.close)
    return console
