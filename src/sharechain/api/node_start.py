"""The bodies a starting node asks its peers for: the join document and snapshot listings.

`GET /v1/join` (`sharechain.node.joining`) answers a newly admitted
organisation's node with what it needs to start: the consortium's
configuration, its genesis block and signed genesis note, the ordering
settings and the peers. `GET /v1/snapshots` (`sharechain.node.snapshots`)
lists the state snapshots a node holds, each with the node's signed voucher,
so a starting node can gather a quorum of vouchers before it trusts one.
Hashes and signatures are lowercase hex.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from sharechain.api.records import Hex, Model

__all__ = ["JoinDocument", "SnapshotEntry", "SnapshotList", "VoucherBody"]


class VoucherBody(Model):
    """A member's signed statement that its snapshot at a height has a content hash."""

    org: str = Field(description="The vouching organisation.")
    height: int = Field(ge=0, description="The snapshot's height.")
    block_hash: Hex = Field(description="The hash of block `height`.")
    state_root: Hex = Field(description="The running state root after it.")
    content_hash: Hex = Field(description="SHA-256 over the snapshot's frames after its manifest.")
    signature: Hex = Field(description="Ed25519 signature of `org` over the statement.")


class SnapshotEntry(Model):
    """One snapshot a node holds: its manifest, its size and the node's voucher."""

    genesis_hash: Hex = Field(description="The consortium it is of.")
    height: int = Field(ge=0, description="The height of its state.")
    block_hash: Hex
    state_root: Hex
    content_hash: Hex
    rows: dict[str, int] = Field(description="Rows carried, by table.")
    size: int = Field(ge=0, description="The file's size in bytes.")
    voucher: VoucherBody


class SnapshotList(Model):
    """The snapshots a node holds, newest first."""

    org: str = Field(description="The node's organisation.")
    every: int = Field(ge=0, description="Blocks between its snapshots (0: it makes none).")
    snapshots: list[SnapshotEntry]


class JoinDocument(Model):
    """What a newly admitted member's node needs to join: configuration, genesis, ordering."""

    org: str = Field(description="The organisation of the node that answered.")
    consortium: dict[str, Any] = Field(
        description="The consortium's configuration (`consortium.json`), genesis hash included."
    )
    genesis: Hex = Field(description="The genesis block (canonical CBOR).")
    genesis_note: str = Field(description="The founders' signed note over the genesis hash.")
    ordering: str = Field(description="`solo` or `etcd`.")
    orderer_url: str | None = Field(description="solo: the ordering node's URL.")
    etcd_endpoints: list[str] = Field(description="etcd: the members' client URLs.")
    etcd_prefix: str = Field(description="etcd: the chain's key prefix.")
    # Pairs as two-item lists, not tuples: a tuple's schema (`prefixItems`) is
    # read by some OpenAPI tools as 3.0's `items` array, which they reject.
    peers: list[Annotated[list[str], Field(min_length=2, max_length=2)]] = Field(
        description="[organisation, URL] of the answering node's peers, the asker left out."
    )
