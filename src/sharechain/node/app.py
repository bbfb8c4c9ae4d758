"""The node's REST API (FastAPI): `/v1/...`, described by its OpenAPI document.

Unauthenticated: `GET /v1/health` (liveness), `GET /v1/ready` (readiness,
503 with the reason when the node refuses to serve) and `GET /metrics`
(Prometheus). Everything else under `/v1` must be signed by an
organisation's key (RFC 9421, see `sharechain.api.auth`); the signer's
roles on the chain decide what it may read (see `sharechain.api.state_routes`).

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
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from sharechain.api import checkpoint_routes, policy_routes, state_routes
from sharechain.api.client import BLOCKS_ANSWER_BYTES
from sharechain.api.models import (
    AttestationList,
    AttestationStatus,
    BlockDetail,
    BlockList,
    Queued,
    ReceiptList,
    TxInfo,
    TxProof,
)
from sharechain.api.problems import (
    OPEN_ERRORS,
    SIGNED_ERRORS,
    error_responses,
)
from sharechain.api.quotas import Limits, PerSource, SubmissionQuota, WaitSlots
from sharechain.api.refusals import refuse_in_json
from sharechain.api.serving import Auth
from sharechain.api.status import Health, NodeStatus, Readiness
from sharechain.codec import encode
from sharechain.errors import (
    EncodingError,
    NotFoundError,
    OrderingError,
    QuotaError,
)
from sharechain.ledger.blocks import BlockHeader, block_summary, decode_block
from sharechain.ledger.proofs import prove_tx
from sharechain.node import joining, snapshots, upkeep
from sharechain.node.service import Node
from sharechain.node.submissions import (
    CBOR,
    QUEUED_DOC,
    RECEIPTS_DOC,
    SUBMIT_DOC,
    accepts_cbor,
    admit,
    parse_submission,
)
from sharechain.sharing import custody_routes, delivery, mailbox_routes
from sharechain.sharing.deposits import PendingDeposits
from sharechain.sharing.key_sessions import SESSIONS_FILE, KeySessions
from sharechain.storage.uploads import Uploads

__all__ = ["API_VERSION", "Extension", "create_app"]

API_VERSION = "1.0.0"


Extension = Callable[[FastAPI, Node], object]
"""Adds routes of a layer above the node to its app (the browser console, `sharechain.web`).

