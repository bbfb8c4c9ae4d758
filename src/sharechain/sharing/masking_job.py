"""The owner's node masks datasets for masked grants, by itself, after the commit.

A grant issued under a masking profile releases nothing until its owner has
recorded the masked version (`dataset.transform`, see docs/privacy.md). On
the nodes the owner's node does it without being asked: a thread follows the
node's commits, and when a valid `access.approve` or `access.request` issued a
grant on one of *this node's organisation's* datasets that names a masking
profile, it runs `sharing.masked.produce` with adapters over the node itself
(its store, its vault, its blob store, its organisation's key). Other nodes
then keep a replica of the masked blob like any current blob (`upkeep`).

The chain is the journal: on start the job looks for grants of its
organisation that still wait for their masked version (the node was down
when they were issued: in threshold custody the grant waits for the owner's
node, and `request show` says so) and produces them. A failure is logged and
retried on the next start or the next grant; a second attempt for a grant
that has its masked version is a no-op.

The job lives in the data plane, beside `sharing.masked`: what it needs of a
node is the `Host` protocol (its organisation, store, keys, submit and wait),
and the node hands in its vault and blob store (`start`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, Final, Protocol

from sharechain.codec import decode_trusted
from sharechain.contracts import digests, queries
from sharechain.contracts.access import APPROVE, REQUEST
from sharechain.contracts.datasets import Dataset
from sharechain.contracts.epochs import KeyEpoch
from sharechain.contracts.grants import waiting_for_mask
from sharechain.contracts.keys import grant_key
from sharechain.contracts.profiles import profile_key
from sharechain.contracts.queries import GrantView
from sharechain.crypto.keyfile import OrgKeys
from sharechain.errors import ConfigError, NotFoundError, SharechainError, TransactionRejectedError
from sharechain.ledger.blocks import decode_block
from sharechain.ledger.chain import Ledger
from sharechain.ledger.identities import Organisation
from sharechain.ledger.state import StateReader
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import SignedTransaction, sign_transaction
from sharechain.ledger.validation import VALID
from sharechain.ordering.solo import Receipt
from sharechain.sharing import masked
from sharechain.sharing.custody import custody_material, key_epoch
from sharechain.sharing.local import committed_tx
from sharechain.sharing.ports import Deposit, Ports, Rng, Seal, Sealed
from sharechain.sharing.records import DEFAULT_INLINE_LIMIT, NodeShred, Progress, derive_id
from sharechain.storage import sealing
from sharechain.storage.blobs import BlobStore
from sharechain.storage.vault import Vault

__all__ = ["Host", "MaskingJob", "node_ports", "start"]

log = logging.getLogger("sharechain.sharing.masking_job")

_MARKS: Final = (APPROVE.encode(), REQUEST.encode())
_PROFILE_PREFIX: Final = profile_key(b"")
WAKE: Final = 0.5
"""Seconds between checks of the stop flag while no block arrives."""
COMMIT_TIMEOUT: Final = 60.0


class Host(Protocol):
    """What the job needs of the node it runs on (`node.service.Node` has it)."""

    org: str
    store: Store
    now: Callable[[], float]
    stop_event: threading.Event
    problem: str | None

    @property
    def ledger(self) -> Ledger: ...

    @property
    def keys(self) -> OrgKeys: ...

    def submit(self, raws: Sequence[bytes]) -> list[Future[Receipt]]: ...

    def spawn(self, name: str, target: Callable[[], None]) -> None: ...

    def wait_height(self, height: int, timeout: float) -> bool: ...


class _NodeChain:
    """The node's own chain, signing as its organisation."""

    def __init__(self, node: Host) -> None:
        self.node = node

    def organisations(self) -> list[Organisation]:
        return queries.organisations(self.node.store)

    def dataset(self, ds: str) -> Dataset:
        return queries.dataset(self.node.store, ds)

    def grant(self, gid: str) -> GrantView:
        return queries.grant(self.node.store, gid)

    def key_epoch(self, ds: str) -> KeyEpoch:
        return key_epoch(self.node.store, ds)

    def committed(self, tx_id: bytes) -> tuple[str, SignedTransaction]:
        return committed_tx(self.node.store, tx_id)

    def holds_keys(self, org: str) -> bool:
        return org == self.node.org

    def live_users(self, digest: bytes) -> tuple[str, ...]:
        return digests.live_users(StateReader(self.node.store), digest)

    def keys(self, org: str) -> OrgKeys:
        if org != self.node.org:
            raise ConfigError(f"the node of {self.node.org} holds no keys of {org}")
        return self.node.keys

    def sign(self, org: str, type: str, payload: Mapping[str, Any]) -> SignedTransaction:
        keys = self.keys(org)
        return sign_transaction(keys.signing, type, org, dict(payload), now=self.node.now)

    def commit(self, stxs: Sequence[SignedTransaction]) -> list[Receipt]:
        futures = self.node.submit([s.raw for s in stxs])
        receipts = [f.result(timeout=COMMIT_TIMEOUT) for f in futures]
        for r in receipts:
            if not r.ok:
                raise TransactionRejectedError(r.code, r.reason, r.tx_id)
        return receipts


