"""Key custody between organisations' nodes (REST API).

Each organisation's node keeps its own vault (key material wrapped to its own
X25519 key). This router lets the owner deposit keys with the custodians the
chain names and lets the grantees collect them, with the chain as the gate:

- `PUT /v1/custody/{dataset}/{epoch}/{kind}`: the owner deposits this
  organisation's key (or share), already wrapped by the owner to this
  organisation's vault slot (`vault.wrap_for_vault`), so the secret is never
  in the clear outside its custodian's node. A slot is written once.
- `GET`/`DELETE /v1/custody/...`: the organisation itself reads its wrapped
  entry (its tools rotate keys with it); the owner destroys entries of epochs
  the chain has moved past or never recorded (a failed rotation takes its
  deposits back), or of a purged dataset.
- `POST /v1/grants/{grant}/key-session`: a fresh key-release session, issued
  by this node to the caller for the grant, single-use, expiring
  (`sharechain.sharing.key_sessions`); a release names one, so every release counts.
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

Who may deposit before a dataset is on the chain, and who may destroy which
entries, is `sharechain.sharing.deposits`.
"""

from __future__ import annotations

import time
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sharechain.api.data_plane import (
    CustodyBody,
    CustodyDestroyed,
    CustodyEntry,
    CustodyStored,
    KeyRelease,
    KeySession,
    PeerList,
    ReleaseBody,
    Shredded,
)
from sharechain.api.models import EpochReply
from sharechain.api.problems import SIGNED_ERRORS, NoKey, ReleaseRefused, error_responses
from sharechain.api.serving import Auth, HexId, NodeDep, ServingNode
from sharechain.api.wire import jsonable
from sharechain.contracts import queries
from sharechain.contracts.epochs import check_deposit
from sharechain.contracts.grants import KEY_RELEASE
from sharechain.contracts.keys import dataset_key
from sharechain.errors import AccessDeniedError, NotFoundError, OrderingError
from sharechain.ledger.state import StateReader
from sharechain.ledger.transactions import sign_transaction
from sharechain.sharing.custody import encryption_key, key_epoch, release_payload, wrap_release
from sharechain.sharing.delivery import blobs_of, lazy_shred, vault_of
from sharechain.sharing.deposits import PendingDeposits, may_destroy
from sharechain.sharing.key_sessions import KeySessions
from sharechain.sharing.shredding import shred_here
from sharechain.storage.vault import KINDS

__all__ = ["RELEASE_TIMEOUT", "router"]

RELEASE_TIMEOUT: Final = 30.0
"""Seconds a key release waits for its transaction to commit."""
SESSION_CATCH_UP: Final = 5.0
"""Seconds a release waits for this chain to show another custodian's release in its session."""

router = APIRouter(tags=["data plane"], responses=SIGNED_ERRORS)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise NotFoundError(f"vault entries are {' or '.join(KINDS)}, not {kind!r}")


@router.put("/v1/custody/{dataset}/{epoch}/{kind}", response_model=CustodyStored)
def put_custody(
    dataset: HexId,
    epoch: int,
    kind: str,
    body: CustodyBody,
    who: Auth,
    node: NodeDep,
    request: Request,
) -> dict[str, Any]:
    """Keep this organisation's key or share of a dataset's epoch, wrapped by the owner."""
    _check_kind(kind)
    if lazy_shred(node, dataset):
        raise AccessDeniedError(f"dataset {dataset} is purged; this node keeps no keys of it")
    reader = StateReader(node.store)
    check_deposit(reader, dataset, epoch, who.org, node.org)
    pending: PendingDeposits | None = None
    if reader.get(dataset_key(dataset)) is None:  # before registration: bounded per member
        pending = request.app.state.pending_deposits
        pending.admit(who.org, dataset, lambda d: reader.get(dataset_key(d)) is not None)
    vault = vault_of(node)
    if vault.has(dataset, epoch, kind):
        raise AccessDeniedError(
            f"{node.org} already holds a {kind} of dataset {dataset} at epoch {epoch}; "
            "vault slots are written once"
        )
    vault.put_wrapped(dataset, epoch, kind, bytes.fromhex(body.wrapped))
    if pending is not None:
        pending.add(who.org, dataset)
    return {"org": node.org, "dataset": dataset, "epoch": epoch, "kind": kind, "stored": True}


@router.get("/v1/custody/{dataset}/{epoch}/{kind}", response_model=CustodyEntry)
def get_custody(dataset: HexId, epoch: int, kind: str, who: Auth, node: NodeDep) -> dict[str, Any]:
    """This organisation's own vault entry, still wrapped to its key (for its own tools)."""
    _check_kind(kind)
    if who.org != node.org:
        raise AccessDeniedError(f"only {node.org} reads its own vault")
    lazy_shred(node, dataset)
    return {"wrapped": vault_of(node).get_wrapped(dataset, epoch, kind).hex()}


