"""A node's data-plane upkeep: what it does by itself after each commit.

The chain decides; each node then acts on its own disk. A thread per node
(`Upkeep`, started with the API by `start`) follows the node's commits and
looks at two kinds of valid transactions:

- `dataset.purge`: the node shreds the dataset at once (its vault entries and
  blobs, `sharechain.sharing.shredding`), without waiting to be asked.
- `dataset.epoch`: the dataset's sealed payload is now the blob the epoch
  names. Every node keeps a replica of the current blob of every active
  dataset (nothing in the design ties blobs to particular nodes, and a
  replica everywhere lets a grantee fetch while the owner's node is
  offline), so a node that lacks it queues a fetch from its peers
  (`sharechain.sharing.blob_fetch`). The blobs of the epochs it superseded are
  deleted here, as the owner's tools do on the custodians' nodes.

Crash safety: nothing needs a journal, because the chain is the journal. On
start the thread first reconciles the node's disk with its chain: purged
datasets whose material is still here are shredded (the process died
between the commit and the shredding), and current blobs that are missing
are queued for fetching. Everything is idempotent.

What it did and is doing shows in `GET /v1/status` (`data_plane`), in the
node's log and in Prometheus metrics (`sharechain_shredded_datasets_total`,
`sharechain_blob_fetch_*`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from prometheus_client import Counter, Gauge

from sharechain.contracts.datasets import PURGE
from sharechain.contracts.digests import live_users
from sharechain.contracts.epochs import EPOCH, KeyEpoch, epoch_from_value, epoch_prefix
from sharechain.errors import SharechainError
from sharechain.ledger.blocks import decode_block
from sharechain.ledger.state import StateReader
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import decode_transaction
from sharechain.ledger.validation import VALID
from sharechain.node.service import Node
from sharechain.sharing import masking_job
from sharechain.sharing.blob_fetch import BlobFetcher, FetchJob
from sharechain.sharing.delivery import vault_of
from sharechain.sharing.replica_quota import ReplicaQuota
from sharechain.sharing.replicas import current_epochs
from sharechain.sharing.shredding import counts_of, is_purged, leftovers, shred_committed
from sharechain.storage.blobs import BlobStore
from sharechain.storage.vault import Vault

__all__ = ["ShredRecord", "Upkeep", "current_blobs", "start"]

log = logging.getLogger("sharechain.node.upkeep")

_MARKS: Final = (PURGE.encode(), EPOCH.encode())
"""The transaction types the upkeep acts on, as they appear in a block's raw bytes."""
WAKE: Final = 0.5
"""Seconds between checks of the stop flag while no block arrives."""
RECENT: Final = 32
"""Shreddings remembered for the status."""


