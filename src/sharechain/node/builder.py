"""Building blocks: the node's queue cut into batches, ordered solo or on etcd.

- `builder` (solo orderer): cuts the queue by size or time and commits each
  batch as a block, signed with the node's current key.
- `etcd_builder`: the leader (see `elector`) appends each block to the log at
  `head + 1` with compare-and-set (`EtcdLog.append`) and commits it if it
  won; on losing (two nodes believed they led) it waits for the winner's
  block to arrive through the watch and puts back the transactions the
  winner did not hold. Other nodes forward each batch to the leader and wait
  for its answer, so the leader's "no etcd quorum" reaches their submitters;
  a batch whose leader died is queued again and goes to the next leader.
- `elector`: holds or watches the leader key (`etcd_lease.Election`): the
  leader renews its lease every TTL/4; the others read the key every 0.5 s
  and campaign when it is gone, so a dead leader is replaced within about
  the TTL (2 s). A node whose builder died gives the lease up and no longer
  campaigns.

A batch that fails to build fails its submitters with an `OrderingError`;
the builder goes on with the next one.
"""

from __future__ import annotations

import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from sharechain.api.client import NodeClient
from sharechain.api.peer_client import PeerClient
from sharechain.errors import OrderingError, SharechainError
from sharechain.ledger.blocks import encode_block
from sharechain.node.doubts import Doubts, Forward
from sharechain.node.service import Node
from sharechain.ordering.etcd_lease import Election, Leader
from sharechain.ordering.etcd_log import HEAD_UNREADABLE, EtcdLog, LogOutOfStep

__all__ = ["builder", "elector", "etcd_builder"]

log = logging.getLogger("sharechain.node")

_LOST_RACE_WAIT = 10.0
_FOLLOW_POLL = 0.5
"""Seconds between a follower's reads of the leader key."""
_MEND_DEPTH = 64
"""How far below its height the leader looks for its own block to put a `head` back on
that holds no height at all (`_mend_unreadable_head`)."""
_ELECTION_PATIENCE = 3.0
"""Seconds the leader key may stay unreadable before batches with no leader fail."""


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
                if not node.queue:
                    return []  # idle: the caller's loop looks around (`node.doubts`)
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


def builder(node: Node, etcd: EtcdLog | None) -> None:
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
        node.refresh_keys()  # a rotated key is taken before the block is signed
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
        node.loop_failed(exc)  # a damaged store quarantines the node


def etcd_builder(node: Node, etcd: EtcdLog, election: Election) -> None:
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
    clients: dict[str, PeerClient] = {}
    timeout = node.config.forward_timeout
    doubts = Doubts(timeout, lambda leader: node.metrics.leader_doubts.labels(leader.org).inc())
    # A few batches in flight to the leader at once: each waits for its commit there.
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"{node.org}-forward")
    try:
        while not node.stop_event.is_set():
            left_out = doubts.due(node.ledger.height, node.store.known_txs, etcd.head)
            if left_out:
                _requeue(node, left_out)
            # Batches go to a leader as they come: it cuts blocks itself, and waiting
            # here too only added `max_wait` to the latency of 3 transactions in 4.
            leader = node.leader
            forwarding = _forwards_to(node, leader, peers, doubts)
            batch = _take_batch(node, 0.0 if forwarding else None)
            if not batch:
                continue
            if node.halted is not None:
                node.fail(batch, OrderingError(f"the node stopped committing: {node.halted}"))
                continue
            leader = node.leader
            if leader is not None and not _forwards_to(node, leader, peers, doubts):
                # Leading, not knowing where the leader listens, or doubting it
                # (`node.doubts`): append ourselves. The compare-and-set keeps that
                # safe; it only risks losing races.
                _build(node, etcd, batch)
            elif leader is not None:
                client = clients.get(leader.org)
                if client is None:
                    client = PeerClient(node, peers[leader.org], timeout=timeout)
                    clients[leader.org] = client
                forward = doubts.sent(leader, batch)
                pool.submit(_forward, node, client.get(), forward, doubts)
            elif node.election_error is not None:
                node.fail(batch, OrderingError(node.election_error))
            else:  # an election is under way
                _requeue(node, batch)
                node.stop_event.wait(0.05)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for client in clients.values():
            client.close()


def _forwards_to(node: Node, leader: Leader | None, peers: dict[str, str], doubts: Doubts) -> bool:
    """Whether this node's batches go to `leader` rather than into its own blocks."""
    return (
        leader is not None
        and leader.org != node.org
        and leader.org in peers
        and not doubts.doubts(leader)
    )


