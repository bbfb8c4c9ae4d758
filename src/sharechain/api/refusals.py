"""How a node's API refuses: always JSON `{"error": kind, "detail": text}`, never a bare 500.

Errors of the sharechain tree map to statuses by kind (`_STATUS`: 400 bad
input, 401 unauthenticated, 403 forbidden, 404 not found, 502 a peer's data
failed its checks, 503 the node or its ordering service cannot serve);
request validation is 422 with the fields at fault; anything unexpected is a
500 that says to look at the node log (where the traceback is). A guard in
front of the routes refuses oversized bodies (413) and, while the node is
quarantined, everything but its health, readiness and metrics (503).
The bodies are the models of `sharechain.api.problems`.

The guard reads the node it stands in front of through `Gated` (its
organisation, quarantine, chain keys, nonces and clock), so this wire layer
needs nothing of `sharechain.node` and the node passes itself in.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sharechain.api.auth import NonceCache, SignedRequest, check_body_digest, verify_headers
from sharechain.api.problems import ErrorBody, FieldError, InvalidBody
from sharechain.api.quotas import Limits, PerSource, WaitSlots
from sharechain.errors import (
    AccessDeniedError,
    AuthenticationError,
    ChainError,
    ConfigError,
    DiskFullError,
    EncodingError,
    IntegrityError,
    InvalidSignatureError,
    NotFoundError,
    OrderingError,
    QuotaError,
    SharechainError,
    TooLargeError,
    TransactionRejectedError,
)

__all__ = [
    "ACCEPT_SIGNATURE",
    "MAX_BODY_BYTES",
    "MAX_CHUNK_BYTES",
    "OPEN_PATHS",
    "SIGNED_SCOPE",
    "Gated",
    "body_limit",
    "refuse_in_json",
]

log = logging.getLogger("sharechain.node.api")

MAX_BODY_BYTES = Limits().max_body
MAX_CHUNK_BYTES = 32 << 20
"""Largest chunk one `PUT /v1/blobs` or `/v1/uploads` request may carry."""
_CLOSE = {"Connection": "close"}
"""Sent with a refusal whose body is left unread, so the server drops the connection
rather than reading (and discarding) the rest of the body."""
DRAIN_BYTES = 1 << 20
"""Largest unread body of a refused request the server may discard to keep its connection."""
SIGNED_SCOPE = "sharechain.signed"
"""Where the guard leaves the verified signature (`SignedRequest`) in the ASGI scope."""
ACCEPT_SIGNATURE = (
    'sig1=("@method" "@authority" "@path" "@query" "sharechain-node" "content-digest");'
    'alg="ed25519"'
)
OPEN_PATHS = frozenset({"/v1/health", "/v1/ready", "/metrics", "/openapi.json", "/docs"})


class DiskState(Protocol):
    """The node's disk alarm, as the guard reads it."""

    @property
    def full(self) -> str | None:
        """Why the disk counts as full (no work is taken), or None."""


class Gated(Protocol):
    """What the guard reads of the node it stands in front of (`sharechain.node.service.Node`)."""

    @property
    def org(self) -> str:
        """The node's organisation: a signature must name it as the node it is for."""

    @property
    def problem(self) -> str | None:
        """Why the node is quarantined (everything but `OPEN_PATHS` refused), or None."""

    @property
    def nonces(self) -> NonceCache:
        """The signature nonces seen recently (a replayed one is refused)."""

    @property
    def now(self) -> Callable[[], float]:
        """The node's clock (Unix seconds)."""

    @property
    def disk(self) -> DiskState:
        """The node's disk alarm (`sharechain.storage.diskspace.DiskGuard`)."""

    def request_key(self, org: str) -> bytes | None:
        """The key a request signed as `org` is checked with (active or removed members')."""

    def removed_reason(self, org: str) -> str | None:
        """Why `org`'s requests are refused with 403 (None: it is not a removed member)."""

    def refused_share(self, org: str) -> None:
        """Count a request of `org` refused because its share was under way (a metric)."""


_STATUS: dict[type[SharechainError], tuple[int, str]] = {
    AuthenticationError: (401, "unauthenticated"),
    TooLargeError: (413, "too_large"),
    QuotaError: (429, "too_many_requests"),
    AccessDeniedError: (403, "forbidden"),
    NotFoundError: (404, "not_found"),
    EncodingError: (400, "bad_request"),
    InvalidSignatureError: (400, "bad_request"),
    TransactionRejectedError: (409, "rejected"),
    IntegrityError: (502, "integrity"),
    DiskFullError: (503, "disk_full"),
    OrderingError: (503, "unavailable"),
    ChainError: (503, "unavailable"),
    ConfigError: (503, "unavailable"),
}


