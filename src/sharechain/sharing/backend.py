"""What the commands talk to: the embedded data directory or a node's API.

A command asks a `Backend` for records (`Dataset`, `GrantView`, `AuditEntry`,
...) and submits signed transactions through it; it never knows which kind
it holds, so the two modes print the same tables and the same JSON. This
module defines the seam and the embedded side (`EmbeddedBackend`, a thin
wrapper of `Embedded` that behaves exactly as the commands always did); the
node side is `sharechain.cli.remote.RemoteBackend`.

The data plane (publish, fetch, rotate, the rotation after a revocation and
the shredding after a purge) goes through the same seam: `sharechain.node.
sharing` on the embedded default, `sharechain.sharing.remote` and
`remote_purge` against the nodes (`sharechain.sharing.remote_plane`); both give
the same records (`Published`, `Fetched`, `Rotated`, `PurgeReport`).

Every proof a backend returns has been verified against the block hash of
the chain it read (the local store, or the node's block at that height).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sharechain.contracts import queries
from sharechain.contracts.access import AccessRequest
from sharechain.contracts.datasets import Dataset
from sharechain.contracts.membership import Proposal
from sharechain.contracts.notary import NotaryRecord, notary_record, record_key
from sharechain.contracts.queries import AuditEntry, GrantView, Lineage
from sharechain.contracts.risk import Alert
from sharechain.errors import IntegrityError
from sharechain.ledger.identities import Organisation
from sharechain.ledger.proofs import TxProof, prove_tx, verify_tx_proof
from sharechain.ledger.state import StateReader
from sharechain.ordering.solo import Receipt
from sharechain.sharing import local as sharing
from sharechain.sharing.embedded import Embedded
from sharechain.sharing.local import Fetched, Published, Rotated
from sharechain.sharing.remote_purge import NodeShred, PurgeReport

__all__ = ["Backend", "ChainInfo", "EmbeddedBackend", "Listing", "Progress"]

Progress = Callable[[int], None]
"""Called with the number of bytes just processed (progress bars)."""


@dataclass(frozen=True, slots=True)
class Listing:
    """How `dataset publish` describes a file in the catalogue and who keeps its key."""

    title: str
    """Short name in the catalogue."""
    description: str = ""
    """Free text."""
    tags: tuple[str, ...] = ()
    """Catalogue tags."""
    classification: str = "internal"
    """public, internal, confidential or secret."""
    schema: tuple[tuple[str, str], ...] = ()
    """Columns a request may name, (name, type)."""
    policy: Mapping[str, Any] | None = None
    """The sharing policy (docs/policies.md), None for the default."""
    custody: str = "owner"
    """owner, supervisor or threshold."""
    holders: tuple[str, ...] | None = None
    """Key holders; None to let the custody mode choose."""
    threshold: int | None = None
    """Shares needed under threshold custody; None for the default."""

    def options(self) -> dict[str, Any]:
        """The keyword arguments of `sharing.publish` / `remote_sharing.publish_remote`."""
        return {
            "title": self.title,
            "description": self.description,
            "tags": self.tags,
            "classification": self.classification,
            "schema": self.schema,
            "policy": self.policy,
            "custody": self.custody,
            "holders": self.holders,
            "threshold": self.threshold,
        }


@dataclass(frozen=True, slots=True)
class ChainInfo:
    """What `chain info` shows."""

    consortium: str
    """Consortium name."""
    genesis_hash: bytes
    """Hash of block 0."""
    height: int
    """Height of the head."""
    head_hash: bytes
    """The head's header hash."""
    head_timestamp: int
    """The head's block time (ms)."""
    state_root: bytes
    """Running state root at the head."""
    transactions: int
    """Transactions on the chain, refused ones included."""
    organisations: tuple[Organisation, ...]
    """Every organisation ever admitted."""
    data_dir: str | None
    """The data directory read (embedded), else None."""
    node: str | None
    """The node's URL (node mode), else None."""


class Backend(Protocol):
    """The chain as the commands see it (see the module docstring)."""

    def submit(self, org: str, type: str, payload: Mapping[str, Any]) -> Receipt:
        """Sign as `org`, submit, wait for the commit; raise unless the code is valid."""
        ...

    def resolve(self, kind: str, prefix: str) -> str:
        """The full id of a dataset, request, grant, proposal or alert from a unique prefix."""
        ...

    def chain_info(self) -> ChainInfo: ...

    def proof(self, tx_id: bytes) -> TxProof:
        """A transaction's inclusion proof, verified against the chain's block hash."""
        ...

    def notary(self, digest: bytes) -> NotaryRecord | None: ...

    def organisations(self) -> list[Organisation]: ...

    def proposals(self) -> list[Proposal]: ...

    def catalogue(
        self,
        *,
        owner: str | None,
        tag: str | None,
        classification: str | None,
        text: str | None,
        include_inactive: bool,
    ) -> list[Dataset]: ...

    def dataset(self, ds: str) -> Dataset: ...

    def lineage(self, ds: str) -> Lineage: ...

    def request(self, rid: str) -> AccessRequest: ...

    def requests(self, *, org: str | None = None, ds: str | None = None) -> list[AccessRequest]: ...

    def inbox(self, org: str) -> list[AccessRequest]: ...

    def grants(self, *, org: str | None = None, ds: str | None = None) -> list[GrantView]: ...

    def alerts(self, *, open_only: bool) -> list[Alert]: ...

    def audit(
        self, *, ds: str | None = None, grant_id: str | None = None, org: str | None = None
    ) -> list[AuditEntry]:
        """An audit trail, every entry's proof verified."""
        ...

    def grant(self, gid: str) -> GrantView: ...

    # -- the data plane -------------------------------------------------------------

    def publish(
        self, org: str, source: Path, listing: Listing, progress: Progress | None
    ) -> Published:
        """Seal `source` as `org`, keep its key per custody, register it with epoch 1."""
        ...

    def rotate(self, org: str, ds: str, *, reason: str) -> Rotated:
        """Move `ds` to a new key epoch as its owner `org`; the old keys and blob destroyed."""
        ...

    def rotate_after_revoke(self, org: str, gid: str) -> Rotated | None:
        """After `org` revoked `gid`: a new key epoch (None if the data plane never sealed it)."""
        ...

    def fetch(
        self, org: str, gid: str, out: Path, *, offline: frozenset[str], progress: Progress | None
    ) -> Fetched:
        """Have the custodians release under `gid`, open into `out`, check, sign the read."""
        ...

    def shred(self, org: str, ds: str, purge_tx: bytes) -> PurgeReport:
        """After the purge `purge_tx` committed: destroy the keys and blobs of `ds`."""
        ...