def _forward(node: Node, client: NodeClient, forward: Forward, doubts: Doubts) -> None:
    """Send a batch to the leader and wait until it is committed there; a leader that
    fails it is doubted (`node.doubts`), and the batch goes into this node's blocks."""
    batch = forward.batch
    try:
        receipts = client.submit(batch, wait=True, timeout=node.config.forward_timeout)
        doubts.answered(forward, [r.height for r in receipts])
        return
    except OrderingError as exc:
        if "quorum" in str(exc):
            # The leader could not reach etcd: what we would have seen ourselves.
            doubts.drop(forward)
            node.fail(node.still_pending(batch), OrderingError(str(exc)))
            return
        problem = str(exc)
    except (httpx.HTTPError, SharechainError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    # The leader died, stopped, stepped down, or does not order: this node appends the
    # batch itself while it doubts this term (a new leader's is trusted again).
    if doubts.failed(forward, problem) and not node.stop_event.wait(0.2):
        rest = node.still_pending(batch)
        if rest:
            _requeue(node, rest)


def elector(node: Node, election: Election) -> None:
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


def _mend_log(node: Node, etcd: EtcdLog, log_head: int) -> int:
    """Put the ordering log back in step with this node's committed chain; its head after.

    Only `append` moves `head`, together with its block, so a log that lacks
    blocks this node committed (an etcd client deleted them, as `void` does), or
    whose `head` is not the last block (written by hand), would refuse every
    append: its next height "not in the log yet", or "taken" by a block that
    never comes. The leader puts its own signed blocks back and `head` on its
    height (`EtcdLog.move_head`, which checks the block there is this node's and
    none is above it); a different block at a height stops it.
    """
    height = node.ledger.height
    if log_head > height and etcd.get(height + 1) is not None:
        return log_head  # blocks this node has not got yet: the usual case
    found = log_head
    if log_head == HEAD_UNREADABLE:  # a value that is no height: back on our block first
        log_head = _mend_unreadable_head(node, etcd)
        if log_head == HEAD_UNREADABLE:
            return log_head
    mended = []
    for k in range(max(log_head + 1, 1), height + 1):
        ours, there = node.store.block_bytes(k), etcd.get(k)
        if ours is None or (there is not None and there != ours):
            break
        if there is None:
            below = node.store.block_bytes(k - 1) or b""
            current = etcd.head()
            if current != k - 1 and not etcd.move_head(current, k - 1, below):
                break
            if not etcd.append(k, ours):
                break
            mended.append(k)
    current, tip = etcd.head(), node.store.block_bytes(height)
    moved = current != height and tip is not None and etcd.move_head(current, height, tip)
    if mended or moved or found != log_head:
        log.warning(
            "the ordering log was not in step with this node's chain (head %s, this node "
            "%d): an etcd client changed it; %d blocks put back from this node's store, "
            "head set to %d",
            "holding no height" if found == HEAD_UNREADABLE else found,
            height,
            len(mended),
            etcd.head(),
        )
    return etcd.head()


def _mend_unreadable_head(node: Node, etcd: EtcdLog) -> int:
    """Put a `head` that holds no height on this node's newest block that etcd still
    has (within `_MEND_DEPTH`); the head after (`HEAD_UNREADABLE` if none was found)."""
    height = node.ledger.height
    for k in range(height, max(height - _MEND_DEPTH, 0) - 1, -1):
        ours = node.store.block_bytes(k)
        if ours is not None and etcd.get(k) == ours:
            etcd.move_head(HEAD_UNREADABLE, k, ours)
            return etcd.head()
    log.error(
        "ALERT %s: the ordering log's head holds no height and none of this node's last "
        "%d blocks is in etcd: an etcd client rewrote the log; restore it (docs/operations.md)",
        node.org,
        _MEND_DEPTH,
    )
    return HEAD_UNREADABLE


def _order_on_etcd(node: Node, etcd: EtcdLog, batch: list[bytes]) -> None:
    # Building on a head the log has already passed is wasted work: catch up first.
    # (Not needed right after appending our own block at our height: a leader
    # that keeps winning saves a round trip per block.)
    mine, head = node.last_appended, node.store.head()
    in_step = mine is not None and head is not None and mine[2].hash() == head.hash
    log_head = node.ledger.height if in_step else etcd.head()
    if log_head != node.ledger.height and not in_step:
        log_head = _mend_log(node, etcd, log_head)
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
    except LogOutOfStep:
        node.log_is_mine = False
        _requeue(node, batch)  # the log lost blocks this node holds, or its head: mended next
        return
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
    arrived = node.wait_height(block.height, _LOST_RACE_WAIT)
    if not arrived and node.voided == block.height:
        log.info("height %d was voided: this node appends there again", block.height)
    elif not arrived:
        log.warning("lost height %d and its block did not arrive in time", block.height)
    rest = node.still_pending(batch)
    if rest:
        _requeue(node, rest)
