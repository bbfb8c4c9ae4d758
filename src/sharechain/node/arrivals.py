"""Committing blocks that arrive from elsewhere: the ordering service, peers.

Every block received is decoded, checked to extend this node's chain and
fully validated before it is committed (`Node.commit_many`). A backlog is
committed `GROUP_BLOCKS` blocks (or `GROUP_TXS` transactions) at a time, each
group in one store transaction: one COMMIT and one fsync instead of several;
the groups of one backlog share one block pipeline (`FollowPipeline.stream`),
which then does not start over at each group.
A block at a height already held with another hash is a fork, and an
invalid block is a faulty orderer: either halts the node with an alert.
From the etcd log (`apply_log_blocks`), a value that is not a member's
signed block at all is a *foreign value* instead (`foreign_values`): it is
handed back to the caller, which voids it, and the node does not halt.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import httpx

from sharechain.api.client import NodeClient
from sharechain.errors import ChainError, EncodingError, SharechainError
from sharechain.ledger.blocks import Block, decode_block
from sharechain.ledger.execution import Execution
from sharechain.node.catching_up import CatchUp, catching_up
from sharechain.node.fetch_ahead import FetchAhead
from sharechain.node.follow_pipeline import Stream
from sharechain.node.service import Node
from sharechain.ordering.foreign_values import Foreign, foreign_reason

__all__ = [
    "GROUP_BLOCKS",
    "GROUP_TXS",
    "apply_log_blocks",
    "apply_remote",
    "apply_remote_blocks",
    "catch_up_from_peers",
]

log = logging.getLogger("sharechain.node")

GROUP_BLOCKS = 4
"""At most this many blocks of a backlog commit in one store transaction..."""
GROUP_TXS = 2000
"""...and a group takes no block once it holds this many transactions (receipts of
its first block wait for the whole group) and two blocks at least: a group of one
is committed without the block pipeline, which overlaps a block's signature checks
with the execution of the block before it (a backlog of blocks of 2,000 caught up
11% faster in pairs than alone: docs/node.md)."""


def apply_remote(node: Node, height: int, data: bytes) -> bool:
    """Validate and commit a block received from elsewhere; False if already held.

    A block at a height we hold with a different hash is a fork: the node halts.
    """
    return apply_remote_blocks(node, [(height, data)]) == 1


def apply_remote_blocks(node: Node, blocks: Sequence[tuple[int, bytes]]) -> int:
    """Validate and commit consecutive blocks received from elsewhere; how many it committed.

    Blocks we hold already are checked for a fork (the node halts on one) and
    skipped. The rest are committed `GROUP_BLOCKS` (or `GROUP_TXS`
    transactions) at a time, each group in one store transaction. An invalid
    block halts the node after the blocks before it are committed.
    """
    return _apply(node, blocks, voidable=False)[0]


def apply_log_blocks(node: Node, blocks: Sequence[tuple[int, bytes]]) -> tuple[int, Foreign | None]:
    """Like `apply_remote_blocks`, for the etcd log: stops at a foreign value and returns it.

    The blocks before the foreign value are committed; the node does not halt.
    """
    return _apply(node, blocks, voidable=True)


def _apply(
    node: Node, blocks: Sequence[tuple[int, bytes]], *, voidable: bool
) -> tuple[int, Foreign | None]:
    with node.commit_lock:
        run, bad = _new_blocks(node, blocks)
        groups = _groups(node, run)
        committed, foreign = 0, None
        # One block pipeline across the groups: it starts over at none of them.
        stream = (
            node.pipeline.stream(node.ledger, run)
            if node.pipeline.wanted(run)
            else contextlib.nullcontext()
        )
        with stream as s:
            for group in groups:
                done, foreign = _commit_group(node, group, voidable, s)
                committed += done
                if foreign is not None or done < len(group) or node.halted is not None:
                    return committed, foreign
        if bad is not None and node.halted is None and node.ledger.height == bad[0] - 1:
            foreign = _refuse(node, *bad, voidable)
    return committed, foreign


def _new_blocks(
    node: Node, blocks: Sequence[tuple[int, bytes]]
) -> tuple[list[tuple[Block, bytes]], tuple[int, bytes, Exception] | None]:
    """The blocks of `blocks` that extend this node's chain, decoded, up to the
    first gap or the first that does not decode (returned with its error)."""
    run: list[tuple[Block, bytes]] = []
    for height, data in blocks:
        if node.halted is not None:
            break
        head = node.ledger.height + len(run)
        if height <= head:
            if not run:
                _check_held(node, height, data)  # a fork halts the node
            continue
        if height != head + 1:
            break
        try:
            block = decode_block(data)
            if block.height != height:
                raise ChainError(f"block stored at {height} says it is {block.height}", height)
        except (EncodingError, ChainError) as exc:
            return run, (height, data, exc)
        run.append((block, data))
    return run, None


def _groups(
    node: Node, run: list[tuple[Block, bytes]]
) -> list[list[tuple[Block, bytes, Execution | None]]]:
    """`run` cut into the groups committed one store transaction each."""
    groups: list[list[tuple[Block, bytes, Execution | None]]] = []
    group: list[tuple[Block, bytes, Execution | None]] = []
    txs = 0
    for block, data in run:
        group.append((block, data, None))
        txs += len(block.txs)
        # A snapshot height ends its group: the snapshot must see that height alone.
        full = len(group) >= GROUP_BLOCKS or (txs >= GROUP_TXS and len(group) > 1)
        if full or node.snapshots.due(block.height):
            groups.append(group)
            group, txs = [], 0
    if group:
        groups.append(group)
    return groups


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


def _commit_group(
    node: Node,
    group: list[tuple[Block, bytes, Execution | None]],
    voidable: bool,
    stream: Stream | None = None,
) -> tuple[int, Foreign | None]:
    """Commit a group (caller holds `commit_lock`), through `stream` if given; halts
    on an invalid block.

    With `voidable`, a foreign value is returned instead of halting.
    """
    if not group or node.halted is not None:
        return 0, None
    before = node.ledger.height
    foreign = None
    try:
        node.commit_many(group, stream)
    except ChainError as exc:
        height = node.ledger.height + 1  # the blocks before it are committed
        data = next(d for b, d, _ in group if b.height == height)
        foreign = _refuse(node, height, data, exc, voidable)
    return node.ledger.height - before, foreign


def _refuse(node: Node, height: int, data: bytes, exc: Exception, voidable: bool) -> Foreign | None:
    """An invalid value at `height`: a foreign value to void, or a faulty orderer (halt)."""
    if voidable:
        reason = foreign_reason(node, height, data)
        if reason is not None:
            return Foreign(height, data, reason)
    if node.halted is None:
        node.halt(f"the block at height {height} from the ordering service is invalid: {exc}")
    return None


def catch_up_from_peers(node: Node, *, limit: int = 64) -> None:
    """Fetch and commit blocks from peers until none is ahead (used before ordering).

    Each peer's next page of `limit` blocks is fetched while the page before it
    commits (`FetchAhead`). Progress is logged and shown in the node's status
    (`node.catching_up`), against the height each peer reports when the node
    turns to it."""
    for org, url in node.config.peers:
        client = NodeClient(url, node.org, node.keys.signing, timeout=10.0)
        try:
            with catching_up(node, org, _height(client.status())) as progress:
                _catch_up_from(node, org, client, limit, progress)
        except (httpx.HTTPError, SharechainError) as exc:
            log.info("catch-up from %s skipped: %s", org, exc)
        finally:
            client.close()


def _catch_up_from(
    node: Node, org: str, client: NodeClient, limit: int, progress: CatchUp | None
) -> None:
    """Commit `client`'s pages until it has no more, one commits nothing, or the node halts.

    A page that commits only in part (a block held already, an invalid one)
    leaves what was fetched after it unused: fetching starts again from where
    the chain now ends. A value that is not a member's signed block at all (junk,
    a forged signature, a block that does not link) is the peer's lie, not a
    faulty orderer: the node refuses it with an ALERT, leaves that peer and goes
    on with the next, where an invalid block a member did sign halts it."""
    for _ in range(100_000):
        start = node.ledger.height + 1
        fetch = FetchAhead(
            lambda height: client.sync_blocks(height, limit=limit),
            start,
            name=f"{node.org}-fetch-ahead",
        )
        with contextlib.closing(fetch) as pages:
            for first, blocks in pages:
                if not blocks:
                    return
                if progress is not None:
                    progress.raise_target(first + len(blocks) - 1)
                committed, lie = _apply(node, list(enumerate(blocks, first)), voidable=True)
                if lie is not None:
                    log.error(
                        "ALERT %s: peer %s sent, as block %d, %s; refused, catching up from "
                        "the other peers",
                        node.org,
                        org,
                        lie.height,
                        lie.reason,
                    )
                    return
                if committed == 0 or node.halted is not None:
                    return
                if committed < len(blocks):
                    break
            else:
                return


def _height(status: dict[str, Any]) -> int:
    """A peer's height as its status reports it (-1 if it reports none that makes sense:
    the blocks it sends are checked anyway; only the progress shown needs it)."""
    height = status.get("height") if isinstance(status, dict) else None
    return height if isinstance(height, int) and not isinstance(height, bool) else -1
