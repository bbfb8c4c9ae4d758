"""The embedded default's adapters: the data plane's ports over one data directory.

One data directory (`Embedded`) holds the whole development consortium: every
organisation's keys and vault, one blob store and the ledger, ordered by the
solo orderer in this process. The adapters play every organisation in turn,
each touching key material only through its own `Vault` and `Inbox`:

- `LocalChain`: the ledger (`contracts.queries` over the `Store`), signing with
  the key files held here; also the faces' read side (`ports.Queries`);
- `LocalCustodian`: the vaults; a custodian releases by wrapping its secret to
  the grantee and committing `grant.key-release` (the chain checks the grant),
  and the wrap reaches the grantee's inbox only when the chain accepted it;
- `LocalBlobs`: the one blob store (no copies to make: every "node" shares it).

`local_ports(emb)` bundles them for `sharing.publish`, `fetch`, `rotation` and
`purge`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sharechain.contracts import digests, queries
from sharechain.contracts.access import AccessRequest
from sharechain.contracts.datasets import Dataset
from sharechain.contracts.epochs import KeyEpoch
from sharechain.contracts.grants import KEY_RELEASE
from sharechain.contracts.membership import Proposal
from sharechain.contracts.notary import NotaryRecord, notary_record, record_key
from sharechain.contracts.queries import AuditEntry, GrantView, Lineage
from sharechain.contracts.risk import Alert
from sharechain.crypto.keyfile import OrgKeys
from sharechain.errors import IntegrityError, NotFoundError, TransactionRejectedError
from sharechain.ledger.blocks import decode_block
from sharechain.ledger.identities import Organisation
from sharechain.ledger.proofs import TxProof, prove_tx, verify_tx_proof
from sharechain.ledger.state import StateReader
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import SignedTransaction, decode_transaction
from sharechain.ordering.solo import Receipt
from sharechain.sharing.custody import (
    custody_material,
    encryption_key,
    key_epoch,
    release_payload,
    wrap_release,
)
from sharechain.sharing.embedded import Embedded
from sharechain.sharing.ports import (
    Delivery,
    Deposit,
    Ports,
    Rng,
    Seal,
    Sealed,
    quiet,
    verify_entries,
)
from sharechain.sharing.records import (
    DEFAULT_INLINE_LIMIT,
    CatalogueQuery,
    ChainInfo,
    NodeShred,
    Progress,
    ReleaseRefusedError,
)
from sharechain.sharing.shredding import shred_here
from sharechain.storage import sealing
from sharechain.storage.blobs import BlobStore
from sharechain.storage.vault import Inbox, Vault

__all__ = ["LocalBlobs", "LocalChain", "LocalCustodian", "committed_tx", "local_ports"]


def committed_tx(store: Store, tx_id: bytes) -> tuple[str, SignedTransaction]:
    """The validation code and the transaction `tx_id` as committed in `store`."""
    loc = store.tx_location(tx_id)
    data = None if loc is None else store.block_bytes(loc.height)
    if loc is None or data is None:
        raise NotFoundError(f"transaction {tx_id.hex()} is not on this chain")
    raw = decode_block(data, check_canonical=False).txs[loc.index]
    return loc.code, decode_transaction(raw)


class LocalChain:
    """The ledger of the data directory, signing with the key files it holds."""

    def __init__(self, emb: Embedded) -> None:
        self.emb = emb
        self.store = emb.store

    # -- the data plane's port ------------------------------------------------------

    def key_epoch(self, ds: str) -> KeyEpoch:
        return key_epoch(self.store, ds)

    def committed(self, tx_id: bytes) -> tuple[str, SignedTransaction]:
        return committed_tx(self.store, tx_id)

    def holds_keys(self, org: str) -> bool:
        return org in self.emb.datadir.held_orgs()

    def keys(self, org: str) -> OrgKeys:
        return self.emb.keys(org)

    def live_users(self, digest: bytes) -> tuple[str, ...]:
        return digests.live_users(StateReader(self.store), digest)

    def sign(self, org: str, type: str, payload: Mapping[str, Any]) -> SignedTransaction:
        return self.emb.sign(org, type, payload)

    def commit(self, stxs: Sequence[SignedTransaction]) -> list[Receipt]:
        receipts = self.emb.submit_raw([s.raw for s in stxs], orderer=stxs[0].tx.sender)
        for r in receipts:
            if not r.ok:
                raise TransactionRejectedError(r.code, r.reason, r.tx_id)
        return receipts

    # -- the faces' read side (ports.Queries) -----------------------------------------

    def submit(self, org: str, type: str, payload: Mapping[str, Any]) -> Receipt:
        return self.emb.submit(org, type, payload)

    def resolve(self, kind: str, prefix: str) -> str:
        return queries.resolve(self.store, kind, prefix)

    def chain_info(self) -> ChainInfo:
        head = self.store.head()
        if head is None:
            raise IntegrityError("the ledger holds no blocks yet")
        dd = self.emb.datadir
        orgs = tuple(queries.organisations(self.store))
        return ChainInfo(
            dd.consortium,
            dd.genesis_hash,
            head.height,
            head.hash,
            head.timestamp,
            head.state_root,
            self.store.tx_count(),
            orgs,
            str(dd.path),
            None,
        )

    def _verify(self, p: TxProof) -> None:
        meta = self.store.block_meta(p.height)
        if meta is None:
            raise IntegrityError(f"block {p.height} is missing from the store")
        verify_tx_proof(p, meta.hash)

    def proof(self, tx_id: bytes) -> TxProof:
        p = prove_tx(self.store, tx_id)
        self._verify(p)
        return p

    def notary(self, digest: bytes) -> NotaryRecord | None:
        value = StateReader(self.store).get(record_key(digest))
        return None if value is None else notary_record(value)

    def organisations(self) -> list[Organisation]:
        return queries.organisations(self.store)

    def proposals(self) -> list[Proposal]:
        return queries.proposals(self.store)

    def catalogue(self, query: CatalogueQuery) -> list[Dataset]:
        return queries.catalogue(
            self.store,
            owner=query.owner,
            tag=query.tag,
            classification=query.classification,
            text=query.text,
            include_inactive=query.include_inactive,
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
        entries = queries.audit_all(self.store, ds=ds, grant_id=grant_id, org=org)
        verify_entries(entries, self._verify)
        return entries

    def grant(self, gid: str) -> GrantView:
        return queries.grant(self.store, gid)


class LocalCustodian:
    """Every organisation's vault in the data directory."""

    def __init__(self, emb: Embedded) -> None:
        self.emb = emb

    def _vault(self, org: str) -> Vault:
        return Vault(self.emb.datadir.path, self.emb.keys(org))

    def _clear_inboxes(self, dataset: str) -> None:
        for org in self.emb.datadir.held_orgs():
            Inbox(self.emb.datadir.path, org).clear(dataset)

    def deposit(self, d: Deposit, rng: Rng) -> None:
        self._vault(d.owner).put(d.dataset, d.epoch, "key", d.key)
        for holder, kind, secret in custody_material(d.key, d.owner, d.holders, d.threshold, rng):
            self._vault(holder).put(d.dataset, d.epoch, kind, secret)

    def own_key(self, owner: str, dataset: str, epoch: int) -> bytes:
        return self._vault(owner).get(dataset, epoch, "key")

    def release(
        self, holder: str, grant: str, *, to: str, session: str, epoch: KeyEpoch
    ) -> Delivery:
        """`holder` wraps its secret to `to` and records the release; the inbox carries it."""
        session = session or self.emb.rng(16).hex()  # the embedded store issues it
        recipient = encryption_key(queries.organisations(self.emb.store), to)
        wrapped = wrap_release(self._vault(holder), recipient, epoch, grant=grant, session=session)
        payload = release_payload(grant, to, epoch, wrapped, session)
        receipt = self.emb.submit(holder, KEY_RELEASE, payload, check=False)
        if not receipt.ok:
            raise ReleaseRefusedError(
                f"{holder} did not release the key of grant {grant} to {to}: the chain refused "
                f"({receipt.code}: {receipt.reason}); the refusal is recorded in block "
                f"{receipt.height}",
                receipt.code,
                receipt.reason,
                holder,
            )
        if not wrapped:
            raise ReleaseRefusedError(
                f"{holder} no longer holds the key of dataset {epoch.dataset} at epoch "
                f"{epoch.epoch} (destroyed by a purge); nothing was released",
                "no_key",
                custodian=holder,
            )
        inbox = Inbox(self.emb.datadir.path, to)
        inbox.deliver(epoch.dataset, epoch.epoch, grant, session, holder, wrapped)
        try:
            got = inbox.collect(epoch.dataset, epoch.epoch, grant, session, holder)
        finally:
            inbox.clear(epoch.dataset, grant, session)
        return Delivery(holder, epoch.epoch, receipt.tx_id, got, session)

    def destroy(
        self, dataset: str, epoch: int | None, orgs: Sequence[str], *, after: bytes | None
    ) -> int:
        destroyed = sum(self._vault(org).destroy(dataset, epoch) for org in dict.fromkeys(orgs))
        if after is not None:
            self._clear_inboxes(dataset)
        return destroyed

    def undo(self, dataset: str, epoch: int, orgs: Sequence[str]) -> tuple[str, ...]:
        self.destroy(dataset, epoch, orgs, after=None)
        return ()

    def shred(self, dataset: str, purge_tx: bytes) -> tuple[NodeShred, ...]:
        held = self.emb.datadir.held_orgs()
        vaults = [self._vault(org) for org in held]
        blobs = BlobStore(self.emb.datadir.blob_dir)
        done = shred_here(self.emb.store, vaults, blobs, dataset, self.emb.shred_counts)
        self._clear_inboxes(dataset)
        where = str(self.emb.datadir.path)
        return (NodeShred(", ".join(held), where, done.destroyed, done.blobs_deleted),)