def _error(
    status: int, kind: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorBody(error=kind, detail=detail)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def body_limit(limits: Limits, method: str, path: str) -> int:
    """The largest body a request may carry: a blob chunk, or any other body."""
    if method == "PUT" and path.startswith(("/v1/blobs/", "/v1/uploads/")):
        return min(MAX_CHUNK_BYTES, limits.max_body)
    return limits.max_body


class _Metered:
    """The request's body messages, counted against its limit and hashed for its signature.

    Raises `TooLargeError` (413) at the first message past the limit, so a body
    is never read further than that, chunked or not; raises
    `AuthenticationError` (401) at the end of a body whose SHA-256 is not the
    `Content-Digest` the signature covered (the handler has only buffered it).
    """

    def __init__(self, receive: Receive, limit: int, signed: SignedRequest | None) -> None:
        self.receive = receive
        self.limit = limit
        self.signed = signed
        self.seen = 0
        self.hash = hashlib.sha256()

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] != "http.request":
            return message
        chunk = message.get("body", b"")
        self.seen += len(chunk)
        if self.seen > self.limit:
            raise TooLargeError(f"request bodies here are limited to {self.limit} bytes")
        if self.signed is not None:
            self.hash.update(chunk)
            if not message.get("more_body", False):
                check_body_digest(self.signed, self.hash.digest())
        return message


class _Guard:
    """Check every request before its body is read: size, quarantine, signature, rate.

    A signed path (`/v1/...` but OPEN_PATHS) gets its RFC 9421 signature checked
    from the headers alone; the caller (`SIGNED_SCOPE` in the ASGI scope) is what
    the node's `Auth` dependency hands the routes, and the body is then checked
    against the signed `Content-Digest` while it streams. An unsigned or forged
    request is refused before one byte of its body is read, and a client address
    that keeps sending them is refused (429) without even a signature check.

    A plain ASGI middleware rather than `@app.middleware("http")`: Starlette's
    `BaseHTTPMiddleware` wraps every message of a request body in a task group, which
    cost a blob upload (hundreds of 64 KiB messages per chunk) a fifth of the node's
    time on the event loop.
    """

    def __init__(self, app: ASGIApp, node: Gated, limits: Limits) -> None:
        self.app = app
        self.node = node
        self.limits = limits
        self.unsigned = PerSource(limits.unsigned_per_minute)
        self.logs = PerSource(limits.logs_per_minute)
        self.under_way = WaitSlots(limits.requests_per_member)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope.get("method", "GET"), scope.get("path", "")
        limit = body_limit(self.limits, method, path)
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            why = f"request bodies here are limited to {limit} bytes"
            await _error(413, "too_large", why, dict(_CLOSE))(scope, receive, send)
            return
        if self.node.problem is not None and path not in OPEN_PATHS:
            await _error(503, "quarantined", self.node.problem)(scope, receive, send)
            return
        full = self.node.disk.full
        if full is not None and method not in ("GET", "HEAD") and path.startswith("/v1/"):
            # No work while the disk is full (sharechain.storage.diskspace); reads go on.
            # Like a refused signature: a small body is discarded and the connection kept.
            unbounded = length is None and _header(scope, b"transfer-encoding") is not None
            drop = unbounded or (length is not None and int(length) > DRAIN_BYTES)
            headers = {"Retry-After": "30", **(_CLOSE if drop else {})}
            await _error(503, "disk_full", full, headers)(scope, receive, send)
            return
        signed = None
        if path.startswith("/v1/") and path not in OPEN_PATHS:
            source = str((scope.get("client") or ("unknown",))[0])
            if _header(scope, b"signature") is None and self.unsigned.exhausted(source):
                # Refused too often: unsigned requests are not even looked at. A signed one
                # is still checked, since an address may be shared (NAT, nodes on one host).
                await self._too_many(scope, receive, send, source)
                return
            has_body = length not in (None, "0") or _header(scope, b"transfer-encoding") is not None
            # A refusal leaves a large or unbounded body unread and drops the connection;
            # a small one the server discards, keeping the connection for the next request.
            drop = has_body and (length is None or int(length) > DRAIN_BYTES)
            try:
                signed = self._verify(scope, method, has_body)
            except AuthenticationError as exc:
                await self._refuse_unsigned(scope, receive, send, source, str(exc), drop)
                return
            except QuotaError as exc:  # a member with too many signed requests in flight
                headers = {"Retry-After": str(exc.retry_after), **(_CLOSE if drop else {})}
                await _error(429, "too_many_requests", str(exc), headers)(scope, receive, send)
                return
            removed = self.node.removed_reason(signed.org)
            if removed is not None:  # the signature verified under a removed member's key
                await _error(403, "forbidden", removed, dict(_CLOSE) if drop else None)(
                    scope, receive, send
                )
                return
            scope[SIGNED_SCOPE] = signed
            if signed.org != self.node.org:  # the node's own organisation is not counted
                await self._member_share(scope, receive, send, signed, limit, drop)
                return
        await self.app(scope, _Metered(receive, limit, signed), send)

    async def _member_share(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        signed: SignedRequest,
        limit: int,
        drop: bool,
    ) -> None:
        """Serve a member's request within its share of the requests under way
        (`Limits.requests_per_member`), or refuse it with 429 before its body is read."""
        org = signed.org
        if not self.under_way.take(org):
            self.node.refused_share(org)
            if self.logs.allow(org):
                path = scope.get("path")
                log.info("refused a request of %s to %s: its share is under way", org, path)
            why = (
                f"{org} has {self.under_way.per_caller} requests under way on this node "
                "already; wait for one to end before sending more"
            )
            headers = {"Retry-After": "1", **(_CLOSE if drop else {})}
            await _error(429, "too_many_requests", why, headers)(scope, receive, send)
            return
        try:
            await self.app(scope, _Metered(receive, limit, signed), send)
        finally:
            self.under_way.give_back(org)

    def _verify(self, scope: Scope, method: str, has_body: bool) -> SignedRequest:
        headers = Headers(scope=scope)
        raw_path = scope.get("raw_path") or scope.get("path", "").encode()
        query = scope.get("query_string", b"")
        return verify_headers(
            method=method,
            authority=headers.get("host", ""),
            target=f"{raw_path.decode('latin-1')}?{query.decode('latin-1')}",
            headers=headers,
            has_body=has_body,
            public_key=self.node.request_key,
            nonces=self.node.nonces,
            node=self.node.org,
            now=self.node.now,
        )

    async def _refuse_unsigned(
        self, scope: Scope, receive: Receive, send: Send, source: str, why: str, drop: bool
    ) -> None:
        if self.logs.allow(source):
            log.info("refused a request from %s to %s: %s", source, scope.get("path"), why)
        if not self.unsigned.allow(source):
            await self._too_many(scope, receive, send, source)
            return
        headers = {"Accept-Signature": ACCEPT_SIGNATURE}
        if drop:
            headers.update(_CLOSE)
        await _error(401, "unauthenticated", why, headers)(scope, receive, send)

    async def _too_many(self, scope: Scope, receive: Receive, send: Send, source: str) -> None:
        reply = _error(
            429,
            "too_many_requests",
            f"too many refused requests from {source}; sign requests with the "
            "organisation's key, and retry in a minute",
            {"Retry-After": "60"},
        )
        await reply(scope, receive, send)


