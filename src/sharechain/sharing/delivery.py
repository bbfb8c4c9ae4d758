"""Blob delivery between organisations' nodes (REST API).

On a network each organisation's node keeps its own blob store (sealed
payloads, named by their SHA-256). This router lets the nodes serve those
blobs to each other's organisations, with the chain as the gate for every
decision (key custody, the other half of the data plane, is in
`sharechain.sharing.custody_routes`):

- `GET`/`HEAD /v1/blobs/{digest}` streams a sealed payload, with single
  `Range: bytes=a-b` requests (206 and `Content-Range`; 416 when the range is
  outside the blob) so a download resumes from the byte it reached. The ETag
  is the digest. Any member may read the current blob of an active dataset
  (every node keeps a replica; the bytes are ciphertext and the chain gates
  the key); other blobs only the node's own organisation. The client checks
  the digest, not the node.
- `PUT /v1/blobs/{digest}?offset=&final=` receives a blob in chunks (each
  request is signed, so each is at most 32 MiB); a chunk at the wrong offset
  is answered 409 with the bytes received so far, so an upload resumes too.
  The chunks are written and hashed as they arrive (`sharechain.storage.uploads`)
  and a blob whose bytes do not match its name is discarded (422). Accepted
  from this node's own organisation, or from the owner of an active dataset
  whose current epoch names the blob (a replica: every node keeps one, so a
  grantee can fetch while the owner is offline).
- `PUT /v1/uploads/{id}?offset=&final=&digest=`: the same, for the owner's
  tools that upload while sealing; the final chunk names the digest.
- `DELETE /v1/blobs/{digest}`: the owner drops a blob no current epoch uses.

Any request about a blob of a purged dataset shreds lazily first
(`sharechain.sharing.shredding`), so a node that missed the purge still shreds.
Who may read, store or delete which blob is `sharechain.sharing.replicas`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from sharechain.api.chunk_replies import NO_DIGEST, chunk_reply
from sharechain.api.data_plane import (
    BlobDeleted,
    BlobStored,
    ChunkReceived,
)
from sharechain.api.problems import (
    SIGNED_ERRORS,
    OffsetConflict,
    RangeRefused,
    error_responses,
)
from sharechain.api.ranges import parse_range
from sharechain.api.refusals import MAX_CHUNK_BYTES
from sharechain.api.serving import Auth, Caller, NodeDep, ServingNode, UploadsDep
from sharechain.errors import AccessDeniedError, NotFoundError, TooLargeError
from sharechain.sharing.replica_quota import ReplicaQuota, check_push
from sharechain.sharing.replicas import may_delete, may_read, may_write
from sharechain.sharing.shredding import (
    purged_naming,
    shred_if_purged,
)
from sharechain.storage.blobs import BlobStore, parse_digest
from sharechain.storage.uploads import Outcome, part_path
from sharechain.storage.vault import Vault

__all__ = ["CHUNK", "MAX_UPLOAD_CHUNK", "blobs_of", "lazy_shred", "router", "vault_of"]

CHUNK: Final = 1 << 20
"""Bytes read from disk per step while streaming a blob."""
MAX_UPLOAD_CHUNK: Final = MAX_CHUNK_BYTES
"""Largest chunk one `PUT /v1/blobs` request may carry (requests are signed whole)."""
_Digest = Annotated[str, PathParam(min_length=64, max_length=64, pattern="^[0-9a-f]{64}$")]
_Upload = Annotated[str, PathParam(min_length=16, max_length=64, pattern="^[0-9a-f]+$")]

router = APIRouter(tags=["data plane"], responses=SIGNED_ERRORS)


_BLOB = {"schema": {"type": "string", "format": "binary"}}
_BLOB_HEADERS = {
    "ETag": {"description": "The digest, quoted", "schema": {"type": "string"}},
    "Content-Range": {
        "description": "With 206: `bytes first-last/size`",
        "schema": {"type": "string"},
    },
}
_BLOB_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The whole sealed payload",
        "content": {"application/octet-stream": _BLOB},
        "headers": _BLOB_HEADERS,
    },
    206: {
        "description": "The byte range asked for",
        "content": {"application/octet-stream": _BLOB},
        "headers": _BLOB_HEADERS,
    },
    **error_responses(416, s416=RangeRefused),
}
_UPLOAD_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "model": BlobStored | ChunkReceived,
        "description": "The chunk is accepted (`stored` once the blob is complete)",
    },
    **error_responses(
        409,
        413,
        422,
        503,
        s409=OffsetConflict,
        s413=f"a chunk over {MAX_UPLOAD_CHUNK} bytes",
        s422="the bytes do not hash to the digest (`digest_mismatch`: nothing was kept), "
        "or parameters that do not match the API",
        s503="writing the chunk failed; upload again from offset 0",
    ),
}
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def blobs_of(node: ServingNode) -> BlobStore:
    """The node's blob store."""
    return BlobStore(node.datadir.blob_dir)


def vault_of(node: ServingNode) -> Vault:
    """The node's vault."""
    return Vault(node.datadir.path, node.keys)


def lazy_shred(node: ServingNode, dataset: str) -> bool:
    """Shred what is left here of `dataset` if this chain says it is purged; is it purged?"""
    return shred_if_purged(node.store, vault_of(node), blobs_of(node), dataset)


def _lazy_shred_blob(node: ServingNode, digest: bytes) -> None:
    """The lazy path for a blob request: shred the purged datasets that named the blob."""
    for dataset in purged_naming(node.store, digest):
        lazy_shred(node, dataset)