class LocalBlobs:
    """The data directory's one blob store."""

    def __init__(self, emb: Embedded) -> None:
        self.emb = emb
        self.store = BlobStore(emb.datadir.blob_dir)
        self.inline_limit = int(emb.datadir.settings.get("inline_limit", DEFAULT_INLINE_LIMIT))

    def _source(self, epoch: KeyEpoch) -> sealing.Source:
        if epoch.inline:
            return sealing.Source(data=epoch.inline)
        path = self.store.path(epoch.ciphertext_digest)
        if not path.is_file():
            raise NotFoundError(
                f"the sealed payload of dataset {epoch.dataset} (epoch {epoch.epoch}, blob "
                f"{epoch.ciphertext_digest.hex()}) is not in {self.emb.datadir.blob_dir}"
            )
        return sealing.Source(path=path)

    def seal(self, job: Seal, rng: Rng, progress: Progress | None) -> Sealed:
        return sealing.seal_source(
            self.store, job.key, job.source, 1, job.segment_size, rng, progress, job.inline_limit
        )

    def reseal(
        self, old: KeyEpoch, keys: tuple[bytes, bytes], rng: Rng, progress: Progress | None
    ) -> Sealed:
        src, (old_key, new_key) = self._source(old), keys
        return sealing.reseal(
            src, old_key, old.epoch, new_key, old.epoch + 1, self.store, rng, progress
        )

    @contextmanager
    def source(
        self,
        epoch: KeyEpoch,
        *,
        offline: frozenset[str],
        progress: Progress | None,
        plain_size: int | None = None,
    ) -> Iterator[tuple[sealing.Source, Progress | None]]:
        del plain_size  # the blob is read from this directory's own store
        yield self._source(epoch), progress

    def replicate(self, digest: bytes, holders: Sequence[str], owner: str, *, after: bytes) -> None:
        """Nothing to copy: every organisation here reads the one store."""

    def delete(self, digest: bytes, orgs: Sequence[str], *, after: bytes | None) -> None:
        self.store.delete(digest)


def local_ports(emb: Embedded, warn: Callable[[str], None] = quiet) -> Ports:
    """The embedded default's adapters, bundled."""
    return Ports(LocalChain(emb), LocalCustodian(emb), LocalBlobs(emb), emb.rng, warn)
