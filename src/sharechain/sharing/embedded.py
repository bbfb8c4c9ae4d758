"""The embedded default: a whole development consortium in one data directory.

No server, no extra service. Each call that changes the chain takes the data
directory's lock, orders one block with the solo orderer in this process and
commits it, so several commands run at once on one directory simply wait for
each other; nothing is corrupted or lost. Reads need no lock (SQLite WAL).

Post-commit hook: a block holding a valid `dataset.purge` is followed, still
under the lock, by the shredding of the dataset (every vault entry, inbox
delivery and blob of it held here), whichever command submitted it. A marker
file (`shred-pending`) is written before such a block is ordered and removed
after the shredding, so a process that died in between leaves it behind and
the next `Embedded` opened on the directory finishes the job.

Opening checks the store against its seal (`sharechain.ledger.seal`) before
anything reads it, and every commit moves the seal along in the block's own
SQLite transaction: a row edited in the SQLite file is refused, not believed.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sharechain.contracts import default_registry
from sharechain.contracts.datasets import PURGE
from sharechain.crypto.keyfile import OrgKeys
from sharechain.errors import ChainError, ConfigError, TransactionRejectedError
from sharechain.ledger.blocks import decode_block
from sharechain.ledger.chain import Ledger
from sharechain.ledger.contract import ContractRegistry
from sharechain.ledger.seal import StateSealer, check_sealed, read_seal, reseal, seal_key
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import SignedTransaction, decode_transaction, sign_transaction
from sharechain.ledger.verify import verify_ledger
from sharechain.ordering.solo import Receipt, order_block
from sharechain.sharing.shredding import Shredded, counts_of, leftovers, shred_committed
from sharechain.storage.blobs import BlobStore
from sharechain.storage.datadir import DataDir
from sharechain.storage.vault import Inbox, Vault

__all__ = ["Embedded"]

_PURGE_MARK = PURGE.encode()
"""How a purge shows in a transaction's raw bytes (a cheap test before decoding)."""


