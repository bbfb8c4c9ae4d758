"""The embedded default's post-commit hook: a committed purge is shredded in the same call."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from sharechain.crypto.keyfile import OrgKeys
from sharechain.ordering.solo import order_block
from sharechain.sharing.embedded import Embedded
from sharechain.sharing.plane import Plane
from sharechain.sharing.records import Listing, Published
from sharechain.sharing.shredding import (
    ShredCounts,
    counts_of,
    shred_committed,
    shred_here,
    shred_if_purged,
)
from sharechain.storage.blobs import BlobStore
from sharechain.storage.datadir import DataDir, OrgSpec, init_consortium
from sharechain.storage.vault import Vault

ORGS = (
    OrgSpec("hospital-a", ("member", "admin")),
    OrgSpec("insurer", ("member",)),
    OrgSpec("regulator", ("member", "supervisor", "admin")),
)


def _published(tmp_path: Path) -> tuple[Path, Published]:
    init_consortium(tmp_path / "c", ORGS)
    src = tmp_path / "records.csv"
    src.write_bytes(os.urandom(150_000))
    with Plane.local(tmp_path / "c") as plane:
        pub = plane.publish("hospital-a", src, Listing(title="records", custody="threshold"))
    return tmp_path / "c", pub


def _held(path: Path, pub: Published) -> tuple[int, bool]:
    """(vault entries over every organisation, blob present), without opening `Embedded`."""
    dd = DataDir.open(path)
    entries = sum(len(Vault(path, dd.keys(o.id)).entries()) for o in ORGS)
    return entries, BlobStore(path / "blobs").has(pub.digests.ciphertext_sha256)


def test_a_purge_submitted_any_way_is_shredded_when_it_commits(tmp_path: Path) -> None:
    path, pub = _published(tmp_path)
    assert _held(path, pub) == (3, True)  # the owner's key and two shares; the blob
    with Plane.local(path) as plane:
        emb = plane.embedded
        assert emb is not None
        # Not `sharing.purge`: just the transaction; the commit hook shreds.
        receipt = emb.submit("regulator", "dataset.purge", {"dataset": pub.dataset})
        assert receipt.ok
        assert not emb.datadir.shred_marker.exists()
        assert _held(path, pub) == (0, False)
        # The owner's report (same store) still counts what the hook destroyed.
        first = plane.shred("hospital-a", pub.dataset, receipt.tx_id)
        assert (first.keys_destroyed, first.blobs_deleted) == (3, 1)
        again = plane.shred("hospital-a", pub.dataset, receipt.tx_id)
        assert (again.keys_destroyed, again.blobs_deleted) == (0, 0)


def test_a_refused_purge_shreds_nothing(tmp_path: Path) -> None:
    path, pub = _published(tmp_path)
    with Embedded(path) as emb:
        assert not emb.submit("insurer", "dataset.purge", {"dataset": pub.dataset}, check=False).ok
        assert not emb.datadir.shred_marker.exists()
    assert _held(path, pub) == (3, True)


def test_a_crash_between_commit_and_shredding_is_finished_on_open(tmp_path: Path) -> None:
    path, pub = _published(tmp_path)
    with Embedded(path) as emb:
        # What a process killed right after the commit leaves: the purge on the chain,
        # the marker, and every key and blob still on disk.
        emb.datadir.shred_marker.touch()
        stx = emb.sign("hospital-a", "dataset.purge", {"dataset": pub.dataset})
        order_block(emb.ledger, [stx.raw], orderer="hospital-a", key=emb.keys("hospital-a").signing)
    assert _held(path, pub) == (3, True)
    with Embedded(path) as emb:  # the next command on the directory finishes the job
        assert not emb.datadir.shred_marker.exists()
    assert _held(path, pub) == (0, False)


class _SlowVault(Vault):
    """A vault whose shred takes a while, so that a second shred starts in the middle."""

    def __init__(self, data_dir: Path, keys: OrgKeys, started: threading.Event) -> None:
        super().__init__(data_dir, keys)
        self._started = started

    def destroy(self, dataset: str, epoch: int | None = None) -> int:
        self._started.set()
        time.sleep(0.3)
        return super().destroy(dataset, epoch)


def test_a_request_beside_the_commit_hook_reports_every_key_once(tmp_path: Path) -> None:
    path, pub = _published(tmp_path)
    with Embedded(path) as emb:
        # The purge on the chain, its keys still here (as if the hook had not run yet).
        stx = emb.sign("hospital-a", "dataset.purge", {"dataset": pub.dataset})
        order_block(emb.ledger, [stx.raw], orderer="hospital-a", key=emb.keys("hospital-a").signing)
        started = threading.Event()
        vaults = [_SlowVault(path, emb.keys(o.id), started) for o in ORGS]
        blobs = BlobStore(path / "blobs")
        counts = ShredCounts()
        hook = threading.Thread(
            target=shred_committed, args=(emb.store, vaults, blobs, pub.dataset, counts)
        )
        hook.start()
        started.wait(5)
        # The owner's request arrives while the hook is shredding: it waits for the hook
        # and reports what the hook destroyed (before, it missed what the hook took).
        asked = shred_here(emb.store, vaults, blobs, pub.dataset, counts)
        hook.join()
        assert (asked.destroyed, asked.blobs_deleted) == (3, 1)
        assert shred_here(emb.store, vaults, blobs, pub.dataset, counts).destroyed == 0
    assert _held(path, pub) == (0, False)


def test_what_a_lazy_shred_destroyed_is_reported_to_the_owner_s_request(tmp_path: Path) -> None:
    path, pub = _published(tmp_path)
    with Embedded(path) as emb:
        stx = emb.sign("hospital-a", "dataset.purge", {"dataset": pub.dataset})
        order_block(emb.ledger, [stx.raw], orderer="hospital-a", key=emb.keys("hospital-a").signing)
        blobs = BlobStore(path / "blobs")
        vaults = [Vault(path, emb.keys(o.id)) for o in ORGS]
        # A route meets the purged dataset before anyone asked (the lazy path), one
        # organisation's vault at a time, as a node holds one.
        assert all(shred_if_purged(emb.store, v, blobs, pub.dataset) for v in vaults)
        asked = shred_here(emb.store, vaults, blobs, pub.dataset, counts_of(emb.store))
        assert (asked.destroyed, asked.blobs_deleted) == (3, 1)
    assert _held(path, pub) == (0, False)
