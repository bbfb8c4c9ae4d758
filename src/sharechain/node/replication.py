"""The loops that order and replicate blocks between nodes.

- `builder`: cuts the node's queue into batches by size or time. In `solo`
  mode it commits them as blocks directly. In `etcd` mode the leader (see
  `elector`) appends each block to the log at `head + 1` with
  compare-and-set (`EtcdLog.append`) and commits it if it won; on losing
  (two nodes believed they led), it waits for the winner's block to arrive
  through the watch and puts back the transactions the winner did not hold.
  Other nodes forward each batch to the leader and wait for its answer, so
  the leader's "no etcd quorum" reaches their submitters; a batch whose
  leader died is queued again and goes to the next leader.
- `elector` (etcd): holds or watches the leader key (`etcd_lease.Election`):
  the leader renews its lease every TTL/4; the others read the key every
  0.5 s and campaign when it is gone, so a dead leader is replaced within
  about the TTL (2 s).
- `etcd_watcher`: follows the etcd log from the local height (catching up
  first, also after compaction) and commits each block after validating it
  (except the leader's own blocks, which it executed when it built them).
  The log is read ahead on a thread of its own, so a node that fell behind
  sees its backlog and commits up to 4 blocks in one store transaction
  (`apply_remote_blocks`): one COMMIT and one fsync instead of four.
  While this node leads and its last append won the head of the log, the
  watch pauses: every block up to the head is one it committed itself, and
  reading them back cost it (and etcd, which serialises each event once per
  watcher) CPU for nothing. A lost race, a failed append, a peer reporting a
  greater height or another leader resumes it.
- `follower`: in `solo` mode, long-polls the orderer's `/v1/sync/blocks`.
- `peer_poller`: asks each peer for its status every `poll_interval`
  seconds: heights for the metrics, attestations for fork detection.

Every loop is bounded by the node's stop event and backs off on errors.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx

from sharechain.api.client import NodeClient
from sharechain.errors import ChainError, EncodingError, OrderingError, SharechainError
from sharechain.ledger.attestations import Attestation
from sharechain.ledger.blocks import Block, decode_block, encode_block
from sharechain.ledger.chain import Execution
from sharechain.node.service import Node
from sharechain.ordering.etcd_lease import Election
from sharechain.ordering.etcd_log import EtcdLog

__all__ = ["apply_remote", "apply_remote_blocks", "catch_up_from_peers", "start_roles"]

log = logging.getLogger("sharechain.node")

_LOST_RACE_WAIT = 10.0
_FOLLOW_POLL = 0.5
"""Seconds between a follower's reads of the leader key."""
_FORWARD_TIMEOUT = 30.0
_ELECTION_PATIENCE = 3.0
"""Seconds the leader key may stay unreadable before batches with no leader fail."""
_PAUSE_POLL = 0.05
"""Seconds between a paused watch's checks whether it must resume."""
_GROUP_BLOCKS = 4
"""At most this many blocks of a backlog commit in one store transaction..."""
_GROUP_TXS = 2000
"""...and a group takes no block once it holds this many transactions (receipts of
its first block wait for the whole group)."""


def start_roles(node: Node) -> None:
    """Start the loops the node's configuration asks for."""
    cfg = node.config
    if cfg.ordering == "etcd":
        etcd = EtcdLog(
            cfg.etcd_endpoints,
            prefix=cfg.etcd_prefix,
            timeout=5.0,
            max_block_bytes=cfg.max_block_bytes,
            page_size=16,
            watch_idle_timeout=2.0,
        )
        node.on_close(etcd.close)
        _ensure_genesis_in_log(node, etcd)
        # Lease renewals must not queue behind slow appends, and must give up
        # well within the TTL: a connection of their own, a short timeout.
        election = Election(
            EtcdLog(cfg.etcd_endpoints, prefix=cfg.etcd_prefix, timeout=2.0, page_size=1)
        )
        node.on_close(election.log.close)
        node.spawn("etcd-watch", lambda: _etcd_watcher(node, etcd))
        node.spawn("elector", lambda: _elector(node, election))
        node.spawn("builder", lambda: _etcd_builder(node, etcd, election))
    elif cfg.orderer_url is None:
        catch_up_from_peers(node)
        node.caught_up = True
        node.spawn("builder", lambda: _builder(node, None))
    else:
        upstream = NodeClient(cfg.orderer_url, node.org, node.keys.signing, timeout=30.0)
        node.on_close(upstream.close)
        forwarder = NodeClient(cfg.orderer_url, node.org, node.keys.signing, timeout=30.0)
        node.on_close(forwarder.close)

        def forward(raws: Sequence[bytes]) -> None:
            try:
                forwarder.submit(list(raws), wait=False)
            except httpx.HTTPError as exc:
                raise OrderingError(
                    f"the orderer at {cfg.orderer_url} is unreachable ({exc}); retry later"
                ) from None

        node.forward = forward
        node.spawn("follower", lambda: _follower(node, upstream))
    if cfg.peers:
        node.spawn("peer-poller", lambda: _peer_poller(node))