@router.delete("/v1/custody/{dataset}", response_model=CustodyDestroyed)
def delete_custody(
    dataset: HexId, who: Auth, node: NodeDep, request: Request, epoch: int | None = None
) -> dict[str, Any]:
    """Destroy this node's entries of a dataset: an epoch never committed or moved past, or all.

    Allowed to this organisation; to the dataset's owner for an epoch the chain
    moved past, for an epoch the chain does not record (a rotation or
    publication that failed before its epoch committed takes its deposits back),
    or for a purged dataset (crypto-shredding); and, for a dataset not on the
    chain yet, to the member that deposited its keys here.
    """
    lazy_shred(node, dataset)
    pending: PendingDeposits = request.app.state.pending_deposits
    if who.org != node.org:
        may_destroy(StateReader(node.store), dataset, epoch, who.org, pending)
    destroyed = vault_of(node).destroy(dataset, epoch)
    pending.drop(who.org, dataset)
    return {"org": node.org, "destroyed": destroyed}


@router.get("/v1/datasets/{dataset}/epoch", response_model=EpochReply)
def get_epoch(dataset: HexId, who: Auth, node: NodeDep) -> dict[str, Any]:
    """The dataset's current key epoch: digests, custody, holders, threshold."""
    ds = queries.resolve(node.store, "dataset", dataset)
    lazy_shred(node, ds)
    return {"epoch": jsonable(key_epoch(node.store, ds))}


@router.post("/v1/datasets/{dataset}/shred", response_model=Shredded)
def shred(dataset: HexId, who: Auth, node: NodeDep, request: Request) -> dict[str, Any]:
    """Destroy this node's keys, shares and blobs of a dataset the chain records as purged.

    Any member may ask (the dataset's owner does, after its purge committed): the node
    deletes nothing unless the purge is on its own chain (403 otherwise), and a repeated
    call destroys nothing more.
    """
    ds = queries.resolve(node.store, "dataset", dataset)
    counts = request.app.state.upkeep.shred_counts
    done = shred_here(node.store, (vault_of(node),), blobs_of(node), ds, counts)
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


@router.post("/v1/grants/{grant}/key-session", response_model=KeySession)
def key_session(grant: HexId, who: Auth, node: NodeDep, request: Request) -> dict[str, Any]:
    """A key-release session for the caller under `grant`: random, single-use, expiring.

    `POST /v1/grants/{grant}/key-release` names it; a threshold fetch names the
    session of its first release at the other custodians too (one use on the chain).
    """
    # Issued to any member: a release by another than the grantee is then refused by
    # the chain, and its refusal recorded there (`wrong_grantee`), as before.
    view = queries.grant(node.store, grant)
    sessions: KeySessions = request.app.state.key_sessions
    issued = sessions.issue(view.grant.id, who.org)
    return {"grant": view.grant.id, "session": issued.session, "expires": int(issued.expires)}


def _released_in(node: ServingNode, grant: str, session: str) -> float | None:
    """When this node's chain recorded the first release of `grant` in `session` (any custodian).

    Block time in Unix seconds, None when it records none. The further shares of a
    threshold fetch come right after the first release committed on the first
    custodian's node: wait briefly for this chain to catch up.
    """
    deadline = time.monotonic() + SESSION_CATCH_UP
    while True:
        found = StateReader(node.store).get(f"keyrel/{grant}/{session}")
        if found is not None:
            meta = node.store.block_meta(int(found["height"]))
            return None if meta is None else meta.timestamp / 1000
        left = deadline - time.monotonic()
        if left <= 0 or not node.wait_height(node.ledger.height + 1, left):
            return None


@router.post(
    "/v1/grants/{grant}/key-release",
    response_model=KeyRelease,
    responses=error_responses(403, 409, s403=ReleaseRefused, s409=NoKey),
)
def key_release(
    grant: HexId, body: ReleaseBody, who: Auth, node: NodeDep, request: Request
) -> dict[str, Any] | JSONResponse:
    """Release this custodian's key (or share) of the grant's dataset to the requester.

    The session must be one this node issued to the caller for this grant, or one
    the chain already records a release of this grant in (another custodian's
    share of the same fetch); either way this node releases under it once (403
    otherwise). The wrap is made for the requester; the chain decides
    (`grant.key-release`) and the wrap is returned only if it accepted, so only the
    grantee ever receives one.
    """
    view = queries.grant(node.store, grant)
    sessions: KeySessions = request.app.state.key_sessions
    grant = view.grant.id
    # Only a session this node did not issue is looked up on the chain (which may wait).
    issued = sessions.holds(body.session)
    released_at = None if issued else _released_in(node, grant, body.session)
    sessions.consume(body.session, grant, who.org, released_at=released_at)
    lazy_shred(node, view.grant.dataset)  # a purged dataset's key is gone before we look
    epoch = key_epoch(node.store, view.grant.dataset)
    recipient = encryption_key(queries.organisations(node.store), who.org)
    wrapped = wrap_release(vault_of(node), recipient, epoch, grant=grant, session=body.session)
    payload = release_payload(grant, who.org, epoch, wrapped, body.session)
    stx = sign_transaction(node.keys.signing, KEY_RELEASE, node.org, payload, now=node.now)
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
