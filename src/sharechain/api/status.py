"""Bodies of a node's operational routes: liveness, readiness and status.

`GET /v1/status` tells an operator where the node stands (height, head,
peers, its latest attestations) and what its data-plane upkeep did and is
doing (datasets it shredded by itself, blobs it fetches from its peers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

from pydantic import BaseModel

from sharechain.api.records import Hex, Model, record_model
from sharechain.ledger.attestations import Attestation
from sharechain.ledger.refusals import Refusal

__all__ = [
    "CatchUpProgress",
    "DataPlane",
    "DiskAlarm",
    "EtcdAlarm",
    "FetchProgress",
    "FetchQueue",
    "Health",
    "NodeStatus",
    "PeerHealth",
    "Readiness",
    "ShredDone",
]

if TYPE_CHECKING:  # mypy sees a plain model (a call is not a type to it)
    AttestationModel: TypeAlias = BaseModel
    RefusalModel: TypeAlias = BaseModel
else:
    AttestationModel = record_model(Attestation)
    RefusalModel = record_model(Refusal)


class Health(Model):
    """Liveness: the process answers."""

    status: str
    """`ok`, or `alarm` while `alarms` is not empty (the process answers either way)."""
    org: str
    """The organisation this node serves."""
    alarms: tuple[str, ...] = ()
    """Alarms the node needs an operator for, e.g. etcd's NOSPACE (its space quota reached)."""


class Readiness(Model):
    """Whether the node serves and commits (200), or why not (503)."""

    org: str
    """The organisation this node serves."""
    genesis_hash: Hex
    """The consortium it is of (its genesis block's hash): a launcher or load balancer
    checks it to know that the node answering on a port is the one it started."""
    ready: bool
    caught_up: bool
    """True once the node has fetched the blocks it missed while down."""
    height: int
    """Height of the last committed block (-1 while quarantined)."""
    problem: str | None
    """Why the node refuses to serve (a tampered store, a conflicting peer), if it does."""
    halted: str | None
    """Why the node stopped committing, if it did."""


class PeerHealth(Model):
    """One peer as this node last saw it."""

    height: int | None
    error: str | None
    """The last error talking to it, if the last attempt failed."""


class ShredDone(Model):
    """One dataset this node shredded by itself."""

    dataset: str
    height: int
    """The block (or, after a restart, the chain height) at which it was shredded."""
    destroyed: int
    """Vault entries destroyed."""
    blobs_deleted: int
    at: float
    """Wall-clock time (seconds since the Unix epoch)."""
    recovered: bool
    """True when finished on start (the process had stopped before shredding)."""


class FetchProgress(Model):
    """Where one background blob fetch stands."""

    digest: Hex
    dataset: str
    epoch: int
    state: str
    """`queued`, `fetching`, `waiting` (for a retry), `over_quota` (waiting for room in
    the owner's replica quota), `failed` or `done`."""
    attempts: int
    received: int
    """Bytes downloaded by the current or last attempt."""
    source: str
    """The peers asked, or the one that served it."""
    error: str
    retry_in: float | None
    """Seconds to the next attempt (while waiting)."""


class FetchQueue(Model):
    """The node's queue of blobs to fetch from its peers."""

    queued: int
    fetching: int
    waiting: int
    """Waiting for a retry, or (`over_quota` of them) for room in an owner's quota."""
    over_quota: int
    failed: int
    done: int
    jobs: list[FetchProgress]
    recent: list[FetchProgress]


class DataPlane(Model):
    """What the node's data-plane upkeep did and is doing."""

    followed_height: int
    """Height up to which commits have been looked at."""
    shredded: list[ShredDone]
    blob_fetch: FetchQueue


class DiskAlarm(Model):
    """The full-disk guard of the node's data directory (`sharechain.storage.diskspace`)."""

    full: bool
    """True while the node refuses work (503 `disk_full`) for lack of space."""
    reason: str | None
    """Why, while it is full."""
    free_bytes: int | None
    """Bytes free on the data directory's file system now (None: unreadable)."""
    reserve_bytes: int
    """The threshold: below this many free bytes the disk counts as full."""
    path: str
    """The data directory watched."""


class CatchUpProgress(Model):
    """How far a node catching up has come (`sharechain.node.catching_up`)."""

    source: str
    """Where the blocks come from: a peer's organisation, or the ordering log."""
    start: int
    """Its height when it began."""
    height: int
    """Its height now."""
    target: int
    """The height it catches up to (raised as the source grows)."""
    done: float
    """The share of the blocks from `start` to `target` committed, 0 to 1."""
    blocks_per_s: float
    tx_per_s: float
    seconds: float
    """Since it began."""
    eta_seconds: float | None
    """Seconds left at the rate so far (None before the first block)."""


class EtcdAlarm(Model):
    """etcd's alarms as this node last read them (etcd ordering only)."""

    nospace: bool
    """True while etcd's space quota is reached (NOSPACE): it refuses every write."""
    alarms: tuple[str, ...]
    """Every alarm raised, described with what to do."""


class NodeStatus(Model):
    """Height, head, peers, latest attestations and the data plane's upkeep."""

    org: str
    ordering: str
    """`solo` or `etcd`."""
    role: str
    """`orderer` or `peer`."""
    leader: str | None
    height: int
    head_hash: Hex
    state_root: Hex
    ready: bool
    caught_up: bool
    catch_up: CatchUpProgress | None = None
    """While the node commits blocks it missed: where it is, how fast, how long left."""
    problem: str | None
    halted: str | None
    alarms: tuple[str, ...] = ()
    """etcd's alarms, described (NOSPACE: its quota is reached and it refuses writes)."""
    disk: DiskAlarm | None = None
    """The full-disk guard: state, free bytes, threshold."""
    etcd: EtcdAlarm | None = None
    """etcd's quota alarm (None in solo ordering)."""
    queued: int
    """Transactions waiting to be ordered."""
    peers: dict[str, PeerHealth]
    attestations: list[AttestationModel]
    """This node's latest attestations."""
    refusals: tuple[RefusalModel, ...] = ()
    """Members' blocks this node refused, signed (its latest 16): a peer judging such a
    block counts it as refused here (`ledger.refusals`)."""
    commits: list[tuple[int, float]]
    """(height, wall-clock time) of the latest commits."""
    data_plane: DataPlane | None