class _NodeCustodian:
    """The node's own vault (a masked version is in `owner` custody: nothing leaves it).

    `vault` gives the vault under the node's current keys (they change when it rotates them).
    """

    def __init__(self, node: Host, vault: Callable[[], Vault]) -> None:
        self.node = node
        self.vault = vault

    def deposit(self, d: Deposit, rng: Rng) -> None:
        vault = self.vault()
        vault.put(d.dataset, d.epoch, "key", d.key)
        for holder, kind, secret in custody_material(d.key, d.owner, d.holders, d.threshold, rng):
            if holder != self.node.org:
                raise ConfigError(f"a masked version is kept by its owner only, not {holder}")
            vault.put(d.dataset, d.epoch, kind, secret)

    def own_key(self, owner: str, dataset: str, epoch: int) -> bytes:
        return self.vault().get(dataset, epoch, "key")

    def release(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the masking job releases nothing; grantees ask the API")

    def destroy(
        self, dataset: str, epoch: int | None, orgs: Sequence[str], *, after: bytes | None
    ) -> int:
        return self.vault().destroy(dataset, epoch)

    def undo(self, dataset: str, epoch: int, orgs: Sequence[str]) -> tuple[str, ...]:
        self.destroy(dataset, epoch, orgs, after=None)
        return ()

    def shred(self, dataset: str, purge_tx: bytes) -> tuple[NodeShred, ...]:
        raise NotImplementedError("the upkeep shreds purged datasets")


class _NodeBlobs:
    """The node's own blob store."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.inline_limit = DEFAULT_INLINE_LIMIT

    def seal(self, job: Seal, rng: Rng, progress: Progress | None) -> Sealed:
        return sealing.seal_source(
            self.store, job.key, job.source, 1, job.segment_size, rng, progress, job.inline_limit
        )

    def reseal(self, *args: Any, **kwargs: Any) -> Sealed:
        raise NotImplementedError("the masking job seals new payloads only")

    @contextmanager
    def source(
        self,
        epoch: KeyEpoch,
        *,
        offline: frozenset[str],
        progress: Progress | None,
        plain_size: int | None = None,
    ) -> Iterator[tuple[sealing.Source, Progress | None]]:
        del plain_size  # read from this node's own store
        if epoch.inline:
            yield sealing.Source(data=epoch.inline), progress
            return
        path = self.store.path(epoch.ciphertext_digest)
        if not path.is_file():
            raise NotFoundError(f"blob {epoch.ciphertext_digest.hex()} is not on this node yet")
        yield sealing.Source(path=path), progress

    def replicate(self, digest: bytes, holders: Sequence[str], owner: str, *, after: bytes) -> None:
        """The other nodes fetch their replicas by themselves (`upkeep`)."""

    def delete(self, digest: bytes, orgs: Sequence[str], *, after: bytes | None) -> None:
        self.store.delete(digest)


def node_ports(node: Host, vault: Callable[[], Vault], blobs: BlobStore, rng: Rng) -> Ports:
    """Adapters over the node itself, acting as its own organisation."""
    return Ports(_NodeChain(node), _NodeCustodian(node, vault), _NodeBlobs(blobs), rng)


class MaskingJob:
    """The masking job of one node (see the module docstring)."""

    def __init__(self, node: Host, vault: Callable[[], Vault], blobs: BlobStore, rng: Rng) -> None:
        self.node = node
        self.ports = node_ports(node, vault, blobs, rng)
        self.followed = -1
        self.profiles = False
        """Whether the chain holds a masking profile (once it does, for good)."""

    def start(self) -> None:
        self.node.spawn("masking-job", self._run)

    def _run(self) -> None:
        node = self.node
        try:
            self.followed = node.ledger.height
            for gid in self.waiting():
                self.produce(gid)
            while not node.stop_event.is_set():
                if not node.wait_height(self.followed + 1, WAKE):
                    continue
                head = node.ledger.height
                if not self._any_profile():
                    self.followed = head  # so no block up to `head` issued a masked grant
                    continue
                for height in range(self.followed + 1, head + 1):
                    for gid in self._issued(height):
                        self.produce(gid)
                    self.followed = height
        except Exception:
            if node.stop_event.is_set():
                return  # stopping: the store may be closed under it
            raise  # `Node.spawn` logs it and starts the loop again, which catches up first

    def _any_profile(self) -> bool:
        """Whether a masking profile is registered (read after the blocks it vouches for).

        A grant is masked only under a registered profile (`grants.issue` loads
        it) and profiles are never removed: while the chain holds none, no
        block committed before this read can have issued a masked grant, and
        the job need not look at them (most consortia mask nothing).
        """
        if not self.profiles:
            self.profiles = bool(self.node.store.scan(_PROFILE_PREFIX))
        return self.profiles

    def waiting(self) -> list[str]:
        """Grants on this organisation's datasets still waiting for their masked version."""
        found = []
        for _, v in StateReader(self.node.store).scan("grant/"):
            if v["owner"] == self.node.org and waiting_for_mask(v) and v["status"] == "active":
                found.append(v["id"])
        return found

    def _issued(self, height: int) -> list[str]:
        """Masked grants on our datasets issued by the valid transactions of block `height`.

        A grant's id derives from the transaction that issued it (an
        `access.request` a rule approved, or the `access.approve` that
        completed the approvals), so the block's transaction ids name every
        grant it can have issued: one state read for the whole block, no
        transaction decoded, no request read. (It ran at every block of a busy
        network: a decode and two reads per access transaction cost the nodes
        5-13% of their CPU.)
        """
        data = self.node.store.block_bytes(height)
        if data is None or not any(m in data for m in _MARKS):
            return []
        block = decode_block(data, check_canonical=False)
        keys = [
            grant_key(derive_id("grant", tx_id))
            for raw, tx_id, result in zip(block.txs, block.tx_ids, block.results, strict=True)
            if result.code == VALID and any(m in raw for m in _MARKS)
        ]
        if not keys:
            return []
        org = self.node.org.encode()
        found = []
        stored = self.node.store.get_many(keys)
        for key in keys:
            raw_grant = stored.get(key)
            # Most grants are of other organisations' datasets: told without decoding them.
            if raw_grant is None or org not in raw_grant:
                continue
            grant = decode_trusted(raw_grant)
            if grant["owner"] == self.node.org and waiting_for_mask(grant):
                found.append(grant["id"])
        return found

    def produce(self, gid: str) -> None:
        try:
            made = masked.produce(self.ports, self.node.org, gid)
        except (SharechainError, OSError, ValueError):
            log.exception(
                "%s: could not produce the masked version for grant %s", self.node.org, gid
            )
            return
        if made is not None:
            log.info(
                "%s: masked dataset %s for grant %s as %s (k %d, %d row(s) suppressed)",
                self.node.org,
                made.source,
                gid,
                made.dataset,
                made.report.k,
                made.report.suppressed,
            )


def start(node: Host, vault: Callable[[], Vault], blobs: BlobStore, rng: Rng) -> MaskingJob | None:
    """Start the masking job of `node` (None for a quarantined node)."""
    if node.problem is not None:
        return None
    job = MaskingJob(node, vault, blobs, rng)
    job.start()
    return job