def _stream(path: Path, start: int, end: int) -> Iterator[bytes]:
    with path.open("rb", buffering=0) as f:
        f.seek(start)
        left = end - start
        while left > 0:
            data = f.read(min(CHUNK, left))
            if not data:
                return
            left -= len(data)
            yield data


@router.get("/v1/blobs/{digest}", response_model=None, response_class=Response, responses=_BLOB_DOC)
def get_blob(digest: _Digest, request: Request, who: Auth, node: NodeDep) -> Response:
    """A sealed payload (whole, or one byte range), to those the chain allows."""
    return _serve_blob(digest, request, who, node)


@router.head(
    "/v1/blobs/{digest}", response_model=None, response_class=Response, responses=_BLOB_DOC
)
def head_blob(digest: _Digest, request: Request, who: Auth, node: NodeDep) -> Response:
    """The headers `GET` would send (size, ETag, Content-Range), without the bytes."""
    return _serve_blob(digest, request, who, node)


def _serve_blob(digest: str, request: Request, who: Caller, node: ServingNode) -> Response:
    raw = bytes.fromhex(parse_digest(digest))
    _lazy_shred_blob(node, raw)
    may_read(node.store, node.org, who.org, raw)
    path = blobs_of(node).path(raw)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise NotFoundError(f"blob {digest} is not stored on {node.org}'s node") from None
    headers = {"ETag": f'"{digest}"', "Accept-Ranges": "bytes"}
    try:
        span = parse_range(request.headers.get("range"), size)
    except ValueError as exc:
        refusal = RangeRefused(error="range_not_satisfiable", detail=str(exc), size=size)
        return JSONResponse(
            refusal.model_dump(),
            status_code=416,
            headers={**headers, "Content-Range": f"bytes */{size}"},
        )
    start, end = span or (0, size)
    headers["Content-Length"] = str(end - start)
    status = 200
    if span is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type="application/octet-stream")
    return StreamingResponse(
        _stream(path, start, end),
        status_code=status,
        headers=headers,
        media_type="application/octet-stream",
    )


@router.put(
    "/v1/blobs/{digest}", response_model=None, responses=_UPLOAD_DOC, openapi_extra=_UPLOAD_BODY
)
async def put_blob(
    digest: _Digest,
    request: Request,
    who: Auth,
    node: NodeDep,
    uploads: UploadsDep,
    offset: int = 0,
    final: bool = True,
) -> JSONResponse:
    """Receive a blob, or one chunk of it at `offset`; `final` marks the last chunk."""
    raw = bytes.fromhex(parse_digest(digest))
    _lazy_shred_blob(node, raw)
    may_write(node.store, node.org, who.org, raw)
    store = blobs_of(node)
    if store.has(raw):
        return JSONResponse(
            BlobStored(digest=digest, stored=True, size=store.size(raw)).model_dump()
        )
    uploads.admit(store, digest, who.org)
    # Read only now, signer and caller known: the guard stops it at MAX_UPLOAD_CHUNK
    # and checks it against the signed Content-Digest as it arrives.
    body = await request.body()
    if who.org != node.org:  # a replica its owner pushes: bounded, and within its quota
        quota = ReplicaQuota.of(node.store, node.datadir, node.org)
        try:
            await run_in_threadpool(
                check_push, quota, who.org, raw, offset, body, part_path(store, raw)
            )
        except TooLargeError:
            uploads.abandon(store, raw.hex())  # refused for good: its part and session go
            raise
    return _reply(await uploads.receive_chunk(store, raw, offset, body, final))


@router.put(
    "/v1/uploads/{upload}",
    response_model=None,
    responses={**_UPLOAD_DOC, **error_responses(400, s400="the final chunk names no digest")},
    openapi_extra=_UPLOAD_BODY,
)
async def put_streamed(
    upload: _Upload,
    request: Request,
    who: Auth,
    node: NodeDep,
    uploads: UploadsDep,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    final: bool = False,
    digest: Annotated[str | None, Query(min_length=64, max_length=64)] = None,
) -> JSONResponse:
    """Receive a blob while its owner's tools still seal it; the final chunk names its digest.

    Only from this node's own organisation (replicas name their digest up front).
    """
    if who.org != node.org:
        raise AccessDeniedError(
            f"only {node.org} streams uploads to its own node; {who.org} sends a replica "
            "with PUT /v1/blobs/{digest}"
        )
    raw = None if digest is None else bytes.fromhex(parse_digest(digest))
    store = blobs_of(node)
    uploads.admit(store, f"id-{upload}", who.org)
    body = await request.body()  # checked by the guard as it streams (size, digest)
    if final and raw is None:
        return JSONResponse(NO_DIGEST.model_dump(), status_code=400)
    return _reply(await uploads.receive_streamed(store, upload, raw, offset, body, final))


def _reply(outcome: Outcome) -> JSONResponse:
    status, body = chunk_reply(outcome)
    return JSONResponse(body.model_dump(), status_code=status)


@router.delete("/v1/blobs/{digest}", response_model=BlobDeleted)
def delete_blob(digest: _Digest, who: Auth, node: NodeDep) -> dict[str, Any]:
    """Delete a blob no current key epoch uses (after a rotation or a purge)."""
    raw = bytes.fromhex(parse_digest(digest))
    may_delete(node.store, node.org, who.org, raw)
    return {"digest": digest, "deleted": blobs_of(node).delete(raw)}
