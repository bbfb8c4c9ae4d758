"""The request and response bodies of a node's REST API, as pydantic models.

The routes in `sharechain.node` declare these as their `response_model` (or,
where a route answers with a ready-made response, in `responses=`), so the
OpenAPI document at `/openapi.json` has a schema for every answer, and the
server checks each answer against its model before sending it. The JSON is
what `sharechain.api.wire.jsonable` writes: field names as in the records,
bytes as hex.

This module has the chain's bodies (transactions, blocks, attestations) and
the data-sharing state's (`sharechain.api.state_routes`). The others:
`sharechain.api.records` (each record's model, derived from its dataclass),
`sharechain.api.status` (health, readiness, status), `sharechain.api.data_plane`
(blobs, custody, key releases) and `sharechain.api.problems` (error bodies).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from sharechain.api.records import AuditEntry, Hex, Model, TxProof, record_model
from sharechain.contracts.access import AccessRequest
from sharechain.contracts.datasets import Dataset
from sharechain.contracts.epochs import KeyEpoch
from sharechain.contracts.membership import Proposal
from sharechain.contracts.notary import NotaryRecord
from sharechain.contracts.queries import GrantView, Lineage
from sharechain.contracts.risk import Alert
from sharechain.ledger.attestations import Attestation
from sharechain.ledger.identities import Organisation

__all__ = [
    "MAX_TXS_PER_REQUEST",
    "MAX_TX_BYTES",
    "AccessRequestModel",
    "AlertList",
    "AlertModel",
    "AttestationList",
    "AttestationModel",
    "AttestationStatus",
    "AuditTrail",
    "BlockDetail",
    "BlockList",
    "BlockSummary",
    "ChainInfo",
    "DatasetList",
    "DatasetModel",
    "DatasetReply",
    "EpochReply",
    "FullId",
    "GrantList",
    "GrantReply",
    "GrantViewModel",
    "KeyEpochModel",
    "LineageModel",
    "LineageReply",
    "NotaryRecordModel",
    "NotaryReply",
    "OrganisationList",
    "OrganisationModel",
    "ProposalList",
    "ProposalModel",
    "Queued",
    "Receipt",
    "ReceiptList",
    "RequestList",
    "RequestReply",
    "SubmitBody",
    "TxInfo",
    "TxProof",
]

MAX_TXS_PER_REQUEST = 20_000
MAX_TX_BYTES = 1_000_000

# The record models are built at import time from the dataclasses; mypy sees
# them as plain models (a call is not a type to it), pydantic sees the real ones.
if TYPE_CHECKING:
    AccessRequestModel: TypeAlias = BaseModel
    AlertModel: TypeAlias = BaseModel
    AttestationModel: TypeAlias = BaseModel
    DatasetModel: TypeAlias = BaseModel
    GrantViewModel: TypeAlias = BaseModel
    KeyEpochModel: TypeAlias = BaseModel
    LineageModel: TypeAlias = BaseModel
    NotaryRecordModel: TypeAlias = BaseModel
    OrganisationModel: TypeAlias = BaseModel
    ProposalModel: TypeAlias = BaseModel
else:
    AccessRequestModel = record_model(AccessRequest)
    AlertModel = record_model(Alert)
    AttestationModel = record_model(Attestation)
    DatasetModel = record_model(Dataset)
    GrantViewModel = record_model(GrantView)
    KeyEpochModel = record_model(KeyEpoch)
    LineageModel = record_model(Lineage)
    NotaryRecordModel = record_model(NotaryRecord)
    OrganisationModel = record_model(Organisation)
    ProposalModel = record_model(Proposal)

# -- transactions ------------------------------------------------------------


class SubmitBody(Model):
    """Signed transaction envelopes to order (hex), many per request."""

    model_config = ConfigDict(extra="ignore")  # as before: a newer client may send more

    txs: list[Annotated[str, Field(max_length=2 * MAX_TX_BYTES)]] = Field(
        ..., min_length=1, max_length=MAX_TXS_PER_REQUEST
    )
    wait: bool = Field(True, description="Wait until the transactions are committed here.")
    timeout: float = Field(30.0, ge=0.0, le=300.0, description="Longest wait in seconds.")


class Receipt(Model):
    """Where a transaction was committed and with which validation code."""

    tx_id: Hex
    height: int
    index: int
    code: str
    reason: str


class ReceiptList(Model):
    """Receipts in submission order."""

    receipts: list[Receipt]


class Queued(Model):
    """Transactions queued without waiting (`wait` false)."""

    tx_ids: list[Hex]
    receipts: list[Receipt]
    """Always empty: ask `GET /v1/txs/{id}` later."""


class TxInfo(Model):
    """A committed transaction: where, its code, type and sender."""

    tx_id: Hex
    height: int
    index: int
    code: str
    reason: str
    type: str
    sender: str


# -- blocks and attestations -------------------------------------------------------


class BlockSummary(Model):
    """A block header with its hash, the orderer's signature and its size."""

    height: int
    hash: Hex
    prev_hash: Hex
    tx_root: Hex
    results_root: Hex
    state_delta_hash: Hex
    timestamp: int
    orderer: str
    signature: Hex
    tx_count: int