# -- committing what arrives -------------------------------------------------------


def apply_remote(node: Node, height: int, data: bytes) -> bool:
    """Validate and commit a block received from elsewhere; False if already held.

    A block at a height we hold with a different hash is a fork: the node halts.
    """
    return apply_remote_blocks(node, [(height, data)]) == 1


def apply_remote_blocks(node: Node, blocks: Sequence[tuple[int, bytes]]) -> int:
    """Validate and commit consecutive blocks received from elsewhere; how many it committed.

    Blocks we hold already are checked for a fork (the node halts on one) and
    skipped. The rest are committed `_GROUP_BLOCKS` (or `_GROUP_TXS`
    transactions) at a time, each group in one store transaction. An invalid
    block halts the node after the blocks before it are committed.
    """
    committed = 0
    with node.commit_lock:
        group: list[tuple[Block, bytes, Execution | None]] = []
        txs = 0
        for height, data in blocks:
            if node.halted is not None:
                break
            head = node.ledger.height + len(group)
            if height <= head:
                if not group:
                    _check_held(node, height, data)
                continue
            if height != head + 1:
                break
            try:
                block = decode_block(data)
                if block.height != height:
                    raise ChainError(f"block stored at {height} says it is {block.height}", height)
            except (EncodingError, ChainError) as exc:
                committed += _commit_group(node, group)
                group = []
                if node.halted is None:
                    _invalid(node, height, exc)
                break
            group.append((block, data, None))
            txs += len(block.txs)
            if len(group) >= _GROUP_BLOCKS or txs >= _GROUP_TXS:
                committed += _commit_group(node, group)
                group, txs = [], 0
        committed += _commit_group(node, group)
    return committed


def _check_held(node: Node, height: int, data: bytes) -> None:
    meta = node.store.block_meta(height)
    try:
        block = decode_block(data)
    except EncodingError:
        return
    if meta is not None and block.hash() != meta.hash:
        node.halt(
            f"fork: the ordering service holds a different block at height {height} "
            "than this node committed"
        )


def _commit_group(node: Node, group: list[tuple[Block, bytes, Execution | None]]) -> int:
    """Commit a group (caller holds `commit_lock`); halts on an invalid block."""
    if not group or node.halted is not None:
        return 0
    before = node.ledger.height
    try:
        node.commit_many(group)
    except ChainError as exc:
        _invalid(node, node.ledger.height + 1, exc)  # the blocks before it are committed
    return node.ledger.height - before


def _invalid(node: Node, height: int, exc: Exception) -> None:
    node.halt(f"the block at height {height} from the ordering service is invalid: {exc}")


def catch_up_from_peers(node: Node, *, limit: int = 64) -> None:
    """Fetch and commit blocks from peers until none is ahead (used before ordering)."""
    for org, url in node.config.peers:
        client = NodeClient(url, node.org, node.keys.signing, timeout=10.0)
        try:
            for _ in range(100_000):
                start = node.ledger.height + 1
                blocks = client.sync_blocks(start, limit=limit)
                if not blocks or apply_remote_blocks(node, list(enumerate(blocks, start))) == 0:
                    break
        except (httpx.HTTPError, SharechainError) as exc:
            log.info("catch-up from %s skipped: %s", org, exc)
        finally:
            client.close()


# -- building blocks -----------------------------------------------------------------


