"""The ports the data plane is written against: the chain, the custodians, the blob stores.

Publishing, fetching, rotating and purging (`sharing.publish`, `fetch`,
`rotation`, `purge`) are written once, against three small protocols; two
sets of adapters make the two ways of running a consortium:

- `sharing.local`: the embedded default, one data directory holding every
  organisation's keys, vault and the one blob store (`Embedded`);
- `sharing.remote` and `sharing.remote_custody`: the nodes, one per
  organisation, reached through signed clients (`NodeClient`); each node
  keeps its own vault and blob store and checks the chain before it acts.

`Chain` reads the records an operation needs and takes signed transactions
to the commit; `Custodian` keeps, releases and destroys key material (a
custodian's release is always a `grant.key-release` the chain accepted);
`Blobs` holds the sealed payloads. `Ports` bundles one of each with the
randomness and the channel for operator notes. `Queries` is the read side
the faces see (what `sharing.plane.Plane` answers), each adapter's chain
implementing it too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sharechain.contracts.access import AccessRequest
from sharechain.contracts.datasets import Dataset
from sharechain.contracts.epochs import KeyEpoch
from sharechain.contracts.membership import Proposal
from sharechain.contracts.notary import NotaryRecord
from sharechain.contracts.queries import AuditEntry, GrantView, Lineage
from sharechain.contracts.risk import Alert
from sharechain.crypto.keyfile import OrgKeys
from sharechain.crypto.stream import StreamDigests
from sharechain.errors import IntegrityError, SharechainError
from sharechain.ledger.identities import Organisation
from sharechain.ledger.proofs import TxProof
from sharechain.ledger.transactions import SignedTransaction
from sharechain.ordering.solo import Receipt
from sharechain.sharing.records import CatalogueQuery, ChainInfo, NodeShred, Progress
from sharechain.storage.sealing import Source

__all__ = [
    "Blobs",
    "Chain",
    "Custodian",
    "Delivery",
    "Deposit",
    "NodeRefusedError",
    "Ports",
    "Queries",
    "Rng",
    "Seal",
    "Sealed",
    "UnreachableError",
    "quiet",
    "verify_entries",
]

Rng = Callable[[int], bytes]
"""Randomness: `rng(n)` returns n random bytes."""

Sealed = tuple[bytes, StreamDigests]
"""A sealed payload: (the sealed bytes when small enough for the chain, else b""; digests)."""


class UnreachableError(SharechainError):
    """A custodian's node did not answer (or no address of it is known); `where` names it."""

    def __init__(self, where: str, *, connected: bool = True) -> None:
        super().__init__(f"could not reach custodian {where}")
        self.where = where
        """The custodian and its node, as the operator should read it."""
        self.connected = connected
        """False when no connection was made (so the request surely did nothing there)."""


class NodeRefusedError(SharechainError):
    """An organisation's node refused a custody or blob request; `where` names it."""

    def __init__(self, where: str, what: str, why: str) -> None:
        super().__init__(f"{where} refused to {what}: {why}")
        self.where = where
        """The organisation and its node, as the operator should read it."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """A wrapped key (or share) a custodian released, as the custodian describes it.

    The grantee believes none of it until the chain's copy of the release
    transaction says the same (`sharing.fetch.open_delivery`).
    """

    custodian: str
    """Who released."""
    epoch: int
    """Key epoch of the released secret."""
    tx_id: bytes
    """The `grant.key-release` transaction that recorded the release."""
    wrapped: bytes
    """The secret wrapped to the grantee (HPKE, bound to dataset, grant and session)."""
    session: str
    """The key session the release was made in (issued by the first custodian asked)."""


@dataclass(frozen=True, slots=True)
class Deposit:
    """The key material of one key epoch, to be kept per its custody."""

    dataset: str
    """The dataset."""
    epoch: int
    """The key epoch."""
    owner: str
    """The dataset's owner (it keeps the whole key)."""
    key: bytes
    """The data key."""
    holders: tuple[str, ...]
    """The custodians (key or share each, `custody.custody_material`)."""
    threshold: int
    """Shares needed (threshold custody), else 1."""


@dataclass(frozen=True, slots=True)
class Seal:
    """A file to seal as the first key epoch of a new dataset."""

    source: Path
    """The plaintext file."""
    key: bytes
    """The fresh data key."""
    holders: tuple[str, ...]
    """Custodians that will need copies (`Blobs.replicate`) once the epoch is committed."""
    segment_size: int
    """Plaintext bytes per AEAD segment."""
    inline_limit: int
    """Files up to this size are sealed in memory to travel on the chain."""