class Embedded:
    """A data directory opened for reading and for submitting transactions."""

    def __init__(
        self,
        path: Path,
        *,
        registry: ContractRegistry | None = None,
        now: Callable[[], float] = time.time,
        rng: Callable[[int], bytes] = os.urandom,
        check_store: bool = True,
    ) -> None:
        """Open `path`; with `check_store` (always, except for the tools that verify or
        repair a store themselves: `chain verify`, `chain export`) the store is
        checked against its seal first and refused if it does not match."""
        self.datadir = DataDir.open(path)
        self._checked = check_store
        self.registry = registry or default_registry()
        self.now = now
        self.rng = rng
        self.store = Store(self.datadir.db_path)
        self.ledger = Ledger(self.store, self.registry)
        self._keys: dict[str, OrgKeys] = {}
        self.shred_counts = counts_of(self.store)
        """What the commit hook shredded and no `shred_here` reported yet."""
        if self.store.head() is None:
            with self.locked():
                if self.store.head() is None:
                    self._commit_genesis()
        self._check_genesis()
        if check_store:
            with self.locked():
                self._check_store()
        if self.datadir.shred_marker.exists():
            with self.locked():
                self._finish_shredding()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Embedded:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _commit_genesis(self) -> None:
        data = self.datadir.genesis_bytes()
        block = decode_block(data)
        if block.hash() != self.datadir.genesis_hash:
            raise ConfigError("genesis.cbor does not match the genesis hash in consortium.json")
        self.store.sealer = StateSealer(self._seal_key())
        self.ledger.commit(block, data=data)

    def _seal_key(self) -> bytes:
        """The key of the store's seal: beside `ledger.db`, created on first use."""
        key = seal_key(self.store, rng=self.rng)
        assert key is not None  # created when missing
        return key

    def _check_store(self) -> None:
        """Check the store against its seal before anything reads it (locked; see `ledger.seal`).

        A store never sealed (older than seals), sealed by the first version
        or behind its head (a node committed blocks here) is verified in full
        once, then sealed. Then the store's sealer moves the seal with each block.
        """
        key = self._seal_key()
        seal = read_seal(self.store, key)
        head = self.store.head()
        assert head is not None  # genesis is committed
        if seal is not None and seal.height >= head.height:
            check_sealed(self.store, seal, key)
            self.store.sealer = StateSealer(key)
            return
        report = verify_ledger(self.store, self.registry, genesis_hash=self.datadir.genesis_hash)
        if not report.ok:
            raise ChainError(
                f"the ledger database {self.datadir.db_path} failed verification at height "
                f"{report.bad_height}: {report.reason}. Nothing was read from it; run "
                f"`sharechain node repair --data-dir {self.datadir.path}` to move it aside "
                "(or restore it from a backup)",
                report.bad_height,
            )
        reseal(self.store, key)
        self.store.sealer = StateSealer(key)

    def _check_genesis(self) -> None:
        meta = self.store.block_meta(0)
        if meta is None or meta.hash != self.datadir.genesis_hash:
            raise ChainError(
                f"{self.datadir.db_path} holds a different chain than this consortium's genesis",
                0,
            )

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the data directory's block-production lock (waits for other processes)."""
        fd = os.open(self.datadir.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def keys(self, org: str) -> OrgKeys:
        if org not in self._keys:
            self._keys[org] = self.datadir.keys(org)
        return self._keys[org]

    def sign(self, org: str, type: str, payload: Mapping[str, Any]) -> SignedTransaction:
        return sign_transaction(
            self.keys(org).signing, type, org, payload, now=self.now, rng=self.rng
        )

    def submit_raw(self, raws: Sequence[bytes], *, orderer: str) -> list[Receipt]:
        """Order `raws` into one block, signed by `orderer`'s key, and commit it.

        A valid purge in the block is shredded before this returns (the hook above).
        """
        if not self._checked:
            # Sealing a block onto a store nobody checked would vouch for its rows.
            raise ConfigError(
                "this data directory was opened without checking its store (for "
                "verification only); open it normally to submit transactions"
            )
        purging = any(_PURGE_MARK in raw for raw in raws)
        with self.locked():
            if purging:
                self.datadir.shred_marker.touch()
            _, _, receipts = order_block(
                self.ledger,
                list(raws),
                orderer=orderer,
                key=self.keys(orderer).signing,
                now=self.now,
            )
            if purging:
                for raw, receipt in zip(raws, receipts, strict=True):
                    if receipt.ok and _PURGE_MARK in raw:
                        stx = decode_transaction(raw)
                        if stx.tx.type == PURGE:
                            self.shred(str(stx.tx.payload["dataset"]))
                self.datadir.shred_marker.unlink(missing_ok=True)
        return receipts

    def shred(self, dataset: str) -> Shredded:
        """Destroy what is held here of `dataset`, purged on this chain (the commit hook).

        The counts are also reported by the next `shredding.shred_here` of it.
        """
        vaults = [Vault(self.datadir.path, self.keys(org)) for org in self.datadir.held_orgs()]
        done = shred_committed(
            self.store, vaults, BlobStore(self.datadir.blob_dir), dataset, self.shred_counts
        )
        for org in self.datadir.held_orgs():
            Inbox(self.datadir.path, org).clear(dataset)
        return done

    def _finish_shredding(self) -> None:
        """A process died between a purge's commit and its shredding: finish it (locked)."""
        vaults = [Vault(self.datadir.path, self.keys(org)) for org in self.datadir.held_orgs()]
        for dataset in leftovers(self.store, vaults, BlobStore(self.datadir.blob_dir)):
            self.shred(dataset)
        self.datadir.shred_marker.unlink(missing_ok=True)

    def submit(
        self, org: str, type: str, payload: Mapping[str, Any], *, check: bool = True
    ) -> Receipt:
        """Sign as `org`, order and commit; raise `TransactionRejectedError` unless valid."""
        stx = self.sign(org, type, payload)
        (receipt,) = self.submit_raw([stx.raw], orderer=self._orderer_for(org))
        if check and not receipt.ok:
            raise TransactionRejectedError(receipt.code, receipt.reason, receipt.tx_id)
        return receipt

    def _orderer_for(self, org: str) -> str:
        # The sender orders its own block when it may; a removed organisation's
        # transaction is still ordered (and recorded as refused) by another.
        me = self.ledger.organisation(org)
        if me is not None and me.active:
            return org
        for other in self.datadir.held_orgs():
            o = self.ledger.organisation(other)
            if o is not None and o.active:
                return other
        raise ConfigError("no active organisation's key is held here to order blocks")