def _take_batch(node: Node, max_wait: float | None = None) -> list[bytes]:
    """The next batch: once `max_block_txs` are queued or the oldest waited `max_wait` s."""
    cfg = node.config
    budget = cfg.max_block_bytes - 4096
    wait = cfg.max_wait if max_wait is None else max_wait
    with node.queue_cond:
        while not node.stop_event.is_set():
            if node.queue:
                # Cut by the age of the oldest queued transaction, not by when we
                # looked: what queued up while the last block was built goes at once.
                now = time.monotonic()
                cut_at = node.queued_at + wait
                if len(node.queue) >= cfg.max_block_txs or now >= cut_at:
                    break
                node.queue_cond.wait(cut_at - now)
            else:
                node.queue_cond.wait(0.5)
        batch: list[bytes] = []
        size = 0
        while node.queue and len(batch) < cfg.max_block_txs:
            nxt = len(node.queue[0]) + 8
            if batch and size + nxt > budget:
                break
            batch.append(node.queue.popleft())
            size += nxt
        if node.queue:
            node.queued_at = time.monotonic()  # the rest is younger than the batch
        return batch


def _requeue(node: Node, raws: list[bytes]) -> None:
    with node.queue_cond:
        node.queued_at = time.monotonic() - node.config.max_wait  # these waited already
        node.queue.extendleft(reversed(raws))
        node.queue_cond.notify()


def _builder(node: Node, etcd: EtcdLog | None) -> None:
    while not node.stop_event.is_set():
        batch = _take_batch(node)
        if not batch:
            continue
        if node.halted is not None:
            node.fail(batch, OrderingError(f"the node stopped committing: {node.halted}"))
            continue
        _build(node, etcd, batch)


def _build(node: Node, etcd: EtcdLog | None, batch: list[bytes]) -> None:
    try:
        if etcd is None:
            with node.commit_lock:
                block, ex = node.ledger.build_block(
                    batch,
                    orderer=node.org,
                    key=node.keys.signing,
                    timestamp=int(node.now() * 1000),
                )
                node.commit(block, encode_block(block), ex)
        else:
            _order_on_etcd(node, etcd, batch)
    except OrderingError as exc:
        log.warning("ordering failed: %s", exc)
        node.fail(batch, exc)
    except SharechainError as exc:
        log.exception("block building failed")
        node.fail(batch, OrderingError(f"block building failed: {exc}"))
    except (KeyboardInterrupt, SystemExit):
        node.fail(batch, OrderingError("the block builder stopped"))
        raise
    except BaseException as exc:
        # A bug or a native extension's panic outside any one transaction: the
        # batch's submitters get an error and the builder takes the next batch.
        log.exception("ALERT block building failed unexpectedly")
        node.fail(batch, OrderingError(f"block building failed ({type(exc).__name__}: {exc})"))


def _etcd_builder(node: Node, etcd: EtcdLog, election: Election) -> None:
    """etcd mode: build blocks while leading, otherwise forward batches to the leader.

    Should this loop ever end before the node stops (it survives any exception
    but KeyboardInterrupt and SystemExit), the node gives up the leader lease
    at once and stops campaigning: a leader without a builder would hold the
    consortium's blocks back until its lease expired, and again at each election.
    """
    try:
        _etcd_build_loop(node, etcd)
    finally:
        if not node.stop_event.is_set():
            node.may_lead = False
            leader = node.leader
            if leader is not None and leader.org == node.org:
                node.leader = None
                with contextlib.suppress(OrderingError):
                    election.revoke(leader.lease)
                log.error("ALERT %s: the block builder died; leadership given up", node.org)


