"""A running organisation's node: its ledger, its ordering role, its peers.

`Node` owns the peer's store and ledger and the one commit path every block
goes through (`_commit`), whichever way it arrived: built here, streamed from
the solo orderer, or read from the etcd log. Every block received is fully
validated before it is committed; after each commit the node signs an
attestation and wakes whoever waits for the transactions it holds.

Ordering roles (see `sharechain.node.replication` for the loops):

- `solo` orderer: submissions queue here; a builder thread cuts blocks by
  size or time, executes, signs and commits them.
- `solo` follower: submissions are forwarded to the orderer; blocks stream
  from it (`/v1/sync/blocks`, long-polled) and are validated and committed.
- `etcd`: one node, the holder of the etcd leader lease
  (`sharechain.ordering.etcd_lease`), builds blocks and appends them to the
  etcd log with compare-and-set; the others batch their submissions and
  forward them to it. All nodes commit blocks from the log's watch stream.
  Should two nodes both believe they lead, the compare-and-set still lets
  only one block in per height; the loser re-queues its transactions that
  the winner's block does not hold.

On start the node checks its store (`sharechain.node.store_check`); a store that
fails is quarantined: the API answers 503 with the reason until the store is
repaired (`sharechain node repair` moves it aside; the next start re-syncs
from the peers).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from sharechain.api.auth import NonceCache
from sharechain.contracts import default_registry
from sharechain.crypto.keyfile import OrgKeys
from sharechain.errors import ChainError, ConfigError, OrderingError, SharechainError
from sharechain.ledger.attestations import AttestationBook, Conflict
from sharechain.ledger.blocks import Block, decode_block
from sharechain.ledger.blocktime import BlockClock
from sharechain.ledger.chain import Execution, Ledger
from sharechain.ledger.contract import ContractRegistry
from sharechain.ledger.identities import Organisation, org_key
from sharechain.ledger.quarantine import AttestationJudge
from sharechain.ledger.refusals import RefusalBook
from sharechain.ledger.store import Store
from sharechain.node import catching_up, status
from sharechain.node.catching_up import CatchUp
from sharechain.node.config import ORDERING_MODES, NodeConfig
from sharechain.node.evidence import DEFAULT_EVIDENCE_BYTES, Evidence
from sharechain.node.follow_pipeline import FollowPipeline, Stream
from sharechain.node.loops import supervise
from sharechain.node.members import Members
from sharechain.node.metrics import NodeMetrics
from sharechain.node.repair import repair_store
from sharechain.node.snapshot_maker import DEFAULT_EVERY, SnapshotMaker
from sharechain.node.store_check import damaged_store, store_problem
from sharechain.ordering.etcd_lease import Leader
from sharechain.ordering.solo import Receipt
from sharechain.ordering.waiting import Waiters
from sharechain.storage.datadir import DataDir
from sharechain.storage.diskspace import (
    CHECK_SECONDS,
    DEFAULT_RESERVE,
    DiskFullError,
    DiskGuard,
    is_disk_full,
    wal_crowds,
)
from sharechain.storage.keyring import KeyRing
from sharechain.storage.snapshot import snapshot_base

__all__ = ["ORDERING_MODES", "Node", "NodeConfig", "repair_store"]

log = logging.getLogger("sharechain.node")

_TRIM_PAUSE = 5.0
"""Seconds between two truncations of the write-ahead log by the disk watch."""


class Node:
    """One organisation's peer. Thread-safe; `start()` then `stop()`."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        registry: ContractRegistry | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.org = config.org
        self.now = now
        self.datadir = DataDir.open(config.data_dir)
        self.keyring = KeyRing(self.datadir, config.org)
        self.registry = registry or default_registry()
        self.metrics = NodeMetrics.create()
        self.disk = DiskGuard(
            self.datadir.path,
            self.datadir.int_setting("disk_reserve_bytes", DEFAULT_RESERVE),
            self.metrics.registry,
        )
        """Whether the data directory's disk is full (the node then takes no work)."""
        self.datadir.int_setting("replica_quota_bytes", 0)  # checked now; read by the upkeep
        self.evidence = Evidence(
            self.datadir.path / "evidence",
            self.datadir.int_setting("evidence_bytes", DEFAULT_EVIDENCE_BYTES),
            self.disk.reserve,
        )
        """Where the node keeps the members' signed blocks it voided (`node.evidence`)."""
        self.store = self._open_store()
        self.ledger = Ledger(
            self.store,
            self.registry,
            clock=BlockClock(
                now,
                config.max_clock_skew,
                live=lambda: self.caught_up,
                settled=lambda h: (h.height, h.timestamp) in self.settled_times,
            ),
        )
        self.voided = -1
        """The last height whose value in the etcd log this node refused and voided."""
        self.settled_times: set[tuple[int, int]] = set()
        """(height, time) of uncertain blocks this node waited for and then committed
        (`node.arrivals`): their distance from its clock is not held to the bound again."""
        self.nonces = NonceCache()
        self.book = AttestationBook(self.org, self.keys.signing, self.store.block_meta)
        self.refusals = RefusalBook(self.org, lambda: self.keys.signing)
        """Members' blocks this node refused, signed, and its peers' (`node.arrivals`)."""
        self.judge = AttestationJudge(
            self.org, len(config.peers) + 1, self._quarantine, self._report_suspect
        )
        self.problem: str | None = None
        """Why the store is quarantined (None when it verified)."""
        self.halted: str | None = None
        """Why the node stopped committing (a conflicting attestation or a bad block)."""
        self.caught_up = False
        """True once the node has caught up with its ordering service after start."""
        self.catching_up: CatchUp | None = None
        """How far it has come while it catches up (`node.catching_up`), else None."""
        self.peer_heights: dict[str, int] = {}
        self.peer_errors: dict[str, str] = {}
        self.poll_rounds = 0
        """Rounds of polls of every peer completed since start (`node.vouching` waits for one)."""
        self.etcd_alarms: tuple[str, ...] = ()
        """Alarms etcd raised (NOSPACE: quota reached), described; see `node.compaction`."""
        self.stop_event = threading.Event()
        self.commit_lock = threading.Lock()
        self.new_block = threading.Condition()
        self.queue: deque[bytes] = deque()
        self.queue_cond = threading.Condition()
        self.queued_at = 0.0
        """Monotonic time the oldest transaction in `queue` arrived (blocks are cut by its age)."""
        self.waiters = Waiters()
        self._threads: list[threading.Thread] = []
        self._closers: list[Callable[[], None]] = []
        self.forward: Callable[[Sequence[bytes]], None] | None = None
        """solo follower: sends submissions to the orderer (None: queue them here)."""
        self.last_appended: tuple[int, bytes, Block, Execution] | None = None
        """etcd: the block this node last appended, so the watch need not re-validate it."""
        self.log_is_mine = False
        """etcd: True while this node leads and its last append won the head of the log:
        it committed every block up to there itself, so its watch can pause."""
        self.watch_paused = False
        """etcd: True while the watch rests (see `log_is_mine`)."""
        self.leader: Leader | None = None
        """etcd: who holds the leader lease, as last seen (None: nobody, or not known yet)."""
        self.may_lead = True
        """etcd: False once this node's block builder died: it gave up the leader lease
        and does not campaign again (another node builds the blocks)."""
        self.election_error: str | None = None
        """etcd: why the leader key could not be read or renewed (None when it could)."""
        self.members = Members(self.ledger.organisation)
        """Organisation records as of the last commit, cached (`sharechain.node.members`)."""
        self.pipeline = FollowPipeline()
        """Validates arriving blocks through the ledger's pipeline once started."""
        self.commit_times: deque[tuple[int, float]] = deque(maxlen=64)
        """(height, wall-clock time) of the latest commits, for end-to-end latency figures."""
        self._ensure_genesis()
        self.snapshot_base = snapshot_base(self.store)
        """The height this node's store was loaded from a snapshot at (None: it has every block)."""
        self.snapshots = SnapshotMaker(
            self.datadir.db_path,
            self.datadir.path / "snapshots",
            self.org,
            lambda: self.keys.signing,
            self.datadir.genesis_hash,
            self.datadir.int_setting("snapshot_blocks", DEFAULT_EVERY),
        )

    # -- life cycle -----------------------------------------------------------

    def _open_store(self) -> Store:
        """The ledger store, opened with the disk's spare given up if it is too full
        for SQLite to create the `-shm` and `-wal` files (another program filled it
        while the node was down): the node then starts, takes no work, and resumes
        when space returns. Without a spare to give, a `DiskFullError` that says so,
        not the store's own advice to restore a damaged file."""
        try:
            return Store(self.datadir.db_path)
        except ConfigError as exc:
            short = self.disk.check()
            if short is None:
                raise
            if self.disk.make_room():
                with contextlib.suppress(ConfigError):
                    return Store(self.datadir.db_path)
            raise DiskFullError(
                f"cannot open the ledger database {self.datadir.db_path}: {short}. The "
                f"node could not start ({exc.__cause__ or exc}); free space there and start "
                "it again"
            ) from exc

    def _ensure_genesis(self) -> None:
        if self.store.head() is None:
            data = self.datadir.genesis_bytes()
            block = decode_block(data)
            if block.hash() != self.datadir.genesis_hash:
                raise ConfigError("genesis.cbor does not match the genesis hash in consortium.json")
            self.ledger.commit(block, data=data)
        meta = self.store.block_meta(0)
        if meta is None or meta.hash != self.datadir.genesis_hash:
            raise ChainError(f"{self.datadir.db_path} holds another consortium's chain", 0)

    @property
    def is_orderer(self) -> bool:
        return self.config.ordering == "solo" and self.config.orderer_url is None

    def start(self) -> None:
        """Verify the store, then start the ordering role and the peer poller."""
        from sharechain.node import replication  # the loops: layers stay flat
        from sharechain.ordering import compaction

        self.problem = store_problem(self)
        if self.problem is not None:
            log.error("ALERT %s", self.problem)
            self.metrics.ready.set(0)
            return
        head = self.ledger.height
        self.metrics.height.set(head)
        if head >= 0:
            meta = self.store.head()
            if meta is not None:
                self.book.attest(meta)
        # Before anything else opens a database here: a node stopped while its WAL
        # filled the disk could not create the others' (`sharechain node start`
        # exited, and a supervisor restarting it met the same full disk for ever).
        self._check_disk()
        replication.start_roles(self)
        compaction.start(self)
        self.spawn("disk-watch", self._watch_disk)
        self.spawn("key-watch", self._watch_key)
        self.metrics.ready.set(1)

    def spawn(self, name: str, target: Callable[[], None]) -> None:
        """Run `target` on a thread of its own until the node stops, restarted if it
        fails (`sharechain.node.loops.supervise`)."""
        self._threads.append(supervise(self.org, name, target, self.stop_event, self.loop_failed))

    def loop_failed(self, exc: BaseException) -> None:
        """A loop failed: a store SQLite finds damaged quarantines the node (`damaged_store`)."""
        if self.problem is not None:
            return
        try:
            reason = damaged_store(self, exc)
        except Exception:  # describing the files must never take the loop down with it
            log.exception("could not describe the ledger database's files")
            return
        if reason is not None:
            self._quarantine(reason)

    def on_close(self, closer: Callable[[], None]) -> None:
        self._closers.append(closer)

    def stop(self) -> None:
        """Stop the loops, fail whatever still waits, close connections and the store."""
        self.stop_event.set()
        with self.queue_cond:
            self.queue_cond.notify_all()
        with self.new_block:
            self.new_block.notify_all()
        for thread in self._threads:
            thread.join(timeout=15)
        for closer in self._closers:
            closer()
        self.snapshots.close()
        self.waiters.fail_all(OrderingError("the node stopped before the transaction committed"))
        with self.commit_lock:
            self.store.close()

    # -- keys -----------------------------------------------------------------

    @property
    def keys(self) -> OrgKeys:
        """The organisation's keys; replaced when it rotates them (`refresh_keys`)."""
        return self.keyring.keys

    @property
    def keys_generation(self) -> int:
        """Counts key replacements: loops holding signed clients rebuild them when it moves."""
        return self.keyring.generation

    def refresh_keys(self) -> bool:
        """Pick up a rotated key without a restart (see `KeyRing`); True if it did."""
        if not self.keyring.refresh(self.organisation(self.org)):
            return False
        self.book.rekey(self.keys.signing)
        return True

    def adopt_file_keys(self) -> bool:
        """The orderer refused this node's key: take the key file's if they differ
        (`KeyRing.adopt_file_keys`); True if it did."""
        if not self.keyring.adopt_file_keys():
            return False
        self.book.rekey(self.keys.signing)
        return True

    def _watch_disk(self) -> None:
        trimmed = 0.0
        while not self.stop_event.wait(CHECK_SECONDS):
            if self._check_disk(trim=time.monotonic() - trimmed > _TRIM_PAUSE):
                trimmed = time.monotonic()

    def _check_disk(self, trim: bool = True) -> bool:
        """`DiskGuard.check`, and with `trim` the write-ahead log given back when it
        crowds the disk (`wal_crowds`); whether it tried to give it back."""
        wal = self.store.wal_bytes()
        full = self.disk.check(wal) is not None
        if not trim or not wal_crowds(wal, self.disk.free, full):
            return False
        freed = self._shrink_wal()
        if freed:
            log.warning(
                "gave back the write-ahead log's %d MiB to a disk running short (%s bytes free)",
                freed >> 20,
                self.disk.free,
            )
            self.disk.check()
        return True

    def _shrink_wal(self) -> int:
        """`Store.shrink_wal`, with the disk's spare given up when the copy needs room."""
        for attempt in range(2):
            try:
                return self.store.shrink_wal()
            except sqlite3.Error as exc:
                if attempt == 0 and is_disk_full(exc) and self.disk.release_spare():
                    log.warning("gave up the disk's spare to copy the write-ahead log back")
                    continue
                log.warning("could not give back the write-ahead log: %s", exc)
        return 0

    def _watch_key(self) -> None:
        while not self.stop_event.wait(self.config.key_check_interval):
            self.refresh_keys()

    # -- state ----------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.problem is None and self.halted is None and not self.stop_event.is_set()

    # Who is who: thin doors onto `self.members` (the API's guard and routes use them).

    def public_key(self, org: str) -> bytes | None:
        return self.members.public_key(org)

    def request_key(self, org: str) -> bytes | None:
        return self.members.request_key(org)

    def removed_reason(self, org: str) -> str | None:
        return self.members.removed_reason(org)

    def refused_share(self, org: str) -> None:
        self.metrics.member_refusals.labels(org).inc()

    def roles(self, org: str) -> tuple[str, ...]:
        return self.members.roles(org)

    def organisation(self, org: str) -> Organisation | None:
        return self.members.organisation(org)

    def halt(self, reason: str) -> None:
        """Stop committing for good (until an operator intervenes) and raise an alert."""
        if self.halted is None:
            self.halted = reason
            self.metrics.ready.set(0)
            log.error("ALERT node %s stopped committing: %s", self.org, reason)

    def on_conflict(self, conflict: Conflict) -> None:
        """A peer's attestation disagrees with ours: quarantine ourselves or report it."""
        self.metrics.attestation_conflicts.set(len(self.book.conflicts))
        self.judge.review(self.book.conflicts)

    def _quarantine(self, reason: str) -> None:
        # Like a store that failed verification: its state is wrong, so it serves
        # nothing but health, readiness and metrics until repaired.
        self.halt(reason)
        self.problem = self.problem or reason

    def _report_suspect(self, peer: str, suspect: bool) -> None:
        self.metrics.attestation_suspect.labels(peer).set(1 if suspect else 0)

    # -- submitting -------------------------------------------------------------

    def submit(self, raws: Sequence[bytes]) -> list[Future[Receipt]]:
        """Queue signed transactions; each future resolves when its block commits here."""
        batch = self.submit_batch(raws)
        futures: list[Future[Receipt]] = [Future() for _ in raws]

        def settle(done: Future[list[Receipt]]) -> None:
            exc = done.exception()
            for i, fut in enumerate(futures):
                if exc is not None:
                    fut.set_exception(exc)
                else:
                    fut.set_result(done.result()[i])

        batch.add_done_callback(settle)
        return futures

    def submit_batch(self, raws: Sequence[bytes]) -> Future[list[Receipt]]:
        """Queue signed transactions; the future resolves once all of them committed here.

        One future per batch rather than per transaction: at thousands of
        transactions per second, per-transaction futures (and their wake-ups
        of the API's event loop) cost the leader as much CPU as building blocks.
        """
        if not self.ready:
            raise OrderingError(self.problem or self.halted or "the node is stopping")
        self.disk.refuse()
        ids = [hashlib.sha256(r).digest() for r in raws]
        known = self.store.known_txs(ids)
        t = time.monotonic()
        wait, fresh = self.waiters.add(raws, ids, known, self.receipt, t)
        if fresh:
            if self.forward is not None:
                try:
                    self.forward(fresh)
                except SharechainError:
                    self.waiters.drop([hashlib.sha256(r).digest() for r in fresh])
                    raise
            else:
                with self.queue_cond:
                    if not self.queue:
                        self.queued_at = t
                    self.queue.extend(fresh)
                    self.queue_cond.notify()
        return wait.future

    def fail(self, raws: Sequence[bytes], exc: BaseException) -> None:
        """Fail the waiters of `raws` (the ordering service refused them)."""
        self.waiters.fail(raws, exc)

    def still_pending(self, raws: Sequence[bytes]) -> list[bytes]:
        return self.waiters.pending(raws)

    def receipt(self, tx_id: bytes) -> Receipt:
        """The receipt of a committed transaction (NotFoundError-free: caller checked)."""
        info = self.tx_info(tx_id)
        if info is None:
            raise ChainError(f"transaction {tx_id.hex()} vanished from the store")
        return Receipt(tx_id, info["height"], info["index"], info["code"], info["reason"])

    def tx_info(self, tx_id: bytes) -> dict[str, Any] | None:
        return status.tx_info(self, tx_id)

    # -- the one commit path ------------------------------------------------------

    def commit(self, block: Block, data: bytes, execution: Execution | None = None) -> None:
        """Validate (unless built here) and commit `block`; caller holds `commit_lock`."""
        self.commit_many([(block, data, execution)])

    def commit_many(
        self, blocks: Sequence[tuple[Block, bytes, Execution | None]], stream: Stream | None = None
    ) -> None:
        """Validate (each block unless built here) and commit `blocks` in one store transaction.

        `stream`: the block pipeline over a backlog these blocks are the next
        of (`FollowPipeline.stream`), which validates them; without one, each
        block is validated the plain way (`Ledger.commit`).

        Caller holds `commit_lock`. Each block is validated against the ones
        before it, inside the transaction. Nothing is announced (receipts,
        attestations, metrics) before the transaction is durable. If a block
        fails, the blocks before it are committed and announced, then its
        `ChainError` is raised. Meanwhile other threads read the store as last
        committed (`Store.group`).
        """
        if self.halted is not None:
            raise ChainError(
                f"not committing: {self.halted}", blocks[0][0].height if blocks else None
            )
        done: list[tuple[Block, Execution, float]] = []
        failure: ChainError | None = None
        try:
            # One block alone needs no group: `commit_block` is one transaction already.
            with self.store.group() if len(blocks) > 1 else contextlib.nullcontext():
                first = 0
                if stream is not None:
                    first, failure = stream.take(len(blocks), done)
                for block, data, execution in blocks[first:] if failure is None else ():
                    started = time.perf_counter()
                    try:
                        ex = self.ledger.commit(block, execution, data)
                    except ChainError as exc:
                        failure = exc
                        break
                    done.append((block, ex, time.perf_counter() - started))
        except (OSError, sqlite3.Error) as exc:
            # SQLite rolled the transaction back: the store is at its last block.
            if self.disk.note(exc):
                raise DiskFullError(self.disk.full or str(exc)) from None
            raise
        for block, ex, seconds in done:
            self._announce(block, ex, seconds)
        if failure is not None:
            raise failure

    def _announce(self, block: Block, ex: Execution, seconds: float) -> None:
        """Tell everyone a durable block is here: metrics, attestation, receipts, waiters."""
        self.members.forget(ex.writes)
        if org_key(self.org) in ex.writes:
            self.refresh_keys()  # our own record changed: perhaps a rotation
        self.metrics.block_commit_seconds.observe(seconds)
        head = self.store.block_meta(block.height)
        assert head is not None  # committed
        self.metrics.height.set(head.height)
        self.commit_times.append((head.height, self.now()))
        counts: dict[str, int] = {}
        for r in block.results:
            counts[r.code] = counts.get(r.code, 0) + 1
        for code, n in counts.items():
            self.metrics.transactions.labels(code).inc(n)
        self.book.attest(head)
        self.snapshots.committed(head.height)  # under the commit lock: sees this height alone
        self.waiters.settle(block, self.metrics.tx_latency_seconds.observe)
        if (progress := self.catching_up) is not None:
            progress.advance(block.height, len(block.txs))
            catching_up.show(self, progress)
        with self.new_block:
            self.new_block.notify_all()
        conflict = self.book.recheck()
        if conflict is not None:
            self.on_conflict(conflict)

    def wait_height(self, height: int, timeout: float) -> bool:
        """Wait until the local head reaches `height`; False on timeout, on stop, or
        once the value the log held at `height` was voided (`voided`)."""
        deadline = time.monotonic() + timeout
        with self.new_block:
            while self.ledger.height < height:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.stop_event.is_set() or self.voided == height:
                    return False
                self.new_block.wait(min(remaining, 0.5))
        return True

    def note_voided(self, height: int) -> None:
        """The value the etcd log held at `height` was refused and voided: the height is
        free again, and a builder waiting for it appends there at once."""
        with self.new_block:
            self.voided = height
            self.new_block.notify_all()

    def status(self) -> dict[str, Any]:
        return status.node_status(self)

    def attestation_status(self) -> dict[str, Any]:
        return status.attestation_status(self)