class Chain(Protocol):
    """The chain as the data plane reads and writes it (one organisation's copy)."""

    def organisations(self) -> list[Organisation]: ...

    def dataset(self, ds: str) -> Dataset: ...

    def grant(self, gid: str) -> GrantView: ...

    def key_epoch(self, ds: str) -> KeyEpoch:
        """The current key epoch; `NotFoundError` for a dataset never sealed."""
        ...

    def committed(self, tx_id: bytes) -> tuple[str, SignedTransaction]:
        """A committed transaction and its validation code (waits a while for it)."""
        ...

    def holds_keys(self, org: str) -> bool:
        """Whether this side may act (sign, open, rotate) as `org`."""
        ...

    def live_users(self, digest: bytes) -> tuple[str, ...]:
        """The datasets, not purged, that name the sealed payload `digest` (its bytes stay)."""
        ...

    def keys(self, org: str) -> OrgKeys:
        """`org`'s keys; `ConfigError` unless `holds_keys(org)`."""
        ...

    def sign(self, org: str, type: str, payload: Mapping[str, Any]) -> SignedTransaction: ...

    def commit(self, stxs: Sequence[SignedTransaction]) -> list[Receipt]:
        """Order and commit `stxs` (one block when possible); raise unless all are valid."""
        ...


class Custodian(Protocol):
    """Where key material lives: the owner's copy and the custodians' keys or shares."""

    def deposit(self, d: Deposit, rng: Rng) -> None:
        """The owner keeps the key; each holder gets the key or its share (`custody_material`)."""
        ...

    def own_key(self, owner: str, dataset: str, epoch: int) -> bytes:
        """The owner's own copy of the data key of `epoch`."""
        ...

    def release(
        self, holder: str, grant: str, *, to: str, session: str, epoch: KeyEpoch
    ) -> Delivery:
        """`holder` releases its key or share to `to` (the chain checks the grant).

        An empty `session` asks for a new one: a node issues it, single-use and bound
        to the grant and the caller (`POST /v1/grants/{g}/key-session`), so a caller
        cannot choose or replay one; the further shares of one fetch name the session
        of the first release (`Delivery.session`).

        Raises `ReleaseRefusedError` when the chain (or the custodian) refused,
        `UnreachableError` when the holder cannot be asked.
        """
        ...

    def destroy(
        self, dataset: str, epoch: int | None, orgs: Sequence[str], *, after: bytes | None
    ) -> int:
        """Destroy `orgs`' entries of `epoch` (None: every epoch); count them.

        `after` is the committed transaction that makes them obsolete (every holder
        checks it first); None undoes a deposit whose epoch never committed, which
        only a side holding the entries itself can do (nodes release nothing for an
        epoch that is not on their chain anyway).
        """
        ...

    def undo(self, dataset: str, epoch: int, orgs: Sequence[str]) -> tuple[str, ...]:
        """Take back the deposits of an `epoch` that never committed, wherever they went.

        Returns, one line each, the places that still hold them (a node that refused
        or did not answer): pending cleanup, for the operator to read.
        """
        ...

    def shred(self, dataset: str, purge_tx: bytes) -> tuple[NodeShred, ...]:
        """After the purge `purge_tx` committed: every place destroys what it holds."""
        ...


class Blobs(Protocol):
    """Where sealed payloads live."""

    inline_limit: int
    """Payloads up to this size travel on the chain unless the publisher says otherwise."""

    def seal(self, job: Seal, rng: Rng, progress: Progress | None) -> Sealed:
        """Seal `job.source` as epoch 1 into the owner's store (or inline when small)."""
        ...

    def reseal(
        self, old: KeyEpoch, keys: tuple[bytes, bytes], rng: Rng, progress: Progress | None
    ) -> Sealed:
        """The payload of `old` (opened with `keys[0]`) sealed under `keys[1]` as the next epoch."""
        ...

    def source(
        self,
        epoch: KeyEpoch,
        *,
        offline: frozenset[str],
        progress: Progress | None,
        plain_size: int | None = None,
    ) -> AbstractContextManager[tuple[Source, Progress | None]]:
        """The sealed payload of `epoch` to open, and the progress the opening should report.

        `plain_size`: the dataset's recorded size; a download longer than its sealed
        payload can be is refused as it arrives (`api.transfer.download_blob`)."""
        ...

    def replicate(self, digest: bytes, holders: Sequence[str], owner: str, *, after: bytes) -> None:
        """Copy the blob to the holders' stores once they committed `after`."""
        ...

    def delete(self, digest: bytes, orgs: Sequence[str], *, after: bytes | None) -> None:
        """Delete the blob from `orgs`' stores (`after` as in `Custodian.destroy`)."""
        ...


def quiet(message: str) -> None:
    """Where operator notes go when nobody reads them."""
    del message


@dataclass(frozen=True, slots=True)
class Ports:
    """One adapter of each port, the randomness, and where operator notes go."""

    chain: Chain
    """The chain."""
    custodian: Custodian
    """Key custody."""
    blobs: Blobs
    """Sealed payloads."""
    rng: Rng
    """Randomness (data keys, sessions, shares)."""
    warn: Callable[[str], None] = quiet
    """Notes and warnings for the operator (rich markup allowed)."""


class Queries(Protocol):
    """The chain as the faces read it, and their way to submit one transaction."""

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

    def catalogue(self, query: CatalogueQuery) -> list[Dataset]: ...

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


def verify_entries(entries: Sequence[AuditEntry], check: Callable[[TxProof], None]) -> None:
    """Run `check(proof)` on every entry's proof; an entry without one is an error."""
    for e in entries:
        if e.proof is None:
            raise IntegrityError(f"no proof for transaction {e.tx_id.hex()}")
        check(e.proof)
