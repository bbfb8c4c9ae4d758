"""Blob delivery and key custody between organisations' nodes (REST API).

On a network each organisation's node keeps its own blob store (sealed
payloads, named by their SHA-256) and its own vault (key material wrapped to
its own X25519 key). This router lets the nodes serve the data plane to each
other's organisations, with the chain as the gate for every decision:

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
  The chunks are written and hashed as they arrive (`sharechain.node.uploads`)
  and a blob whose bytes do not match its name is discarded (422). Accepted
  from this node's own organisation, or from the owner of an active dataset
  whose current epoch names the blob (a replica: every node keeps one, so a
  grantee can fetch while the owner is offline).
- `DELETE /v1/blobs/{digest}`: the owner drops a blob no current epoch uses.
- `PUT /v1/custody/{dataset}/{epoch}/{kind}`: the owner deposits this
  organisation's key (or share), already wrapped by the owner to this
  organisation's vault slot (`vault.wrap_for_vault`), so the secret is never
  in the clear outside its custodian's node. A slot is written once.
- `GET`/`DELETE /v1/custody/...`: the organisation itself reads its wrapped
  entry (its tools rotate keys with it); the owner destroys entries of epochs
  the chain has moved past (or of a purged dataset).
- `POST /v1/grants/{grant}/key-release`: this node, as a custodian, checks
  the grant on its own copy of the chain, wraps its key or share to the
  requester, submits `grant.key-release` (so the outcome is on the chain
  either way) and returns the wrap only when the chain accepted it, that is
  only to the grantee. A refusal is 403 with the chain's `code` and reason.
- `GET /v1/datasets/{dataset}/epoch`: the dataset's current key epoch.
- `POST /v1/datasets/{dataset}/shred`: once the purge of the dataset is on
  this node's chain, destroy its vault entries and blobs here
  (`sharechain.sharing.shredding`); any later request about a purged dataset
  (its epoch, custody, blobs, a key release) shreds lazily first, so a node
  that missed the call still shreds.
- `GET /v1/peers`: this node's organisation and its peers' URLs, so an
  organisation's tools given one node can reach the custodians' nodes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response, StreamingResponse

from sharechain.api.data_plane import (
    BlobDeleted,
    BlobStored,
    ChunkReceived,
    CustodyBody,
    CustodyDestroyed,
    CustodyEntry,
    CustodyStored,
    KeyRelease,
    PeerList,
    ReleaseBody,
    Shredded,
)
from sharechain.api.models import EpochReply
from sharechain.api.problems import (
    SIGNED_ERRORS,
    ErrorBody,
    NoKey,
    OffsetConflict,
    RangeRefused,
    ReleaseRefused,
    error_responses,
)
from sharechain.api.wire import jsonable
from sharechain.contracts import queries
from sharechain.contracts.epochs import KeyEpoch, epoch_from_value
from sharechain.contracts.keys import dataset_key
from sharechain.errors import AccessDeniedError, NotFoundError, OrderingError
from sharechain.ledger.state import StateReader
from sharechain.ledger.transactions import sign_transaction
from sharechain.node.deps import Auth, Caller
from sharechain.node.service import Node
from sharechain.node.uploads import Uploads
from sharechain.sharing.custody import encryption_key, key_epoch, release_payload, wrap_release
from sharechain.sharing.shredding import (
    purged_naming,
    shred_here,
    shred_if_purged,
)
from sharechain.storage.blobs import BlobStore, parse_digest
from sharechain.storage.vault import KINDS, Vault

__all__ = ["CHUNK", "MAX_UPLOAD_CHUNK", "router"]

CHUNK: Final = 1 << 20
"""Bytes read from disk per step while streaming a blob."""
MAX_UPLOAD_CHUNK: Final = 32 << 20
"""Largest chunk one `PUT /v1/blobs` request may carry (requests are signed whole)."""
RELEASE_TIMEOUT: Final = 30.0
"""Seconds a key release waits for its transaction to commit."""
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_Digest = Annotated[str, PathParam(min_length=64, max_length=64, pattern="^[0-9a-f]{64}$")]
_Id = Annotated[str, PathParam(min_length=1, max_length=128, pattern="^[0-9a-f]+$")]
_Upload = Annotated[str, PathParam(min_length=16, max_length=64, pattern="^[0-9a-f]+$")]

router = APIRouter(tags=["data plane"], responses=SIGNED_ERRORS)


def _node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def _uploads(request: Request) -> Uploads:
    uploads: Uploads = request.app.state.uploads
    return uploads


NodeDep = Annotated[Node, Depends(_node)]
UploadsDep = Annotated[Uploads, Depends(_uploads)]

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


def _blobs(node: Node) -> BlobStore:
    return BlobStore(node.datadir.blob_dir)


def _vault(node: Node) -> Vault:
    return Vault(node.datadir.path, node.keys)


def _lazy_shred(node: Node, dataset: str) -> bool:
    """Shred what is left here of `dataset` if this chain says it is purged; is it purged?"""
    return shred_if_purged(node.store, _vault(node), _blobs(node), dataset)


def _lazy_shred_blob(node: Node, digest: bytes) -> None:
    """The lazy path for a blob request: shred the purged datasets that named the blob."""
    for dataset in purged_naming(node.store, digest):
        _lazy_shred(node, dataset)


def _current_epochs(node: Node) -> dict[str, KeyEpoch]:
    """Every dataset's current key epoch on this node's chain (dataset -> epoch)."""
    current: dict[str, KeyEpoch] = {}
    for _, value in StateReader(node.store).scan("epoch/"):
        e = epoch_from_value(value)  # keys sort by epoch: the last one seen is current
        current[e.dataset] = e
    return current


def _naming(node: Node, digest: bytes) -> list[KeyEpoch]:
    """Current epochs of active datasets whose sealed payload is the blob `digest`."""
    found = []
    for e in _current_epochs(node).values():
        named = e.ciphertext_digest == digest and not e.inline
        if named and queries.dataset(node.store, e.dataset).status == "active":
            found.append(e)
    return found


def _may_read(node: Node, who: Caller, digest: bytes) -> None:
    """Raise `AccessDeniedError` unless `who` may download the blob `digest`.

    Every node keeps a replica of the current blob of every active dataset
    (`sharechain.node.upkeep`), so every active organisation may read those; the
    bytes are ciphertext and the chain gates the key. Other blobs (old epochs,
    purged or retired datasets) only the node's own organisation reads.
    """
    if who.org == node.org or _naming(node, digest):
        return
    raise AccessDeniedError(
        f"{who.org} may not read blob {digest.hex()}: no current key epoch of an active "
        "dataset on this node's chain names it"
    )


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a single `bytes=` range, None for the whole blob.

    Raises `ValueError` when the range cannot be satisfied (answered 416).
    """
    if header is None:
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None:
        raise ValueError(f"only one `bytes=first-last` range is served, not {header[:80]!r}")
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        raise ValueError("empty range")
    if first == "":
        suffix = int(last)
        if suffix == 0:
            raise ValueError("a zero-length suffix range selects nothing")
        return max(0, size - suffix), size
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if start >= size or end <= start:
        raise ValueError(f"range {header} is outside the blob of {size} bytes")
    return start, end


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


