"""How a node's API refuses: always JSON `{"error": kind, "detail": text}`, never a bare 500.

Errors of the sharechain tree map to statuses by kind (`_STATUS`: 400 bad
input, 401 unauthenticated, 403 forbidden, 404 not found, 502 a peer's data
failed its checks, 503 the node or its ordering service cannot serve);
request validation is 422 with the fields at fault; anything unexpected is a
500 that says to look at the node log (where the traceback is). A guard in
front of the routes refuses oversized bodies (413) and, while the node is
quarantined, everything but its health, readiness and metrics (503).
The bodies are the models of `sharechain.api.problems`.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from sharechain.api.problems import ErrorBody, FieldError, InvalidBody
from sharechain.errors import (
    AccessDeniedError,
    AuthenticationError,
    ChainError,
    ConfigError,
    EncodingError,
    IntegrityError,
    InvalidSignatureError,
    NotFoundError,
    OrderingError,
    SharechainError,
    TransactionRejectedError,
)
from sharechain.node.service import Node

__all__ = ["ACCEPT_SIGNATURE", "MAX_BODY_BYTES", "OPEN_PATHS", "refuse_in_json"]

log = logging.getLogger("sharechain.node.api")

MAX_BODY_BYTES = 64 * 1024 * 1024
ACCEPT_SIGNATURE = 'sig1=("@method" "@authority" "@path" "@query" "content-digest");alg="ed25519"'
OPEN_PATHS = frozenset({"/v1/health", "/v1/ready", "/metrics", "/openapi.json", "/docs"})

_STATUS: dict[type[SharechainError], tuple[int, str]] = {
    AuthenticationError: (401, "unauthenticated"),
    AccessDeniedError: (403, "forbidden"),
    NotFoundError: (404, "not_found"),
    EncodingError: (400, "bad_request"),
    InvalidSignatureError: (400, "bad_request"),
    TransactionRejectedError: (409, "rejected"),
    IntegrityError: (502, "integrity"),
    OrderingError: (503, "unavailable"),
    ChainError: (503, "unavailable"),
    ConfigError: (503, "unavailable"),
}


def _error(
    status: int, kind: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorBody(error=kind, detail=detail)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


class _Guard:
    """Refuse oversized bodies (413) and, on a quarantined node, everything but OPEN_PATHS.

    A plain ASGI middleware rather than `@app.middleware("http")`: Starlette's
    `BaseHTTPMiddleware` wraps every message of a request body in a task group, which
    cost a blob upload (hundreds of 64 KiB messages per chunk) a fifth of the node's
    time on the event loop.
    """

    def __init__(self, app: ASGIApp, node: Node) -> None:
        self.app = app
        self.node = node

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> JSONResponse | None:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                length = value.decode("latin-1")
                if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                    return _error(
                        413, "too_large", f"request bodies are limited to {MAX_BODY_BYTES} bytes"
                    )
        if self.node.problem is not None and scope.get("path", "") not in OPEN_PATHS:
            return _error(503, "quarantined", self.node.problem)
        return None


def refuse_in_json(app: FastAPI, node: Node) -> None:
    """Make every refusal of `app` a JSON error body, and guard it (see `_Guard`)."""
    app.add_middleware(_Guard, node=node)

    @app.exception_handler(SharechainError)
    async def sharechain_error(request: Request, exc: SharechainError) -> JSONResponse:
        for cls in type(exc).__mro__:
            if cls in _STATUS:
                status, kind = _STATUS[cls]
                break
        else:
            status, kind = 400, "bad_request"
        headers = None
        if status == 401:
            headers = {"Accept-Signature": ACCEPT_SIGNATURE}
        return _error(status, kind, str(exc), headers)

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
        return _error(exc.status_code, "http", str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error serving %s %s", request.method, request.url.path)
        return _error(500, "internal", f"internal error ({type(exc).__name__}); see the node log")