class TxResult(Model):
    """A transaction of a block and its validation code."""

    tx_id: Hex
    code: str
    reason: str


class BlockDetail(BlockSummary):
    """One block: header, signature, transaction ids and results."""

    txs: list[TxResult]


class BlockList(Model):
    """Block headers from a height on."""

    height: int
    """The node's height."""
    blocks: list[BlockSummary]


class AttestationList(Model):
    """This node's recent signed attestations."""

    org: str
    attestations: list[AttestationModel]


class PeerAgreement(Model):
    """Whether one peer's attestations agree with this node's chain."""

    org: str
    height: int
    """Highest height it attested (-1 if none seen)."""
    checked: int
    """Highest height compared with this node's chain (-1 if none)."""
    agrees: bool
    latest: AttestationModel | None


class ConflictSeen(Model):
    """A peer's attestation that disagrees with this node's chain."""

    peer: str
    height: int
    detail: str


class AttestationStatus(Model):
    """Which peers agree with this node's chain."""

    org: str
    height: int
    ok: bool
    """False once any conflict was seen (see `quarantined` and `suspects`)."""
    halted: str | None
    quarantined: bool = False
    """True when a quorum of peers attests another state: this node stopped (`halted` says)."""
    suspects: list[str] = Field(default_factory=list)
    """Peers whose attestations disagree with ours without a quorum; they are ignored."""
    peers: list[PeerAgreement]
    conflicts: list[ConflictSeen]


# -- the data-sharing state (`sharechain.api.state_routes`) ----------------------------


class OrganisationList(Model):
    """The consortium's organisations, their roles and public keys."""

    organisations: list[OrganisationModel]


class DatasetList(Model):
    """Datasets of the catalogue."""

    datasets: list[DatasetModel]


class DatasetReply(Model):
    """One dataset."""

    dataset: DatasetModel


class RequestList(Model):
    """Access requests."""

    requests: list[AccessRequestModel]


class RequestReply(Model):
    """One access request."""

    request: AccessRequestModel


class GrantList(Model):
    """Grants, each with its effective status."""

    grants: list[GrantViewModel]


class GrantReply(Model):
    """One grant with its effective status."""

    grant: GrantViewModel


class TrailPosition(Model):
    """Where an audit trail goes on: ask again with `from_height` and `from_index`."""

    height: int
    index: int


class AuditTrail(Model):
    """A page of an audit trail, oldest first, with inclusion proofs when asked."""

    entries: list[AuditEntry]
    next: TrailPosition | None = None
    """Where the trail goes on (null: this page ends it)."""


class AlertList(Model):
    """Risk alerts."""

    alerts: list[AlertModel]


class LineageReply(Model):
    """Ancestors and descendants of a dataset."""

    lineage: LineageModel


class ChainInfo(Model):
    """The consortium, its genesis hash, the head and the number of transactions."""

    consortium: str
    genesis_hash: Hex
    height: int
    head_hash: Hex
    head_timestamp: int
    state_root: Hex
    transactions: int


class FullId(Model):
    """The full id of a record named by a unique prefix."""

    id: str


class ProposalList(Model):
    """Membership proposals and their votes."""

    proposals: list[ProposalModel]


class NotaryReply(Model):
    """The notary record of a digest, with its endorsements."""

    record: NotaryRecordModel


class EpochReply(Model):
    """A dataset's current key epoch."""

    epoch: KeyEpochModel