def _serve_blob(digest: str, request: Request, who: Caller, node: Node) -> Response:
    raw = bytes.fromhex(parse_digest(digest))
    _lazy_shred_blob(node, raw)
    _may_read(node, who, raw)
    path = _blobs(node).path(raw)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise NotFoundError(f"blob {digest} is not stored on {node.org}'s node") from None
    headers = {"ETag": f'"{digest}"', "Accept-Ranges": "bytes"}
    try:
        span = _parse_range(request.headers.get("range"), size)
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


def _may_write(node: Node, who: Caller, digest: bytes) -> None:
    if who.org == node.org:
        return
    for e in _naming(node, digest):
        if who.org == e.by:
            return
    raise AccessDeniedError(
        f"{who.org} may not store blob {digest.hex()} on {node.org}'s node: a node takes "
        "blobs from its own organisation, and replicas from the owner of an active dataset "
        "whose current key epoch names the blob"
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
    _may_write(node, who, raw)
    body = await request.body()  # already read (and digest-checked) by the signature check
    if len(body) > MAX_UPLOAD_CHUNK:
        return _too_large()
    store = _blobs(node)
    if store.has(raw):
        return JSONResponse(
            BlobStored(digest=digest, stored=True, size=store.size(raw)).model_dump()
        )
    reply = await uploads.receive_chunk(store, raw, offset, body, final)
    return JSONResponse(reply.body.model_dump(), status_code=reply.status)


def _too_large() -> JSONResponse:
    refusal = ErrorBody(
        error="too_large", detail=f"send chunks of at most {MAX_UPLOAD_CHUNK} bytes"
    )
    return JSONResponse(refusal.model_dump(), status_code=413)


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
    body = await request.body()  # already read (and digest-checked) by the signature check
    if len(body) > MAX_UPLOAD_CHUNK:
        return _too_large()
    reply = await uploads.receive_streamed(_blobs(node), upload, raw, offset, body, final)
    return JSONResponse(reply.body.model_dump(), status_code=reply.status)


@router.delete("/v1/blobs/{digest}", response_model=BlobDeleted)
def delete_blob(digest: _Digest, who: Auth, node: NodeDep) -> dict[str, Any]:
    """Delete a blob no current key epoch uses (after a rotation or a purge)."""
    raw = bytes.fromhex(parse_digest(digest))
    if _naming(node, raw):
        raise AccessDeniedError(f"blob {digest} is the current payload of a dataset; rotate first")
    if who.org != node.org:
        owners = {
            v["by"]
            for _, v in StateReader(node.store).scan("epoch/")
            if v["ciphertext_digest"] == raw
        }
        if who.org not in owners:
            raise AccessDeniedError(f"only the owner of blob {digest}'s dataset may delete it")
    return {"digest": digest, "deleted": _blobs(node).delete(raw)}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise NotFoundError(f"vault entries are {' or '.join(KINDS)}, not {kind!r}")


@router.put("/v1/custody/{dataset}/{epoch}/{kind}", response_model=CustodyStored)
def put_custody(
    dataset: _Id, epoch: int, kind: str, body: CustodyBody, who: Auth, node: NodeDep
) -> dict[str, Any]:
    """Keep this organisation's key or share of a dataset's epoch, wrapped by the owner."""
    _check_kind(kind)
    if _lazy_shred(node, dataset):
        raise AccessDeniedError(f"dataset {dataset} is purged; this node keeps no keys of it")
    on_chain = StateReader(node.store).get(f"epoch/{dataset}/{epoch:012d}")
    if on_chain is not None:
        e = epoch_from_value(on_chain)
        if who.org != e.by or (node.org not in e.holders and node.org != e.by):
            raise AccessDeniedError(
                f"only the owner ({e.by}) deposits keys of dataset {dataset}, and only with "
                f"its custodians ({', '.join(e.holders)})"
            )
    vault = _vault(node)
    if vault.has(dataset, epoch, kind):
        raise AccessDeniedError(
            f"{node.org} already holds a {kind} of dataset {dataset} at epoch {epoch}; "
            "vault slots are written once"
        )
    vault.put_wrapped(dataset, epoch, kind, bytes.fromhex(body.wrapped))
    return {"org": node.org, "dataset": dataset, "epoch": epoch, "kind": kind, "stored": True}


@router.get("/v1/custody/{dataset}/{epoch}/{kind}", response_model=CustodyEntry)
def get_custody(dataset: _Id, epoch: int, kind: str, who: Auth, node: NodeDep) -> dict[str, Any]:
    """This organisation's own vault entry, still wrapped to its key (for its own tools)."""
    _check_kind(kind)
    if who.org != node.org:
        raise AccessDeniedError(f"only {node.org} reads its own vault")
    _lazy_shred(node, dataset)
    return {"wrapped": _vault(node).get_wrapped(dataset, epoch, kind).hex()}


@router.delete("/v1/custody/{dataset}", response_model=CustodyDestroyed)
def delete_custody(
    dataset: _Id, who: Auth, node: NodeDep, epoch: int | None = None
) -> dict[str, Any]:
    """Destroy this node's entries of a dataset: an epoch the chain moved past, or all.

    Allowed to this organisation, and to the dataset's owner for epochs before the
    current one or for a purged dataset (crypto-shredding).
    """
    _lazy_shred(node, dataset)
    if who.org != node.org:
        reader = StateReader(node.store)
        ds = reader.get(dataset_key(dataset))
        current = key_epoch(node.store, dataset) if ds is not None else None
        if ds is None or current is None or who.org != ds["owner"]:
            raise AccessDeniedError(f"only the owner of dataset {dataset} destroys its keys")
        if ds["status"] != "purged" and (epoch is None or epoch >= current.epoch):
            raise AccessDeniedError(
                f"epoch {epoch} of dataset {dataset} is still current; rotate or purge first"
            )
    return {"org": node.org, "destroyed": _vault(node).destroy(dataset, epoch)}


@router.get("/v1/datasets/{dataset}/epoch", response_model=EpochReply)
def get_epoch(dataset: _Id, who: Auth, node: NodeDep) -> dict[str, Any]:
    """The dataset's current key epoch: digests, custody, holders, threshold."""
    ds = queries.resolve(node.store, "dataset", dataset)
    _lazy_shred(node, ds)
    return {"epoch": jsonable(key_epoch(node.store, ds))}


@router.post("/v1/datasets/{dataset}/shred", response_model=Shredded)
def shred(dataset: _Id, who: Auth, node: NodeDep) -> dict[str, Any]:
    """Destroy this node's keys, shares and blobs of a dataset the chain records as purged.

    Any member may ask (the dataset's owner does, after its purge committed): the node
    deletes nothing unless the purge is on its own chain (403 otherwise), and a repeated
    call destroys nothing more.
    """
    ds = queries.resolve(node.store, "dataset", dataset)
    done = shred_here(node.store, (_vault(node),), _blobs(node), ds)
    return {
        "org": node.org,
        "dataset": ds,
        "purged": True,
        "destroyed": done.destroyed,
        "blobs_deleted": done.blobs_deleted,
        "height": node.ledger.height,
    }


@router.get("/v1/peers", response_model=PeerList)
def peers(who: Auth, node: NodeDep) -> dict[str, Any]:
    """This node's organisation and its peers' URLs (where their nodes serve this API)."""
    return {"org": node.org, "peers": dict(node.config.peers)}


@router.post(
    "/v1/grants/{grant}/key-release",
    response_model=KeyRelease,
    responses=error_responses(403, 409, s403=ReleaseRefused, s409=NoKey),
)
def key_release(
    grant: _Id, body: ReleaseBody, who: Auth, node: NodeDep
) -> dict[str, Any] | JSONResponse:
    """Release this custodian's key (or share) of the grant's dataset to the requester.

    The wrap is made for the requester; the chain decides (`grant.key-release`) and the
    wrap is returned only if it accepted, so only the grantee ever receives one.
    """
    view = queries.grant(node.store, grant)
    _lazy_shred(node, view.grant.dataset)  # a purged dataset's key is gone before we look
    epoch = key_epoch(node.store, view.grant.dataset)
    recipient = encryption_key(queries.organisations(node.store), who.org)
    wrapped = wrap_release(_vault(node), recipient, epoch, grant=grant, session=body.session)
    payload = release_payload(grant, who.org, epoch.epoch, wrapped, body.session)
    stx = sign_transaction(node.keys.signing, "grant.key-release", node.org, payload, now=node.now)
    (future,) = node.submit([stx.raw])
    try:
        receipt = future.result(timeout=RELEASE_TIMEOUT)
    except FutureTimeout:
        raise OrderingError(
            f"the key release was not committed within {RELEASE_TIMEOUT:.0f}s; ask again"
        ) from None
    tx_id, height, index = receipt.tx_id.hex(), receipt.height, receipt.index
    if not receipt.ok:
        refused = ReleaseRefused(
            error="forbidden",
            code=receipt.code,
            reason=receipt.reason,
            detail=(
                f"{node.org} did not release the key of grant {grant} to {who.org}: the "
                f"chain refused ({receipt.code}: {receipt.reason}); the refusal is recorded "
                f"in block {receipt.height}"
            ),
            tx_id=tx_id,
            height=height,
            index=index,
        )
        return JSONResponse(refused.model_dump(), status_code=403)
    if not wrapped:
        none = NoKey(
            error="no_key",
            code="no_key",
            detail=(
                f"{node.org} no longer holds the key of dataset {epoch.dataset} at epoch "
                f"{epoch.epoch} (destroyed by a purge); nothing was released"
            ),
            tx_id=tx_id,
            height=height,
            index=index,
        )
        return JSONResponse(none.model_dump(), status_code=409)
    return {
        "grant": grant,
        "dataset": epoch.dataset,
        "epoch": epoch.epoch,
        "custodian": node.org,
        "to": who.org,
        "session": body.session,
        "wrapped": wrapped.hex(),
        "tx_id": tx_id,
        "height": height,
        "index": index,
    }