@dataclass(frozen=True, slots=True)
class ShredRecord:
    """One dataset this node shredded by itself."""

    dataset: str
    """The purged dataset."""
    height: int
    """The block (or, after a restart, the chain height) at which it was shredded."""
    destroyed: int
    """Vault entries destroyed."""
    blobs_deleted: int
    """Blobs deleted."""
    at: float
    """Wall-clock time."""
    recovered: bool
    """True when finished on start (the process had stopped before shredding)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "height": self.height,
            "destroyed": self.destroyed,
            "blobs_deleted": self.blobs_deleted,
            "at": round(self.at, 3),
            "recovered": self.recovered,
        }


def current_blobs(store: Store) -> dict[bytes, KeyEpoch]:
    """Blob digest -> the current key epoch naming it, over every active dataset.

    The blobs every node keeps a replica of (inline payloads have none).
    """
    reader = StateReader(store)
    out: dict[bytes, KeyEpoch] = {}
    for ds, e in current_epochs(store).items():
        if e.inline:
            continue
        record = reader.get(f"dataset/{ds}")
        if record is not None and record["status"] == "active":
            out[e.ciphertext_digest] = e
    return out


class _Metrics:
    def __init__(self, node: Node) -> None:
        r = node.metrics.registry
        self.shredded = Counter(
            "sharechain_shredded_datasets",
            "Purged datasets this node shredded by itself (on commit or on start)",
            registry=r,
        )
        self.destroyed = Counter(
            "sharechain_shredded_items",
            "Key material and blobs destroyed by this node's own shredding",
            ["what"],
            registry=r,
        )
        self.shred_pending = Gauge(
            "sharechain_shred_pending",
            "Purged datasets whose material is still on this node (should be 0)",
            registry=r,
        )
        self.fetch_queue = Gauge(
            "sharechain_blob_fetch_queue", "Blobs this node still has to fetch", registry=r
        )
        self.fetch_failed = Gauge(
            "sharechain_blob_fetch_failed",
            "Blobs whose fetch gave up after its retries (retried on restart)",
            registry=r,
        )
        self.fetch_over_quota = Gauge(
            "sharechain_blob_fetch_over_quota",
            "Blobs not fetched because their owner's replicas here are at its quota",
            registry=r,
        )
        self.fetched_bytes = Counter(
            "sharechain_blob_fetch_bytes", "Bytes of blobs fetched from peers", registry=r
        )
        self.fetches = Counter(
            "sharechain_blob_fetches",
            "Blob fetch attempts by outcome (done, retry, failed, over_quota)",
            ["outcome"],
            registry=r,
        )


class Upkeep:
    """The upkeep of one node (see the module docstring). `start()`; stops with the node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.blobs = BlobStore(node.datadir.blob_dir)
        self.vault = Vault(node.datadir.path, node.keys)
        self.lock = threading.Lock()
        """Held while shredding and while installing a fetched blob (no blob of a
        dataset purged meanwhile is installed)."""
        self.shred_counts = counts_of(node.store)
        """What the commit hook shredded that no `POST .../shred` reported yet."""
        self.metrics = _Metrics(node)
        self.recent: deque[ShredRecord] = deque(maxlen=RECENT)
        self.followed = -1
        """Height up to which commits have been looked at."""
        self.fetcher = BlobFetcher(
            node,
            self.blobs,
            self.lock,
            wanted=self.wanted,
            on_bytes=self.metrics.fetched_bytes.inc,
            on_outcome=self._fetch_outcome,
            reserve=node.disk.reserve,
            quota=ReplicaQuota.of(node.store, node.datadir, node.org),
        )

    # -- life cycle -----------------------------------------------------------

    def start(self) -> None:
        self.node.spawn("upkeep", self._run)
        self.node.spawn("blob-fetch", self.fetcher.run)

    def _run(self) -> None:
        node = self.node
        try:
            self.followed = node.ledger.height  # blocks after this are followed below
            self.reconcile()
            while not node.stop_event.is_set():
                if not node.wait_height(self.followed + 1, WAKE):
                    continue
                head = node.ledger.height
                for height in range(self.followed + 1, head + 1):
                    try:
                        self._look_at(height)
                    except (SharechainError, OSError):  # one bad block must not stop the rest
                        log.exception("%s: the upkeep could not act on block %d", node.org, height)
                    self.followed = height
        except Exception:
            if node.stop_event.is_set():
                return  # stopping: the store may be closed under it
            raise  # `Node.spawn` logs it and starts the loop again, which reconciles first

    # -- what happens on start ------------------------------------------------

    def reconcile(self) -> None:
        """Finish interrupted shreddings; queue fetches of the current blobs missing here."""
        height = self.node.ledger.height
        pending = leftovers(self.node.store, (self.vault,), self.blobs)
        self.metrics.shred_pending.set(len(pending))
        for ds in pending:
            log.warning(
                "%s: dataset %s is purged on the chain but its material is still here "
                "(stopped before shredding); shredding it now",
                self.node.org,
                ds,
            )
            self.shred(ds, height, recovered=True)
        for digest, epoch in current_blobs(self.node.store).items():
            if not self.blobs.has(digest):
                self.fetcher.queue(FetchJob.of(epoch), delay=0.0)

    # -- following commits ----------------------------------------------------

    def _look_at(self, height: int) -> None:
        data = self.node.store.block_bytes(height)
        if data is None or not any(m in data for m in _MARKS):
            return  # the common case costs one substring search per block
        block = decode_block(data, check_canonical=False)
        for raw, result in zip(block.txs, block.results, strict=True):
            if result.code != VALID or not any(m in raw for m in _MARKS):
                continue
            tx = decode_transaction(raw).tx
            dataset = tx.payload.get("dataset") if isinstance(tx.payload, dict) else None
            if not isinstance(dataset, str):
                continue
            if tx.type == PURGE:
                self.shred(dataset, height, recovered=False)
            elif tx.type == EPOCH:
                self.on_epoch(dataset, height)

    def shred(self, dataset: str, height: int, *, recovered: bool) -> None:
        """Shred a purged dataset here now; logged, counted, shown in the status."""
        with self.lock:
            done = shred_committed(
                self.node.store, (self.vault,), self.blobs, dataset, self.shred_counts
            )
        self.fetcher.forget(dataset)
        record = ShredRecord(
            dataset, height, done.destroyed, done.blobs_deleted, self.node.now(), recovered
        )
        self.recent.append(record)
        self.metrics.shredded.inc()
        self.metrics.destroyed.labels("keys").inc(done.destroyed)
        self.metrics.destroyed.labels("blobs").inc(done.blobs_deleted)
        if recovered:
            self.metrics.shred_pending.dec()
        log.info(
            "%s: shredded purged dataset %s at height %d: %d key(s) or share(s), %d blob(s)",
            self.node.org,
            dataset,
            height,
            done.destroyed,
            done.blobs_deleted,
        )

    def on_epoch(self, dataset: str, height: int) -> None:
        """A new key epoch: fetch its blob if missing; drop the blobs of the old epochs here.

        (Old vault entries are the owner's tools' to destroy, on the custodians' nodes.)
        """
        store = self.node.store
        epochs = [epoch_from_value(v) for _, v in StateReader(store).scan(epoch_prefix(dataset))]
        if not epochs or is_purged(store, dataset):
            return
        current = epochs[-1]
        keep = set(current_blobs(store))
        with self.lock:
            for old in epochs[:-1]:
                digest = old.ciphertext_digest
                shared = set(live_users(StateReader(store), digest)) - {dataset}
                if (
                    not old.inline
                    and digest not in keep
                    and not shared
                    and self.blobs.delete(digest)
                ):
                    log.info(
                        "%s: dropped blob %s of %s epoch %d (superseded at height %d)",
                        self.node.org,
                        digest.hex()[:16],
                        dataset,
                        old.epoch,
                        height,
                    )
        if current.ciphertext_digest in keep and not self.blobs.has(current.ciphertext_digest):
            self.fetcher.queue(FetchJob.of(current))

    # -- for the fetcher and the API ------------------------------------------

    def wanted(self, digest: bytes) -> KeyEpoch | None:
        """The current epoch naming `digest` if this node should keep it, else None."""
        return current_blobs(self.node.store).get(digest)

    def _fetch_outcome(self, outcome: str) -> None:
        self.metrics.fetches.labels(outcome).inc()
        counts = self.fetcher.counts()
        self.metrics.fetch_queue.set(counts["queued"] + counts["fetching"])
        self.metrics.fetch_failed.set(counts["failed"])
        self.metrics.fetch_over_quota.set(counts["over_quota"])

    def status(self) -> dict[str, Any]:
        return {
            "followed_height": self.followed,
            "shredded": [r.to_json() for r in self.recent],
            "blob_fetch": self.fetcher.status(),
        }


def start(node: Node) -> Upkeep | None:
    """Start the upkeep of `node` (None for a quarantined node, which serves nothing).

    Called once per node, by `create_app`, which keeps it as `app.state.upkeep`.
    """
    if node.problem is not None:
        return None
    upkeep = Upkeep(node)
    upkeep.start()
    # issue 15: the owner's node masks for masked grants (the vault under the current keys)
    masking_job.start(node, partial(vault_of, node), upkeep.blobs, os.urandom)
    return upkeep
