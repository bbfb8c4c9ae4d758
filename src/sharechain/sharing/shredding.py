"""Crypto-shredding: what one organisation's node destroys once a dataset is purged.

A `dataset.purge` on the chain revokes every grant and keeps the dataset's
record, marked purged, for audit. The payload must then become unreadable
everywhere: every node destroys, in its own vault and blob store, the keys,
shares and sealed blobs of every key epoch of the dataset. A payload carried
on the chain (inline) stays in the blocks, but without a key it is noise.

A node shreds by itself as soon as it commits the purge (its upkeep thread,
`sharechain.node.upkeep`, follows every commit; the embedded default shreds
in the command that committed the block). Should the process die between the
commit and the shredding, it finishes the job when it starts again
(`leftovers` finds purged datasets whose material is still here). A node
also shreds when asked (`POST /v1/datasets/{id}/shred`) and, lazily, on any
later request that concerns the dataset. Every path checks the purge on *its
own* copy of the chain first: nothing is deleted because a caller says so.

A blob is deleted only when no dataset that is still live names it
(`shreddable_digests`; the contracts give every sealed payload one owning
dataset, `sharechain.contracts.digests`): purging one dataset never deletes
bytes another dataset, of any member, still serves.

Counts: what the commit hook destroyed is remembered in memory until the next
explicit shred of the dataset here reports it (`shred_here`), so the owner's
`dataset purge` still says how many keys and blobs each node destroyed even
when the node had already done it by itself; a later call reports 0.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from sharechain.contracts.digests import live_users
from sharechain.contracts.epochs import epoch_from_value, epoch_prefix
from sharechain.contracts.keys import dataset_key
from sharechain.errors import AccessDeniedError
from sharechain.ledger.state import StateReader
from sharechain.ledger.store import Store
from sharechain.storage.blobs import BlobStore
from sharechain.storage.vault import Vault

__all__ = [
    "ShredCounts",
    "Shredded",
    "counts_of",
    "is_purged",
    "leftovers",
    "payload_digests",
    "purged_naming",
    "require_purged",
    "shred_committed",
    "shred_here",
    "shred_if_purged",
    "shreddable_digests",
]


@dataclass(frozen=True, slots=True)
class Shredded:
    """What was destroyed of a purged dataset in one place (a node, or the embedded default)."""

    dataset: str
    """The purged dataset."""
    destroyed: int
    """Vault entries (keys and shares) destroyed."""
    blobs_deleted: int
    """Sealed blobs deleted."""


def is_purged(store: Store, dataset: str) -> bool:
    """Whether this chain copy records `dataset` as purged."""
    value = StateReader(store).get(dataset_key(dataset))
    return value is not None and value["status"] == "purged"


def require_purged(store: Store, dataset: str) -> None:
    """Raise `AccessDeniedError` unless the purge of `dataset` is on this chain copy."""
    if not is_purged(store, dataset):
        raise AccessDeniedError(
            f"dataset {dataset} is not purged on this node's chain; purge it first "
            "(`dataset.purge`), or wait until this node has committed the purge"
        )


def payload_digests(store: Store, dataset: str) -> tuple[bytes, ...]:
    """The blob digests of every key epoch of `dataset` (inline payloads have none)."""
    epochs = (epoch_from_value(v) for _, v in StateReader(store).scan(epoch_prefix(dataset)))
    return tuple(dict.fromkeys(e.ciphertext_digest for e in epochs if not e.inline))


def shreddable_digests(store: Store, dataset: str) -> tuple[bytes, ...]:
    """The blob digests of `dataset` that no dataset still live (not purged) names.

    Only these may be deleted: a payload another dataset still uses (a later
    version that kept it, or, on a chain recorded before digests had owners,
    another member's dataset naming the same bytes) stays.
    """
    reader = StateReader(store)
    return tuple(d for d in payload_digests(store, dataset) if not live_users(reader, d))


def purged_naming(store: Store, digest: bytes) -> tuple[str, ...]:
    """Purged datasets one of whose key epochs named the blob `digest`."""
    found = []
    for _, v in StateReader(store).scan("epoch/"):
        e = epoch_from_value(v)
        if e.ciphertext_digest == digest and not e.inline and is_purged(store, e.dataset):
            found.append(e.dataset)
    return tuple(dict.fromkeys(found))


class ShredCounts:
    """What the commit hook destroyed here that no `shred_here` has reported yet.

    One per store (a node's upkeep, an embedded data directory), handed to both
    `shred_committed` and `shred_here`: the owner's tools ask each node after a purge
    and are told what the node shredded, even when its commit hook got there first.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Shredded] = {}
        self._lock = threading.Lock()
        self.shredding = threading.Lock()
        """Held by each shred of the store and its reckoning: the commit hook and an
        owner's request run one after the other, so what one destroyed is reported once,
        to the request, whichever came first."""

    def add(self, done: Shredded) -> None:
        """Remember what the commit hook destroyed."""
        if not (done.destroyed or done.blobs_deleted):
            return
        with self._lock:
            before = self._pending.get(done.dataset, Shredded(done.dataset, 0, 0))
            self._pending[done.dataset] = Shredded(
                done.dataset,
                before.destroyed + done.destroyed,
                before.blobs_deleted + done.blobs_deleted,
            )

    def take(self, dataset: str) -> Shredded | None:
        """What is waiting to be reported for `dataset`, once."""
        with self._lock:
            return self._pending.pop(dataset, None)


_COUNTS: weakref.WeakKeyDictionary[Store, ShredCounts] = weakref.WeakKeyDictionary()
_COUNTS_LOCK = threading.Lock()


def counts_of(store: Store) -> ShredCounts:
    """The one `ShredCounts` of `store`, for every path that shreds in it: the commit
    hook, an owner's request, and the lazy shred of a route that meets a purged dataset."""
    with _COUNTS_LOCK:
        counts = _COUNTS.get(store)
        if counts is None:
            counts = _COUNTS[store] = ShredCounts()
        return counts


def _destroy(store: Store, vaults: Sequence[Vault], blobs: BlobStore, dataset: str) -> Shredded:
    require_purged(store, dataset)
    destroyed = sum(v.destroy(dataset) for v in vaults)
    deleted = sum(blobs.delete(d) for d in shreddable_digests(store, dataset))
    return Shredded(dataset, destroyed, deleted)


def shred_here(
    store: Store,
    vaults: Sequence[Vault],
    blobs: BlobStore,
    dataset: str,
    counts: ShredCounts | None = None,
) -> Shredded:
    """Destroy the dataset's entries in `vaults` and its blobs in `blobs`, once purged.

    `vaults` are the organisations held here: one on a node, every organisation of
    the consortium on the embedded default. Idempotent: a second call destroys 0.
    The result includes what the commit hook destroyed here and nobody was told yet
    (`counts`, the store's `ShredCounts`: `counts_of(store)` unless given).
    """
    counts = counts_of(store) if counts is None else counts
    with counts.shredding:
        done = _destroy(store, vaults, blobs, dataset)
        before = counts.take(dataset)
    if before is None:
        return done
    return Shredded(
        dataset, done.destroyed + before.destroyed, done.blobs_deleted + before.blobs_deleted
    )


def shred_committed(
    store: Store, vaults: Sequence[Vault], blobs: BlobStore, dataset: str, counts: ShredCounts
) -> Shredded:
    """The commit hook: shred `dataset` (purged on this chain) and remember the counts.

    Returns what this call destroyed; the counts also wait in `counts` for the next
    `shred_here` of the dataset (the owner's tools ask each node after a purge).
    """
    with counts.shredding:
        done = _destroy(store, vaults, blobs, dataset)
        counts.add(done)
    return done


def leftovers(store: Store, vaults: Sequence[Vault], blobs: BlobStore) -> tuple[str, ...]:
    """Purged datasets of which keys, shares or blobs are still here (an interrupted shred)."""
    found = []
    for _, value in StateReader(store).scan("dataset/"):
        if value.get("status") != "purged":
            continue
        ds = str(value["id"])
        if any((v.root / ds).exists() for v in vaults) or any(
            blobs.has(d) for d in shreddable_digests(store, ds)
        ):
            found.append(ds)
    return tuple(found)


def shred_if_purged(store: Store, vault: Vault, blobs: BlobStore, dataset: str) -> bool:
    """The lazy path: shred what is left of `dataset` here if the chain says it is purged.

    Cheap when there is nothing to do (no purge, or nothing left); returns whether the
    dataset is purged.
    """
    if not is_purged(store, dataset):
        return False
    left = (vault.root / dataset).exists() or any(
        blobs.has(d) for d in shreddable_digests(store, dataset)
    )
    if left:  # what it destroys is reported to the owner's next request, as the hook's is
        shred_committed(store, (vault,), blobs, dataset, counts_of(store))
    return True