The node never imports those layers: whoever starts it (the command line, a test)
passes their `mount` function in, so `node/` stays below the faces."""


def create_app(
    node: Node, extensions: Sequence[Extension] = (), limits: Limits | None = None
) -> FastAPI:
    """The API of `node` (which the caller starts and stops); one per node.

    Each of `extensions` is called with the app and the node once the API's own
    routes are in place. `limits` bound what each caller may cost the node
    (`sharechain.api.quotas`).

    The app also holds the node's data-plane state that lives as long as its
    API: `app.state.upkeep` (shredding and blob fetching after commits) and
    `app.state.uploads` (chunked uploads in progress).
    """
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
    limits = limits or Limits()
    app.state.node = node
    app.state.limits = limits
    node.nonces.per_member = limits.signed_in_flight_per_member
    app.state.uploads = Uploads(per_member=limits.upload_sessions_per_member)
    app.state.uploads.sweep(delivery.blobs_of(node), at_start=True)  # leftovers of a crash
    node.on_close(app.state.uploads.close)  # part files kept, open files closed
    app.state.key_sessions = KeySessions(
        limits.key_sessions_per_caller, path=node.config.data_dir / SESSIONS_FILE
    )
    app.state.pending_deposits = PendingDeposits(limits.pending_deposits_per_member)
    quota = SubmissionQuota(limits.submissions_per_block)
    junk = PerSource(limits.bad_submissions_per_minute)
    long_polls = WaitSlots(limits.long_polls_per_caller)
    block_reads = WaitSlots(limits.block_reads_per_caller)

    def reading_blocks(org: str) -> AbstractContextManager[None]:
        """One of `org`'s block reads under way (429 past its share)."""
        return block_reads.holding(
            org,
            "block reads under way on this node already; wait for them to end before "
            "asking for more blocks",
        )

    # signatures before bodies, oversized bodies, a quarantined node, every error
    refuse_in_json(app, node, limits)

    # -- operations ---------------------------------------------------------

    @app.get("/v1/health", tags=["operations"], response_model=Health, responses=OPEN_ERRORS)
    async def health() -> dict[str, Any]:
        """Liveness: the process answers (on the event loop: no worker thread needed);
        `alarms` lists what needs an operator (etcd NOSPACE, a full disk)."""
        alarms = list(node.etcd_alarms) + ([node.disk.full] if node.disk.full else [])
        return {"status": "alarm" if alarms else "ok", "org": node.org, "alarms": alarms}

    @app.get(
        "/v1/ready",
        tags=["operations"],
        response_model=Readiness,
        responses={
            **OPEN_ERRORS,
            503: {"model": Readiness, "description": "not ready: `problem` or `halted` says why"},
        },
    )
    def ready() -> JSONResponse:
        """Readiness: 200 when the node serves and commits, 503 with the reason when not."""
        body = Readiness(
            org=node.org,
            genesis_hash=node.datadir.genesis_hash.hex(),
            ready=node.ready,
            caught_up=node.caught_up,
            height=node.ledger.height if node.problem is None else -1,
            problem=node.problem,
            halted=node.halted,
        )
        return JSONResponse(body.model_dump(), status_code=200 if node.ready else 503)

    @app.get(
        "/metrics",
        tags=["operations"],
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text exposition format 0.0.4",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            **OPEN_ERRORS,
        },
    )
    def metrics() -> Response:
        """Prometheus metrics (text exposition format)."""
        return Response(node.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/status", tags=["operations"], response_model=NodeStatus, responses=SIGNED_ERRORS)
    def status(who: Auth) -> dict[str, Any]:
        """Height, head, peers, latest attestations and the data plane's upkeep."""
        found: upkeep.Upkeep | None = app.state.upkeep
        return {**node.status(), "data_plane": None if found is None else found.status()}

    # -- transactions ---------------------------------------------------------

    @app.post(
        "/v1/txs",
        tags=["transactions"],
        openapi_extra=SUBMIT_DOC,
        response_model=ReceiptList,
        responses={
            **SIGNED_ERRORS,
            200: RECEIPTS_DOC,
            202: QUEUED_DOC,
            **error_responses(
                400,
                415,
                422,
                429,
                s400="a malformed CBOR body, or an envelope that is not one",
                s429="the caller passed its submission quota for this block (`Retry-After`)",
                s415="a body neither JSON nor CBOR",
                s422="a JSON body that does not match SubmitBody",
            ),
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
        if junk.exhausted(who.org):
            raise QuotaError(
                f"{who.org} sent too many malformed submissions; fix the client and retry "
                "in a minute",
                retry_after=60,
            )
        try:
            sub = parse_submission(request.headers.get("content-type", ""), await request.body())
            quota.charge(who.org, len(sub.raws), node.ledger.height)
            admit(sub.raws)
        except (EncodingError, RequestValidationError):
            junk.allow(who.org)  # counted against the sender; refused as before
            raise
        raws = sub.raws
        cbor = accepts_cbor(request.headers.get("accept", ""))
        if node.forward is not None:
            batch = await run_in_threadpool(node.submit_batch, raws)
        else:
            batch = node.submit_batch(raws)
        if not sub.wait:
            ids = [hashlib.sha256(r).digest() for r in raws]
            if cbor:
                return Response(encode({"tx_ids": ids, "receipts": []}), 202, media_type=CBOR)
            queued = Queued(tx_ids=[i.hex() for i in ids], receipts=[])
            return JSONResponse(queued.model_dump(), 202)
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
        # Built as plain data, not validated models: this is the submit path's
        # hot loop (thousands of receipts per answer) and every field is typed here.
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

    @app.get(
        "/v1/txs/{tx_id}", tags=["transactions"], response_model=TxInfo, responses=SIGNED_ERRORS
    )
    def tx(tx_id: str, who: Auth) -> dict[str, Any]:
        """Where a transaction was committed and its validation code."""
        info = node.tx_info(_hex32(tx_id))
        if info is None:
            raise NotFoundError(f"transaction {tx_id} is not committed on this node")
        return info

    @app.get(
        "/v1/txs/{tx_id}/proof",
        tags=["transactions"],
        response_model=TxProof,
        responses=SIGNED_ERRORS,
    )
    def proof(tx_id: str, who: Auth) -> dict[str, Any]:
        """RFC 9162 inclusion proof of a transaction in its block, with the block header."""
        return prove_tx(node.store, _hex32(tx_id)).to_json()

    # -- blocks --------------------------------------------------------------------

    @app.get("/v1/blocks", tags=["blocks"], response_model=BlockList, responses=SIGNED_ERRORS)
    def blocks(
        who: Auth,
        start: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """Block headers from `start` on: `limit` of them, fewer where the blocks are large
        (past 32 MiB of blocks read); ask again from the height after the last."""
        out: list[dict[str, Any]] = []
        size = 0
        with reading_blocks(who.org):
            for _, data in node.store.iter_blocks(start):
                if len(out) >= limit or (out and size + len(data) > BLOCKS_ANSWER_BYTES):
                    break
                out.append(_header_json(data))
                size += len(data)
        return {"height": node.ledger.height, "blocks": out}

    @app.get(
        "/v1/blocks/{height}", tags=["blocks"], response_model=BlockDetail, responses=SIGNED_ERRORS
    )
    def block(height: Annotated[int, Path(ge=0, le=2**62)], who: Auth) -> dict[str, Any]:
        """One block: header, orderer signature, transaction ids and results."""
        with reading_blocks(who.org):
            data = node.store.block_bytes(height)
            if data is None:
                raise NotFoundError(f"no block {height} on this node (height {node.ledger.height})")
            return _block_json(data)

    @app.get(
        "/v1/sync/blocks",
        tags=["blocks"],
        response_class=Response,
        responses={
            200: {
                "description": "a CBOR array of block encodings (byte strings), oldest first",
                "content": {CBOR: {"schema": {"type": "string", "format": "binary"}}},
            },
            **SIGNED_ERRORS,
        },
    )
    def sync_blocks(
        who: Auth,
        start: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=256)] = 64,
        wait: Annotated[float, Query(ge=0.0, le=10.0)] = 0.0,
    ) -> Response:
        """Raw blocks from `start` (a CBOR array of block encodings), long-polled up to `wait` s."""
        base = node.snapshot_base
        if base is not None and start < base:
            raise NotFoundError(
                f"this node started from a snapshot at height {base} and holds only block "
                f"headers below it; fetch blocks {start}..{base - 1} from another peer"
            )
        if wait > 0 and node.ledger.height < start and long_polls.take(who.org):
            try:  # a caller holding its share of long-polls is answered at once
                node.wait_height(start, wait)
            finally:
                long_polls.give_back(who.org)
        out: list[bytes] = []
        size = 0
        with reading_blocks(who.org):  # after the wait: a long-poll holds no blocks
            for _, data in node.store.iter_blocks(start):
                if len(out) >= limit or (out and size + len(data) > BLOCKS_ANSWER_BYTES):
                    break
                out.append(data)
                size += len(data)
            return Response(encode(out), media_type="application/cbor")

    # -- attestations ------------------------------------------------------------------

    @app.get(
        "/v1/attestations",
        tags=["attestations"],
        response_model=AttestationList,
        responses=SIGNED_ERRORS,
    )
    def attestations(who: Auth, since: Annotated[int, Query(ge=0, le=2**62)] = 0) -> dict[str, Any]:
        """This node's recent signed attestations (height, block hash, state root)."""
        return {"org": node.org, "attestations": [a.to_json() for a in node.book.own(since)]}

    @app.get(
        "/v1/attestations/status",
        tags=["attestations"],
        response_model=AttestationStatus,
        responses=SIGNED_ERRORS,
    )
    def attestation_status(who: Auth) -> dict[str, Any]:
        """Which peers agree with this node's chain (and each one's latest attestation)."""
        body = node.attestation_status()
        latest = {p.org: p.latest for p in node.book.peers()}
        for peer in body["peers"]:
            att = latest.get(peer["org"])
            peer["latest"] = None if att is None else att.to_json()
        return body

    state_routes.register(app, node)  # the data-sharing state
    policy_routes.register(app, node)  # the consortium's default policy
    app.include_router(delivery.router)  # blobs between nodes
    app.include_router(custody_routes.router)  # keys between nodes
    app.include_router(mailbox_routes.router)  # computation messages between parties
    checkpoint_routes.register(app, node, limits)  # quorum checkpoints, cosigned with the peers
    snapshots.register(app, node)  # state snapshots, each vouched for by this node
    joining.register(app, node)  # what a newly admitted member's node needs to join
    # Shreds on commit and fetches missing blobs; stops with the node.
    app.state.upkeep = upkeep.start(node)
    for extend in extensions:
        extend(app, node)
    return app


def _hex32(text: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != 32:
        raise EncodingError(f"{text[:80]!r} is not a 64-digit hex id")
    return value


def _header_json(data: bytes) -> dict[str, Any]:
    """A stored block's header, signature and transaction count, as `/v1/blocks` lists it."""
    return _header_fields(*block_summary(data))


def _header_fields(h: BlockHeader, signature: bytes, count: int) -> dict[str, Any]:
    return {
        "height": h.height,
        "hash": h.hash().hex(),
        "prev_hash": h.prev_hash.hex(),
        "tx_root": h.tx_root.hex(),
        "results_root": h.results_root.hex(),
        "state_delta_hash": h.state_delta_hash.hex(),
        "timestamp": h.timestamp,
        "orderer": h.orderer,
        "signature": signature.hex(),
        "tx_count": count,
    }


def _block_json(data: bytes) -> dict[str, Any]:
    """A stored block: its header as listed, and each transaction's id and result."""
    block = decode_block(data, check_canonical=False)
    return _header_fields(block.header, block.signature, len(block.txs)) | {
        "txs": [
            {"tx_id": t.hex(), "code": r.code, "reason": r.reason}
            for t, r in zip(block.tx_ids, block.results, strict=True)
        ]
    }