def _etcd_build_loop(node: Node, etcd: EtcdLog) -> None:
    peers = dict(node.config.peers)
    clients: dict[str, NodeClient] = {}
    # A few batches in flight to the leader at once: each waits for its commit there.
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"{node.org}-forward")
    try:
        while not node.stop_event.is_set():
            # Batches go to a leader as they come: it cuts blocks itself, and waiting
            # here too only added `max_wait` to the latency of 3 transactions in 4.
            leader = node.leader
            forwarding = leader is not None and leader.org != node.org and leader.org in peers
            batch = _take_batch(node, 0.0 if forwarding else None)
            if not batch:
                continue
            if node.halted is not None:
                node.fail(batch, OrderingError(f"the node stopped committing: {node.halted}"))
                continue
            leader = node.leader
            if leader is not None and (leader.org == node.org or leader.org not in peers):
                # Not knowing where the leader listens, append ourselves: the
                # compare-and-set keeps that safe, it only risks losing races.
                _build(node, etcd, batch)
            elif leader is not None:
                client = clients.get(leader.org)
                if client is None:
                    client = NodeClient(
                        peers[leader.org], node.org, node.keys.signing, timeout=_FORWARD_TIMEOUT
                    )
                    clients[leader.org] = client
                pool.submit(_forward, node, client, leader.org, batch)
            elif node.election_error is not None:
                node.fail(batch, OrderingError(node.election_error))
            else:  # an election is under way
                _requeue(node, batch)
                node.stop_event.wait(0.05)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for client in clients.values():
            client.close()


