"""The checkpoint routes of a node: quorum checkpoints, cosigning, consistency proofs.

- `GET /v1/checkpoint`: the latest quorum checkpoint (signed-note text and its
  fields), with the founders' signed genesis note that seals exports;
- `POST /v1/checkpoint`: make one now, over the node's head (on demand);
- `POST /v1/checkpoint/cosign`: a peer asks this node to cosign a checkpoint
  text; refused (409) unless it is this node's history at that size;
- `GET /v1/checkpoint/consistency?old=N&new=M`: the RFC 9162 consistency proof
  between two sizes of the history tree.

All are signed like every `/v1` route. `register` also starts the node's
cosigning loop (`sharechain.api.cosigning`), which stops with the node.

The first three may hold a worker thread for seconds: cosigning waits up to
2 s for blocks the node has not committed yet, and a gathering asks every
peer (those arriving meanwhile wait for it). Each organisation has at most
`Limits.checkpoint_waits_per_caller` of them under way at once, 429 beyond:
one member asking from dozens of threads held every worker thread of the
node, and every other member's requests waited (threat 51).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from sharechain.api.checkpoints import (
    CheckpointReply,
    ConsistencyReply,
    CosignReply,
    CosignRequest,
)
from sharechain.api.cosigning import DEFAULT_EVERY_BLOCKS, DEFAULT_EVERY_SECONDS, Cosigner
from sharechain.api.peer_client import PeerClient
from sharechain.api.problems import ErrorBody, error_responses
from sharechain.api.quotas import Limits, WaitSlots
from sharechain.api.serving import Auth, ServingNode
from sharechain.crypto.signed_note import parse_note
from sharechain.errors import EncodingError, NotFoundError
from sharechain.ledger.checkpoints import (
    CheckpointError,
    parse_checkpoint,
    store_roster,
)

__all__ = ["register"]

_DOC: dict[str, Any] = {
    "tags": ["checkpoints"],
    "responses": error_responses(
        400,
        401,
        403,
        404,
        409,
        413,
        422,
        429,
        503,
        s409="the checkpoint is not this node's history (or fewer than a quorum cosigned)",
    ),
}
_Size = Annotated[int, Query(ge=1, le=2**62)]


def _reply(note: str, genesis: str, quorum: int) -> dict[str, Any]:
    parsed = parse_note(note)
    cp = parse_checkpoint(parsed.text)
    return {
        "note": note,
        "origin": cp.origin,
        "size": cp.size,
        "root": cp.root.hex(),
        "signers": [s.name for s in parsed.signatures],
        "genesis": genesis,
        "quorum": quorum,
    }


def _refused(exc: CheckpointError) -> JSONResponse:
    body = ErrorBody(error="refused", detail=str(exc))
    return JSONResponse(body.model_dump(), status_code=409)


def start(node: ServingNode) -> Cosigner:
    """The node's cosigner, its loop started (it stops with the node)."""
    settings = node.datadir.settings
    peers = [(org, PeerClient(node, url, timeout=10.0)) for org, url in node.config.peers]
    for _, peer in peers:
        node.on_close(peer.close)
    cosigner = Cosigner(
        node,
        peers,
        every_blocks=int(settings.get("checkpoint_blocks", DEFAULT_EVERY_BLOCKS)),
        every_seconds=float(settings.get("checkpoint_seconds", DEFAULT_EVERY_SECONDS)),
    )
    if node.problem is None:
        node.spawn("cosign", cosigner.run)
    return cosigner


def register(app: FastAPI, node: ServingNode, limits: Limits | None = None) -> None:
    """Add the checkpoint routes to `app` and start the node's cosigning loop."""
    cosigner = start(node)
    app.state.cosigner = cosigner
    waits = WaitSlots((limits or Limits()).checkpoint_waits_per_caller)

    async def waiting(org: str, work: Callable[[], str]) -> str:
        """`work` on a worker thread, as one of `org`'s checkpoint waits (429 past its share)."""
        what = (
            "checkpoint requests under way on this node already (each may wait seconds "
            "for blocks or for the peers); wait for them to end before asking again"
        )
        with waits.holding(org, what, retry_after=2):
            return await run_in_threadpool(work)

    def genesis() -> str:
        return node.datadir.genesis_note()

    @app.get("/v1/checkpoint", response_model=CheckpointReply, **_DOC)
    async def latest(who: Auth) -> Any:
        """The latest checkpoint a quorum of the members cosigned (made now if none yet)."""
        try:
            note = await waiting(who.org, cosigner.latest)
        except CheckpointError as exc:
            return _refused(exc)
        return _reply(note, genesis(), store_roster(node.store).quorum)

    @app.post("/v1/checkpoint", response_model=CheckpointReply, **_DOC)
    async def fresh(who: Auth) -> Any:
        """Make a quorum checkpoint of the node's head now, cosigned by its peers."""
        try:
            note = await waiting(who.org, cosigner.refresh)
        except CheckpointError as exc:
            return _refused(exc)
        return _reply(note, genesis(), store_roster(node.store).quorum)

    @app.post("/v1/checkpoint/cosign", response_model=CosignReply, **_DOC)
    async def cosign(body: CosignRequest, who: Auth) -> Any:
        """Cosign a checkpoint of this chain, if it is this node's history at its size."""
        try:
            text = body.checkpoint
            return {"note": await waiting(who.org, lambda: cosigner.cosign(text))}
        except CheckpointError as exc:
            return _refused(exc)

    @app.get("/v1/checkpoint/consistency", response_model=ConsistencyReply, **_DOC)
    async def consistency(who: Auth, old: _Size, new: _Size) -> dict[str, Any]:
        """The RFC 9162 consistency proof from the first `old` blocks to the first `new`."""
        if old > new:
            raise EncodingError(f"old ({old}) must not exceed new ({new})")
        if new > node.ledger.height + 1:
            raise NotFoundError(f"this node has {node.ledger.height + 1} blocks, not {new}")

        def prove() -> dict[str, Any]:
            old_root, new_root, proof = cosigner.consistency(old, new)
            return {
                "old_size": old,
                "new_size": new,
                "old_root": old_root.hex(),
                "new_root": new_root.hex(),
                "proof": [p.hex() for p in proof],
            }

        return await run_in_threadpool(prove)