class EmbeddedBackend:
    """The embedded default: reads the local store, orders blocks in this process."""

    def __init__(self, emb: Embedded) -> None:
        self.emb = emb
        self.store = emb.store

    def submit(self, org: str, type: str, payload: Mapping[str, Any]) -> Receipt:
        return self.emb.submit(org, type, payload)

    def resolve(self, kind: str, prefix: str) -> str:
        return queries.resolve(self.store, kind, prefix)

    def chain_info(self) -> ChainInfo:
        head = self.store.head()
        if head is None:
            raise IntegrityError("the ledger holds no blocks yet")
        return ChainInfo(
            self.emb.datadir.consortium,
            self.emb.datadir.genesis_hash,
            head.height,
            head.hash,
            head.timestamp,
            head.state_root,
            self.store.tx_count(),
            tuple(queries.organisations(self.store)),
            str(self.emb.datadir.path),
            None,
        )

    def proof(self, tx_id: bytes) -> TxProof:
        p = prove_tx(self.store, tx_id)
        self._verify(p)
        return p

    def _verify(self, p: TxProof) -> None:
        meta = self.store.block_meta(p.height)
        if meta is None:
            raise IntegrityError(f"block {p.height} is missing from the store")
        verify_tx_proof(p, meta.hash)

    def notary(self, digest: bytes) -> NotaryRecord | None:
        value = StateReader(self.store).get(record_key(digest))
        return None if value is None else notary_record(value)

    def organisations(self) -> list[Organisation]:
        return queries.organisations(self.store)

    def proposals(self) -> list[Proposal]:
        return queries.proposals(self.store)

    def catalogue(
        self,
        *,
        owner: str | None,
        tag: str | None,
        classification: str | None,
        text: str | None,
        include_inactive: bool,
    ) -> list[Dataset]:
        return queries.catalogue(
            self.store,
            owner=owner,
            tag=tag,
            classification=classification,
            text=text,
            include_inactive=include_inactive,
        )

    def dataset(self, ds: str) -> Dataset:
        return queries.dataset(self.store, ds)

    def lineage(self, ds: str) -> Lineage:
        return queries.lineage(self.store, ds)

    def request(self, rid: str) -> AccessRequest:
        return queries.request(self.store, rid)

    def requests(self, *, org: str | None = None, ds: str | None = None) -> list[AccessRequest]:
        return queries.requests(self.store, org=org, ds=ds)

    def inbox(self, org: str) -> list[AccessRequest]:
        return queries.inbox(self.store, org)

    def grants(self, *, org: str | None = None, ds: str | None = None) -> list[GrantView]:
        return queries.grants(self.store, org=org, ds=ds)

    def alerts(self, *, open_only: bool) -> list[Alert]:
        return queries.alerts(self.store, open_only=open_only)

    def audit(
        self, *, ds: str | None = None, grant_id: str | None = None, org: str | None = None
    ) -> list[AuditEntry]:
        entries = queries.audit(self.store, ds=ds, grant_id=grant_id, org=org)
        verify_entries(entries, self._verify)
        return entries

    def grant(self, gid: str) -> GrantView:
        return queries.grant(self.store, gid)

    def publish(
        self, org: str, source: Path, listing: Listing, progress: Progress | None
    ) -> Published:
        return sharing.publish(self.emb, org, source, progress=progress, **listing.options())

    def rotate(self, org: str, ds: str, *, reason: str) -> Rotated:
        return sharing.rotate(self.emb, org, ds, reason=reason)

    def rotate_after_revoke(self, org: str, gid: str) -> Rotated | None:
        # One process holds every organisation's keys: the owner's rotation runs here.
        return sharing.rotate_after_revoke(self.emb, gid)

    def fetch(
        self, org: str, gid: str, out: Path, *, offline: frozenset[str], progress: Progress | None
    ) -> Fetched:
        return sharing.fetch(self.emb, org, gid, out, progress=progress, offline=offline)

    def shred(self, org: str, ds: str, purge_tx: bytes) -> PurgeReport:
        destroyed, deleted = sharing.shred(self.emb, ds)
        here = NodeShred(org, str(self.emb.datadir.path), destroyed, deleted)
        return PurgeReport(ds, purge_tx, (here,))


def verify_entries(entries: Sequence[AuditEntry], check: Callable[[TxProof], None]) -> None:
    """Run `check(proof)` on every entry's proof; an entry without one is an error."""
    for e in entries:
        if e.proof is None:
            raise IntegrityError(f"no proof for transaction {e.tx_id.hex()}")
        check(e.proof)