def _forward(node: Node, client: NodeClient, leader: str, batch: list[bytes]) -> None:
    """Send a batch to the leader and wait until it is committed there."""
    try:
        client.submit(batch, wait=True, timeout=_FORWARD_TIMEOUT)
        return
    except OrderingError as exc:
        if "quorum" in str(exc):
            # The leader could not reach etcd: what we would have seen ourselves.
            node.fail(node.still_pending(batch), OrderingError(str(exc)))
            return
        problem = str(exc)
    except (httpx.HTTPError, SharechainError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    # The leader died, stopped or stepped down: try again, with whoever leads next.
    log.info("forwarding %d transactions to %s failed (%s); retrying", len(batch), leader, problem)
    if not node.stop_event.wait(0.2):
        rest = node.still_pending(batch)
        if rest:
            _requeue(node, rest)


def _elector(node: Node, election: Election) -> None:
    """Hold the leader key while this node leads; otherwise watch it and campaign when free."""
    lease = 0
    renewed = 0.0
    failing_since: float | None = None
    try:
        while not node.stop_event.is_set():
            leading = node.leader is not None and node.leader.org == node.org
            try:
                if leading:
                    if election.keep_alive(lease) > 0:
                        renewed = time.monotonic()
                    else:
                        log.warning("leader lease %x expired; stepping down", lease)
                        node.leader, lease = None, 0
                elif not node.may_lead:
                    node.leader = election.current()  # only watch: the builder is gone
                else:
                    holder = election.current()
                    if holder is None or (holder.org == node.org and holder.lease != lease):
                        lease = election.grant()
                        holder = election.campaign(node.org, lease)
                        renewed = time.monotonic()
                        if holder is not None and holder.org == node.org:
                            log.info("%s leads block building (lease %x)", node.org, lease)
                    if holder is None or holder.org != node.org:
                        node.log_is_mine = False
                    node.leader = holder
                node.election_error, failing_since = None, None
            except OrderingError as exc:
                now = time.monotonic()
                failing_since = now if failing_since is None else failing_since
                if now - failing_since > _ELECTION_PATIENCE:
                    # Submitters with no leader to go to get this error, not a silent wait.
                    node.election_error = str(exc)
                if leading and now - renewed > election.ttl:
                    log.warning("cannot renew the leader lease (%s); stepping down", exc)
                    node.leader, lease = None, 0
                # A follower keeps the leader it knew: forwarding shows whether it lives.
            node.stop_event.wait(election.ttl / 4 if leading else _FOLLOW_POLL)
    finally:
        if lease and node.leader is not None and node.leader.org == node.org:
            # Hand over at once on a clean stop instead of after the TTL.
            node.leader = None
            with contextlib.suppress(OrderingError):
                election.revoke(lease)


def _order_on_etcd(node: Node, etcd: EtcdLog, batch: list[bytes]) -> None:
    # Building on a head the log has already passed is wasted work: catch up first.
    # (Not needed right after appending our own block at our height: a leader
    # that keeps winning saves a round trip per block.)
    mine, head = node.last_appended, node.store.head()
    in_step = mine is not None and head is not None and mine[2].hash() == head.hash
    log_head = node.ledger.height if in_step else etcd.head()
    if log_head > node.ledger.height:
        node.log_is_mine = False
        _requeue(node, batch)
        node.wait_height(log_head, _LOST_RACE_WAIT)
        return
    with node.commit_lock:
        started = time.perf_counter()
        block, ex = node.ledger.build_block(
            batch, orderer=node.org, key=node.keys.signing, timestamp=int(node.now() * 1000)
        )
        build_seconds = time.perf_counter() - started
    data = encode_block(block)
    if len(data) > node.config.max_block_bytes and len(batch) > 1:
        half = len(batch) // 2
        _requeue(node, batch[half:])
        _order_on_etcd(node, etcd, batch[:half])
        return
    node.last_appended = (block.height, data, block, ex)
    try:
        won = etcd.append(block.height, data)
    except OrderingError:
        node.log_is_mine = False  # the block may have landed: the watch finds out
        raise
    if won:
        node.metrics.blocks_appended.labels("won").inc()
        with node.commit_lock:
            if node.ledger.height == block.height - 1 and node.halted is None:
                node.commit(block, data, ex)
            node.log_is_mine = node.ledger.height == block.height
        log.debug("built block %d (%d txs) in %.3fs", block.height, len(batch), build_seconds)
        return
    node.log_is_mine = False
    node.metrics.blocks_appended.labels("lost").inc()
    # Another node's block took this height: it reaches us through the watch.
    if not node.wait_height(block.height, _LOST_RACE_WAIT):
        log.warning("lost height %d and its block did not arrive in time", block.height)
    rest = node.still_pending(batch)
    if rest:
        _requeue(node, rest)


def _ensure_genesis_in_log(node: Node, etcd: EtcdLog) -> None:
    genesis = node.datadir.genesis_bytes()
    for attempt in range(60):
        try:
            if not etcd.append(0, genesis):
                raise ChainError(
                    f"the etcd log under prefix {node.config.etcd_prefix!r} belongs to another "
                    "consortium (different genesis block); use another --etcd-prefix",
                    0,
                )
            return
        except OrderingError:
            if attempt == 59 or node.stop_event.wait(0.5):
                raise


class _Paused:
    """The watch's stop flag: the node stops, or the log holds nothing it did not commit."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def is_set(self) -> bool:
        node = self.node
        if node.stop_event.is_set():
            return True
        leader = node.leader
        return node.log_is_mine and leader is not None and leader.org == node.org

    def wait(self, timeout: float | None = None) -> bool:
        self.node.stop_event.wait(timeout)
        return self.is_set()


class _Backlog:
    """The etcd watch, read ahead on a thread of its own.

    The watcher then sees which blocks are already waiting when it is free to
    commit, and commits them together (`apply_remote_blocks`) instead of one
    transaction (and one fsync) each. The read-ahead is bounded by a small
    queue. The watch ends when the node pauses or stops it, or on `close`.
    """

    def __init__(self, node: Node, etcd: EtcdLog, start: int, paused: _Paused) -> None:
        self._paused = paused
        self._closed = threading.Event()
        self._items: queue.Queue[tuple[int, bytes] | _WatchEnd] = queue.Queue(
            maxsize=2 * _GROUP_BLOCKS
        )
        self._end: _WatchEnd | None = None
        self._reader = threading.Thread(
            target=self._run, args=(etcd, start), name=f"{node.org}-etcd-read", daemon=True
        )
        self._reader.start()

    def is_set(self) -> bool:
        """The watch's stop flag (see `StopFlag`)."""
        return self._closed.is_set() or self._paused.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        self._paused.wait(timeout)
        return self.is_set()

    def close(self) -> None:
        """Stop reading; returns once the reader is done with the log (it polls every 0.1 s)."""
        self._closed.set()
        if self._reader is not threading.current_thread():
            self._reader.join(timeout=30)

    def take(self, limit: int) -> list[tuple[int, bytes]] | None:
        """The next block and up to `limit - 1` more already read; None once the watch ended.

        Raises what ended the watch (an OrderingError, or anything unexpected).
        """
        items: list[tuple[int, bytes]] = []
        while self._end is None and len(items) < limit:
            try:
                item = self._items.get(timeout=0.1) if not items else self._items.get_nowait()
            except queue.Empty:
                if items or self._closed.is_set():
                    break
                continue
            if isinstance(item, _WatchEnd):
                self._end = item
            else:
                items.append(item)
        if items:
            return items
        if self._end is not None and self._end.error is not None:
            raise self._end.error
        return None

    def _run(self, etcd: EtcdLog, start: int) -> None:
        try:
            for item in etcd.watch(start, stop=self):
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the watcher, which raises it
            self._put(_WatchEnd(exc))
            return
        self._put(_WatchEnd(None))

    def _put(self, item: tuple[int, bytes] | _WatchEnd) -> bool:
        while not self._closed.is_set():
            try:
                self._items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False


class _WatchEnd:
    """Queued by `_Backlog` when the watch ends; `error` is why, if it failed."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


def _etcd_watcher(node: Node, etcd: EtcdLog) -> None:
    failures = 0
    paused = _Paused(node)
    while not node.stop_event.is_set() and node.halted is None:
        if paused.is_set():
            node.watch_paused = True
            node.stop_event.wait(_PAUSE_POLL)
            continue
        node.watch_paused = False
        start = node.ledger.height + 1
        try:
            if etcd.head() < start:
                node.caught_up = True
            backlog = _Backlog(node, etcd, start, paused)
            try:
                while (ready := backlog.take(_GROUP_BLOCKS)) is not None:
                    failures = 0
                    _apply_watched(node, ready)
                    if node.halted is not None:
                        return
                    if not node.caught_up:
                        with contextlib.suppress(OrderingError):
                            node.caught_up = etcd.head() <= node.ledger.height
            finally:
                backlog.close()
        except OrderingError as exc:
            failures += 1
            log.warning("etcd watch interrupted: %s", exc)
            node.stop_event.wait(min(2.0, 0.1 * 2**failures))


def _apply_watched(node: Node, ready: list[tuple[int, bytes]]) -> None:
    """Commit blocks read from the log: ours as built, others validated, in groups."""
    remote: list[tuple[int, bytes]] = []
    for height, data in ready:
        mine = node.last_appended
        if mine is not None and mine[0] == height and mine[1] == data:
            # Our own block: executed when we built it, no need to re-validate.
            apply_remote_blocks(node, remote)
            remote = []
            with node.commit_lock:
                if node.ledger.height == height - 1 and node.halted is None:
                    node.commit(mine[2], data, mine[3])
            continue
        if not remote and height <= node.ledger.height and node.store.block_bytes(height) == data:
            continue  # committed already (the leader's own blocks): nothing to check
        remote.append((height, data))
    apply_remote_blocks(node, remote)


def _follower(node: Node, upstream: NodeClient) -> None:
    failures = 0
    while not node.stop_event.is_set() and node.halted is None:
        start = node.ledger.height + 1
        try:
            blocks = upstream.sync_blocks(start, limit=64, wait=2.0)
        except (httpx.HTTPError, SharechainError) as exc:
            failures += 1
            if failures in (1, 10) or failures % 100 == 0:
                log.warning("cannot reach the orderer: %s", exc)
            node.stop_event.wait(min(2.0, 0.05 * 2 ** min(failures, 6)))
            continue
        failures = 0
        if not blocks:
            node.caught_up = True
        apply_remote_blocks(node, list(enumerate(blocks, start)))


def _peer_poller(node: Node) -> None:
    clients = {
        org: NodeClient(
            url, node.org, node.keys.signing, timeout=max(2.0, node.config.poll_interval)
        )
        for org, url in node.config.peers
    }
    try:
        while not node.stop_event.wait(node.config.poll_interval):
            for org, client in clients.items():
                try:
                    status = client.status()
                except (httpx.HTTPError, SharechainError) as exc:
                    node.peer_errors[org] = str(exc)[:300]
                    continue
                node.peer_errors.pop(org, None)
                height = int(status.get("height", -1))
                if height > node.ledger.height:
                    node.log_is_mine = False  # somebody appended past us: watch again
                node.peer_heights[org] = height
                node.metrics.peer_height.labels(org).set(height)
                for value in status.get("attestations", []):
                    try:
                        att = Attestation.from_json(value)
                    except EncodingError:
                        continue
                    if att.org != org:
                        continue  # a node speaks for its own organisation only
                    conflict = node.book.receive(att, node.public_key(att.org))
                    if conflict is not None:
                        node.on_conflict(conflict)
    finally:
        for client in clients.values():
            client.close()