def _refusal(exc: SharechainError) -> JSONResponse:
    """The JSON refusal of a sharechain error: its status by kind (`_STATUS`)."""
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            status, kind = _STATUS[cls]
            break
    else:
        status, kind = 400, "bad_request"
    headers = None
    if status == 401:
        headers = {"Accept-Signature": ACCEPT_SIGNATURE}
    elif isinstance(exc, QuotaError):
        headers = {"Retry-After": str(exc.retry_after)}
    elif isinstance(exc, TooLargeError):
        headers = dict(_CLOSE)
    return _error(status, kind, str(exc), headers)


def refuse_in_json(app: FastAPI, node: Gated, limits: Limits) -> None:
    """Make every refusal of `app` a JSON error body, and guard it (see `_Guard`)."""
    app.add_middleware(_Guard, node=node, limits=limits)

    @app.exception_handler(SharechainError)
    async def sharechain_error(request: Request, exc: SharechainError) -> JSONResponse:
        return _refusal(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        body = InvalidBody(
            error="bad_request",
            detail="the request does not match the API",
            errors=[
                FieldError(loc=[str(x) for x in e.get("loc", ())], msg=str(e.get("msg", "")))
                for e in exc.errors()
            ],
        )
        return JSONResponse(body.model_dump(), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, SharechainError):
            # FastAPI reports any failure while reading a JSON body as "error parsing the
            # body"; a body refused by the guard (too large, digest) keeps its own status.
            return _refusal(exc.__cause__)
        return _error(exc.status_code, "http", str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error serving %s %s", request.method, request.url.path)
        return _error(500, "internal", f"internal error ({type(exc).__name__}); see the node log")
