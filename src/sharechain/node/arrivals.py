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

So is a member's signed block that fails validation, unless most peers have
committed that height: one member must not halt the consortium by signing a
bad block. The node waits a few polls of its peers' attestations first
(`_faulty_block`); if more than half of the peers besides the block's orderer
are past that height, the fault is this node's (its clock, say), and it halts
as before. The block is kept as evidence (`<data dir>/evidence/`): it carries
its orderer's signature.

A block's time is judged against each node's own clock (`BlockClock`), and
clocks differ a little: stamped near the bound, one node could commit a block
that another refuses and voids. So a block from the log whose time is
*uncertain* (more than half the bound from this node's clock, within it) is
committed only once most peers besides its orderer have committed it, or
after twice the wait of a refusing node if it is still in the log then
(`_settle`): a peer that refused it has voided it by then. Honest clocks
differ by less than half the bound, so no honest node commits at once a
block another honest node refuses.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
from sharechain.node.vouching import VouchedChain, peer_wait, quorum, receive_attestations
from sharechain.ordering.foreign_values import Foreign, foreign_reason

__all__ = [
    "GROUP_BLOCKS",
    "GROUP_TXS",
    "JUDGE_PATIENCE",
    "apply_log_blocks",
    "apply_remote",
    "apply_remote_blocks",
    "catch_up_from_peers",
]

log = logging.getLogger("sharechain.node")

JUDGE_PATIENCE = 10
"""A node refusing a member's block waits at most this many times `peer_wait` for a
peer that has neither committed nor refused it (`judge_patience`)."""

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


def apply_log_blocks(
    node: Node,
    blocks: Sequence[tuple[int, bytes]],
    still_logged: Callable[[int, bytes], bool] | None = None,
) -> tuple[int, Foreign | None]:
    """Like `apply_remote_blocks`, for the etcd log: stops at a foreign value and returns it.

    The blocks before the foreign value are committed; the node does not halt.
    With `still_logged` (whether the log still holds a value at a height), a block
    whose time is uncertain waits for the peers first (`_settle`); one its peers
    voided meanwhile comes back as a foreign value.
    """
    return _apply(node, blocks, voidable=True, member_faults=True, still_logged=still_logged)


def _apply(
    node: Node,
    blocks: Sequence[tuple[int, bytes]],
    *,
    voidable: bool,
    member_faults: bool = False,
    still_logged: Callable[[int, bytes], bool] | None = None,
) -> tuple[int, Foreign | None]:
    committed = 0
    while True:
        with node.commit_lock:
            run, bad = _new_blocks(node, blocks)
            cut = _uncertain_at(node, run) if still_logged is not None else None
            if cut != 0:
                done, foreign = _commit_run(node, run[:cut], voidable, member_faults)
                committed += done
                if cut is not None and foreign is None and done == cut and node.halted is None:
                    continue  # the uncertain block is first now: wait for it outside the lock
                if cut is None and foreign is None:
                    foreign = _refuse_next(node, bad, voidable, member_faults)
                return committed, foreign
        assert still_logged is not None
        block, data = run[0]
        settled = _settle(node, block, data, still_logged)
        if settled is None:
            return committed, None  # stopping
        if not settled:
            why = "its time was near the clock bound and its peers voided it"
            return committed, Foreign(block.height, data, why)


def _refuse_next(
    node: Node, bad: tuple[int, bytes, Exception] | None, voidable: bool, member_faults: bool
) -> Foreign | None:
    """Refuse `bad`, the value that did not decode after a run, once the run committed."""
    if bad is None or node.halted is not None or node.ledger.height != bad[0] - 1:
        return None
    return _refuse(node, *bad, voidable, member_faults)


def _commit_run(
    node: Node, run: list[tuple[Block, bytes]], voidable: bool, member_faults: bool
) -> tuple[int, Foreign | None]:
    """Commit `run` in groups through one block pipeline (caller holds `commit_lock`)."""
    committed, foreign = 0, None
    # One block pipeline across the groups: it starts over at none of them.
    stream = (
        node.pipeline.stream(node.ledger, run)
        if node.pipeline.wanted(run)
        else contextlib.nullcontext()
    )
    with stream as s:
        for group in _groups(node, run):
            done, foreign = _commit_group(node, group, voidable, s, member_faults)
            committed += done
            if foreign is not None or done < len(group) or node.halted is not None:
                break
    return committed, foreign


def _uncertain_at(node: Node, run: list[tuple[Block, bytes]]) -> int | None:
    """The index in `run` of the first block whose time is uncertain (`BlockClock`)."""
    clock = node.ledger.clock
    if clock is None:
        return None
    for i, (block, _) in enumerate(run):
        if clock.uncertain(block.header):
            return i
    return None


def _settle(
    node: Node, block: Block, data: bytes, still_logged: Callable[[int, bytes], bool]
) -> bool | None:
    """Whether to commit `block`, whose time is uncertain, after waiting for the peers.

    True at once if more than half of the peers besides its orderer committed it
    (or this node did meanwhile); else, after twice the wait of a node that
    refuses it (a refusing peer has signed its refusal by then, `_faulty_block`),
    True if the log still holds it and no peer refused it. A peer that refused
    it is waited for until the block leaves the log (that peer voided it: False)
    or more than half committed it, for at most twice `judge_patience`. A True
    block is settled: its time is not held to the bound again. None when the
    node stops.
    """
    h = block.header
    clock = node.ledger.clock
    assert clock is not None
    wait = 2 * peer_wait(node)
    log.warning(
        "%s: block %d signed by %s is stamped %.1f s %s this node's clock, near the "
        "%g s bound: committing it once its peers had time to refuse it (%.0f s or more)",
        node.org,
        h.height,
        h.orderer,
        abs(clock.ahead_ms(h)) / 1000,
        "ahead of" if clock.ahead_ms(h) > 0 else "behind",
        clock.max_skew,
        wait,
    )
    started = time.monotonic()
    block_hash = block.hash()
    while True:
        if node.ledger.height >= h.height:
            return True  # committed meanwhile (from a peer): the caller skips it
        said = _judgement(node, h.height, h.orderer, block_hash)
        if 2 * len(said.committed) > len(said.judges):
            break
        if node.stop_event.wait(0.1):
            return None
        waited = time.monotonic() - started
        if waited < wait:
            continue
        if not still_logged(h.height, data):
            log.warning(
                "%s: block %d signed by %s left the log while it waited: its peers "
                "refused its time and voided it",
                node.org,
                h.height,
                h.orderer,
            )
            return False
        if waited >= 2 * judge_patience(node) or not said.refused:
            break
    node.settled_times = {s for s in node.settled_times if s[0] > h.height - 64}
    node.settled_times.add((h.height, h.timestamp))
    return True


@dataclass(frozen=True, slots=True)
class _Judgement:
    """What the peers besides a member's block's orderer said of it (its orderer's own
    word proves nothing)."""

    judges: list[str]
    """The peers that judge it: those this node has attestations of, but the orderer."""
    committed: list[str]
    """Those that attested the block itself, or its height or beyond with that height's
    hash unknown here."""
    refused: list[str]
    """Those that signed a refusal of it, or attested another block at its height (they
    voided it and went on)."""


def _judgement(node: Node, height: int, orderer: str, block_hash: bytes) -> _Judgement:
    """What the peers other than `orderer` said of the block `block_hash` at `height`."""
    views = [p for p in node.book.peers() if p.org != orderer]
    judges = sorted(p.org for p in views)
    attested = node.book.attested(judges)
    signed = set(node.refusals.refusing(judges, height, block_hash))
    committed, refused = [], []
    for view in views:
        there = attested.get(view.org, {}).get(height)
        if there == block_hash or (there is None and view.height >= height):
            committed.append(view.org)
        elif there is not None or view.org in signed:
            refused.append(view.org)
    return _Judgement(judges, sorted(committed), sorted(refused))


def judge_patience(node: Node) -> float:
    """Seconds a node that refuses a member's block waits at most for a peer that has
    neither committed nor refused it (`_faulty_block`): ten times `peer_wait`."""
    return JUDGE_PATIENCE * peer_wait(node)


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
    member_faults: bool = False,
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
        foreign = _refuse(node, height, data, exc, voidable, member_faults)
    return node.ledger.height - before, foreign


def _refuse(
    node: Node,
    height: int,
    data: bytes,
    exc: Exception,
    voidable: bool,
    member_faults: bool = False,
) -> Foreign | None:
    """An invalid value at `height`: a foreign value to void, or a faulty orderer (halt).

    With `member_faults` (the etcd log), a member's signed block refused is voided
    too (one refused for its time as well), unless most peers committed that height."""
    if voidable:
        reason = foreign_reason(node, height, data)
        if member_faults and (reason is None or _unlinked(node, height, data)):
            reason = _faulty_block(node, height, data, exc)
            if reason is None and node.stop_event.is_set():
                return None  # stopped while judging it: judged again at the next start
        if reason is not None:
            return Foreign(height, data, reason)
    if node.halted is None:
        node.halt(f"the block at height {height} from the ordering service is invalid: {exc}")
    return None


def _unlinked(node: Node, height: int, data: bytes) -> bool:
    """Whether `data` is a member's signed block for `height` that does not link to this
    node's chain, with peers to judge it: this node may be the one off the chain (it
    committed a block its peers do not hold, `node.vouching`), so it is judged like a
    block that fails validation, not voided at once."""
    if foreign_reason(node, height, data, links=False) is not None:
        return False
    orderer = decode_block(data).header.orderer
    return any(p.org != orderer for p in node.book.peers())


def _faulty_block(node: Node, height: int, data: bytes, exc: Exception) -> str | None:
    """Why the member-signed block `data` may be voided; None if most peers committed
    `height`.

    Every honest node refuses it alike (a refusal for its time too: near the
    bound, no honest node commits it at once, `_settle`), so no honest node
    commits it. The node signs and serves its refusal (`ledger.refusals`), then
    waits for its judges, the peers other than the block's orderer (its own
    word proves nothing). If more than half of them have attested `height` or
    beyond, they committed a block there: this node's own validation is then
    the odd one, and it halts rather than delete a block others hold. Once so
    many of them refused this very block that the rest could not be more than
    half, it is voided. A judge that has done neither (down, or loaded and
    late) is waited for, up to `judge_patience`; then the block is voided
    unless more than half committed it. With no peer but the orderer to judge
    by, the node halts, after `peer_wait` (a judge's first attestation may
    be on its way). None as well when the node stops meanwhile (then it neither
    halts nor voids). The caller holds the commit lock.
    """
    block = decode_block(data)
    orderer = block.header.orderer
    block_hash = block.hash()
    node.refusals.refuse(height, block_hash)
    started = time.monotonic()
    while True:
        said = _judgement(node, height, orderer, block_hash)
        judges, ahead, refused = said.judges, said.committed, said.refused
        waited = time.monotonic() - started
        if judges and 2 * len(ahead) > len(judges):
            break  # most judges committed it: this node is the odd one
        if judges and 2 * (len(judges) - len(refused)) <= len(judges):
            break  # too many refused it for the rest to be most of them
        if not judges and waited >= peer_wait(node):
            break
        if waited >= judge_patience(node):
            silent = [j for j in judges if j not in ahead and j not in refused]
            log.warning(
                "%s: block %d signed by %s: %s neither committed nor refused it in "
                "%.0f s; judging by the others",
                node.org,
                height,
                orderer,
                ", ".join(silent),
                waited,
            )
            break
        if node.stop_event.wait(0.1):
            return None  # stopping: neither voided nor halted on (`_refuse`)
    halting = not judges or len(ahead) * 2 > len(judges)
    node.metrics.member_blocks_judged.labels(orderer, "halted" if halting else "voided").inc()
    node.metrics.judging_seconds.observe(time.monotonic() - started)
    if halting:
        log.error(
            "ALERT %s refuses block %d signed by %s (%s), which %s: halting",
            node.org,
            height,
            orderer,
            exc,
            f"{', '.join(ahead)} committed"
            if ahead
            else "no peer but its orderer could confirm as invalid",
        )
        return None
    evidence = node.evidence.keep(height, orderer, data)
    log.error(
        "ALERT %s: member %s signed block %d, which fails validation (%s); voided so the "
        "chain goes on (%s), the signed block %s",
        node.org,
        orderer,
        height,
        exc,
        f"{', '.join(refused)} refused it too" if refused else "no peer had refused it yet",
        evidence.describe(),
    )
    return f"a block signed by member {orderer} that fails validation ({exc})"


def catch_up_from_peers(node: Node, *, limit: int = 64) -> None:
    """Fetch and commit blocks from peers until none is ahead (used before ordering).

    The peers' statuses come first: their heights, and their attestations, which
    name the chain to commit (`node.vouching`). Each peer's next page of
    `limit` blocks is fetched while the page before it commits (`FetchAhead`).
    Progress is logged and shown in the node's status (`node.catching_up`),
    against the height each peer reports."""
    clients = [
        (org, NodeClient(url, node.org, node.keys.signing, timeout=10.0))
        for org, url in node.config.peers
    ]
    try:
        heights: dict[str, int] = {}
        for org, client in clients:
            try:
                status = client.status()
            except (httpx.HTTPError, SharechainError) as exc:
                log.info("catch-up from %s skipped: %s", org, exc)
                continue
            heights[org] = _height(status)
            if isinstance(status, dict):
                receive_attestations(node, org, status.get("attestations", []))
        for org, client in clients:
            if org not in heights or node.halted is not None:
                continue
            try:
                with catching_up(node, org, heights[org]) as progress:
                    _catch_up_from(node, org, client, limit, progress)
            except (httpx.HTTPError, SharechainError) as exc:
                log.info("catch-up from %s skipped: %s", org, exc)
    finally:
        for _, client in clients:
            client.close()


def _catch_up_from(
    node: Node, org: str, client: NodeClient, limit: int, progress: CatchUp | None
) -> None:
    """Commit `client`'s pages until it has no more, one commits nothing, or the node halts.

    With peers to vouch, only blocks up to the one they vouch for are taken, each
    the one they vouch for: this peer's blocks are walked back from it first
    (`VouchedChain`). A page that commits only in part (a block held already,
    an invalid one) leaves what was fetched after it unused: fetching starts
    again from where the chain now ends. A value that is not a member's signed
    block at all (junk, a forged signature, a block that does not link), or not
    the vouched one, is the peer's lie, not a faulty orderer: the node refuses
    it with an ALERT, leaves that peer and goes on with the next, where an
    invalid block a member did sign halts it."""
    source = f"peer {org}"
    chain = VouchedChain(source, "peer") if quorum(node) is not None else None

    def read(lo: int, hi: int) -> list[tuple[int, bytes]]:
        return list(enumerate(client.sync_blocks(lo, limit=min(hi - lo + 1, limit)), lo))

    for _ in range(100_000):
        start = node.ledger.height + 1
        if chain is not None:
            why = chain.extend(node, read, window=limit)
            if why is not None:
                alert = why.startswith(source)  # the peer's blocks do not lead there
                log.log(
                    logging.ERROR if alert else logging.INFO,
                    "%s%s: catching up from %s stopped: %s%s",
                    "ALERT " if alert else "",
                    node.org,
                    org,
                    why,
                    "; refused, catching up from the other peers" if alert else "",
                )
                return
            if chain.top < start:
                return  # nothing vouched above this node's head
        fetch = FetchAhead(
            lambda height: client.sync_blocks(height, limit=limit),
            start,
            name=f"{node.org}-fetch-ahead",
        )
        with contextlib.closing(fetch) as pages:
            for first, blocks in pages:
                if chain is not None:
                    blocks = blocks[: max(0, chain.top - first + 1)]
                    if (wrong := chain.unvouched(first, blocks)) is not None:
                        chain.refused(node, wrong, blocks[wrong - first])
                        return
                if not blocks:
                    if chain is None:
                        return
                    break  # up to the vouched block: perhaps the peers vouch for more now
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
