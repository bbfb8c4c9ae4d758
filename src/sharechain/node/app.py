"""The node's REST API (FastAPI): `/v1/...`, described by its OpenAPI document.

Unauthenticated: `GET /v1/health` (liveness), `GET /v1/ready` (readiness,
503 with the reason when the node refuses to serve) and `GET /metrics`
(Prometheus). Everything else under `/v1` must be signed by an
organisation's key (RFC 9421, see `sharechain.api.auth`); the signer's
roles on the chain decide what it may read (see `sharechain.node.queries`).

Errors are JSON `{"error": kind, "detail": text}`: 400 malformed input, 401
unauthenticated (missing, expired, replayed or forged signature), 403 not
allowed for this organisation, 404 not found, 413 too large, 415 a body in a
media type the endpoint does not take, 503 the node or its ordering service
cannot serve now. Bad input never yields a 500.

`POST /v1/txs` takes its batch as JSON (envelopes in hex) or as CBOR
(`application/cbor`: envelopes as byte strings, half the bytes and no hex
to write or read), and answers in CBOR when the request accepts it. The
sharechain client and the nodes forwarding to their leader use CBOR; JSON
stays for everyone else.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from sharechain.codec import encode
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
from sharechain.ledger.blocks import decode_block
from sharechain.ledger.proofs import prove_tx
from sharechain.node import upkeep
from sharechain.node.deps import Auth
from sharechain.node.service import Node
from sharechain.node.submissions import (
    CBOR,
    RECEIPTS_DOC,
    SUBMIT_DOC,
    accepts_cbor,
    admit,
    parse_submission,
)

__all__ = ["API_VERSION", "MAX_BODY_BYTES", "create_app"]

log = logging.getLogger("sharechain.node.api")

API_VERSION = "1.0.0"
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
    return JSONResponse({"error": kind, "detail": detail}, status_code=status, headers=headers)


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


def create_app(node: Node) -> FastAPI:
    """The API of `node` (which the caller starts and stops)."""
    app = FastAPI(
        title="sharechain node",
        version=API_VERSION,
        description=(
            "REST API of one organisation's sharechain node. Requests under /v1 (except "
            "health and ready) carry an RFC 9421 HTTP Message Signature made with the "
            "organisation's Ed25519 key: Signature-Input covering @method, @authority, @path, "
            "@query and content-digest, with created, expires, nonce, keyid=<org id>, "
            'alg="ed25519".'
        ),
    )
    app.state.node = node

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
        errors = [
            {"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        return JSONResponse(
            {
                "error": "bad_request",
                "detail": "the request does not match the API",
                "errors": errors,
            },
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "http", str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error serving %s %s", request.method, request.url.path)
        return _error(500, "internal", f"internal error ({type(exc).__name__}); see the node log")

    # -- operations ---------------------------------------------------------

    @app.get("/v1/health", tags=["operations"])
    def health() -> dict[str, Any]:
        """Liveness: the process answers."""
        return {"status": "ok", "org": node.org}

    @app.get("/v1/ready", tags=["operations"], responses={503: {"description": "not ready"}})
    def ready() -> JSONResponse:
        """Readiness: 200 when the node serves and commits, 503 with the reason when not."""
        body = {
            "ready": node.ready,
            "caught_up": node.caught_up,
            "height": node.ledger.height if node.problem is None else -1,
            "problem": node.problem,
            "halted": node.halted,
        }
        return JSONResponse(body, status_code=200 if node.ready else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def metrics() -> Response:
        """Prometheus metrics (text exposition format)."""
        return Response(node.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/status", tags=["operations"])
    def status(who: Auth) -> dict[str, Any]:
        """Height, head, peers, latest attestations and the data plane's upkeep."""
        return {**node.status(), "data_plane": upkeep.status(node)}

    # -- transactions ---------------------------------------------------------

    @app.post(
        "/v1/txs",
        tags=["transactions"],
        openapi_extra=SUBMIT_DOC,
        responses={
            200: RECEIPTS_DOC,
            202: {"description": "queued (`wait` false): the transaction ids"},
            400: {"description": "a malformed CBOR body, or an envelope that is not one"},
            415: {"description": "a body neither JSON nor CBOR"},
            422: {"description": "a JSON body that does not match SubmitBody"},
        },
    )
    async def submit(request: Request, who: Auth) -> Response:
        """Submit signed transactions (many per request); with `wait`, return receipts.

        The body is JSON (`txs` in hex) or `application/cbor` (`txs` as byte
        strings); the answer is CBOR when the request accepts it. Each
        envelope must be framed as `[1, body, key id, signature]` (else 400,
        naming the first that is not); a body that is no transaction is
        committed with the code `bad_encoding`, like any invalid transaction.
        """
        sub = parse_submission(request.headers.get("content-type", ""), await request.body())
        raws = sub.raws
        admit(raws)
        cbor = accepts_cbor(request.headers.get("accept", ""))
        if node.forward is not None:
            batch = await run_in_threadpool(node.submit_batch, raws)
        else:
            batch = node.submit_batch(raws)
        if not sub.wait:
            ids = [hashlib.sha256(r).digest() for r in raws]
            if cbor:
                return Response(encode({"tx_ids": ids, "receipts": []}), 202, media_type=CBOR)
            return JSONResponse({"tx_ids": [i.hex() for i in ids], "receipts": []}, 202)
        try:
            receipts = await asyncio.wait_for(asyncio.wrap_future(batch), sub.timeout)
        except TimeoutError:
            raise OrderingError(
                f"not committed within {sub.timeout:.1f}s; the transactions stay queued, "
                "ask GET /v1/txs/{id} later"
            ) from None
        if cbor:
            rows = [[r.tx_id, r.height, r.index, r.code, r.reason] for r in receipts]
            return Response(encode({"receipts": rows}), media_type=CBOR)
        return JSONResponse(
            {
                "receipts": [
                    {
                        "tx_id": r.tx_id.hex(),
                        "height": r.height,
                        "index": r.index,
                        "code": r.code,
                        "reason": r.reason,
                    }
                    for r in receipts
                ]
            }
        )

    @app.get("/v1/txs/{tx_id}", tags=["transactions"])
    def tx(tx_id: str, who: Auth) -> dict[str, Any]:
        """Where a transaction was committed and its validation code."""
        info = node.tx_info(_hex32(tx_id))
        if info is None:
            raise NotFoundError(f"transaction {tx_id} is not committed on this node")
        return info

    @app.get("/v1/txs/{tx_id}/proof", tags=["transactions"])
    def proof(tx_id: str, who: Auth) -> dict[str, Any]:
        """RFC 9162 inclusion proof of a transaction in its block, with the block header."""
        return prove_tx(node.store, _hex32(tx_id)).to_json()

    # -- blocks --------------------------------------------------------------------

    @app.get("/v1/blocks", tags=["blocks"])
    def blocks(
        who: Auth,
        start: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """Block headers from `start` on."""
        out: list[dict[str, Any]] = []
        for _, data in node.store.iter_blocks(start):
            if len(out) >= limit:
                break
            out.append(_block_json(data, with_txs=False))
        return {"height": node.ledger.height, "blocks": out}

    @app.get("/v1/blocks/{height}", tags=["blocks"])
    def block(height: Annotated[int, Path(ge=0, le=2**62)], who: Auth) -> dict[str, Any]:
        """One block: header, orderer signature, transaction ids and results."""
        data = node.store.block_bytes(height)
        if data is None:
            raise NotFoundError(f"no block {height} on this node (height {node.ledger.height})")
        return _block_json(data, with_txs=True)

    @app.get("/v1/sync/blocks", tags=["blocks"], response_class=Response)
    def sync_blocks(
        who: Auth,
        start: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=256)] = 64,
        wait: Annotated[float, Query(ge=0.0, le=10.0)] = 0.0,
    ) -> Response:
        """Raw blocks from `start` (a CBOR array of block encodings), long-polled up to `wait` s."""
        if wait > 0 and node.ledger.height < start:
            node.wait_height(start, wait)
        out: list[bytes] = []
        size = 0
        for _, data in node.store.iter_blocks(start):
            if len(out) >= limit or (out and size + len(data) > 32 * 1024 * 1024):
                break
            out.append(data)
            size += len(data)
        return Response(encode(out), media_type="application/cbor")

    # -- attestations ------------------------------------------------------------------

    @app.get("/v1/attestations", tags=["attestations"])
    def attestations(who: Auth, since: Annotated[int, Query(ge=0, le=2**62)] = 0) -> dict[str, Any]:
        """This node's recent signed attestations (height, block hash, state root)."""
        return {"org": node.org, "attestations": [a.to_json() for a in node.book.own(since)]}

    @app.get("/v1/attestations/status", tags=["attestations"])
    def attestation_status(who: Auth) -> dict[str, Any]:
        """Which peers agree with this node's chain (and each one's latest attestation)."""
        body = node.attestation_status()
        latest = {p.org: p.latest for p in node.book.peers()}
        for peer in body["peers"]:
            att = latest.get(peer["org"])
            peer["latest"] = None if att is None else att.to_json()
        return body

    from sharechain.node import queries  # the data-sharing read endpoints

    queries.register(app, node)
    from sharechain.node import delivery  # blobs, custody and key releases between nodes

    app.include_router(delivery.router)
    # -- console (sharechain.web): the browser console under /ui, its own routes and guard --
    from sharechain.web import mount as mount_console

    mount_console(app, node)
    upkeep.attach(node)  # shreds on commit, fetches missing blobs (stops with the node)
    return app


def _hex32(text: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != 32:
        raise EncodingError(f"{text[:80]!r} is not a 64-digit hex id")
    return value


def _block_json(data: bytes, *, with_txs: bool) -> dict[str, Any]:
    block = decode_block(data, check_canonical=False)
    h = block.header
    out: dict[str, Any] = {
        "height": h.height,
        "hash": block.hash().hex(),
        "prev_hash": h.prev_hash.hex(),
        "tx_root": h.tx_root.hex(),
        "state_delta_hash": h.state_delta_hash.hex(),
        "timestamp": h.timestamp,
        "orderer": h.orderer,
        "signature": block.signature.hex(),
        "tx_count": len(block.txs),
    }
    if with_txs:
        out["txs"] = [
            {"tx_id": t.hex(), "code": r.code, "reason": r.reason}
            for t, r in zip(block.tx_ids, block.results, strict=True)
        ]
    return out
