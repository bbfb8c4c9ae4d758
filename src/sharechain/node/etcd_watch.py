"""Following the etcd log: every block appended by the leader, committed in order.

The watch starts at the local height (catching up first, also after
compaction) and commits each block after validating it (except the
leader's own blocks, which it executed when it built them). The log is read
ahead on a thread of its own (`sharechain.ordering.etcd_backlog`), so a node that fell behind sees
its backlog and commits it in groups (`apply_remote_blocks`).

While this node leads and its last append won the head of the log, the
watch pauses: every block up to the head is one it committed itself, and
reading them back cost it (and etcd, which serialises each event once per
watcher) CPU for nothing. A lost race, a failed append, a peer reporting a
greater height or another leader resumes it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

from sharechain.errors import ChainError, OrderingError
from sharechain.node.arrivals import (
    GROUP_BLOCKS,
    apply_log_blocks,
    catch_up_from_peers,
)
from sharechain.node.catching_up import begin, end
from sharechain.node.service import Node
from sharechain.node.vouching import VouchedChain, block_hash, fetch_vouched, quorum
from sharechain.ordering.etcd_backlog import Backlog, Read
from sharechain.ordering.etcd_compact import oldest_height
from sharechain.ordering.etcd_log import EtcdLog
from sharechain.ordering.foreign_values import Foreign, ForeignAlarm

__all__ = ["caught_up_with", "ensure_genesis_in_log", "etcd_watcher"]

log = logging.getLogger("sharechain.node")

_SOURCE = "the etcd log"
"""The etcd log, as a node's log lines name it."""

_PAUSE_POLL = 0.05
"""Seconds between a paused watch's checks whether it must resume."""

_PAUSE_CHECK = 0.5
"""Seconds between a paused watch's reads of the log's head: a node that does not
forward to this leader (no peer URL for it) appends its own blocks, and nothing
else would tell this node about them."""


def caught_up_with(head: int, height: int, watched: bool) -> bool:
    """Whether a node at `height` that just committed a group counts as caught up
    with a log whose head is `head`.

    At the head, always. Under steady load a block is appended while each group
    commits, so the head is then rarely the height itself: a node also counts
    once a watch event delivered the group's last block (`watched`: it has read
    everything the log held when its range reads ended, so what remains was
    appended since, and is recent) and it is within a group of the head. Blocks
    read by range (an old backlog, perhaps from a network idle for hours) never
    count: the blocks after them are checked as live (`ledger.blocktime`), and an
    old one would be refused as being in the past.
    """
    return head <= height or (watched and head - height <= GROUP_BLOCKS)


def ensure_genesis_in_log(node: Node, etcd: EtcdLog) -> None:
    """Write the genesis block at height 0, or check the one there is ours.

    Read first: a log that has it needs no write, so a node restarts while
    etcd refuses writes (a NOSPACE alarm the compaction loop may lift).
    """
    genesis = node.datadir.genesis_bytes()
    for attempt in range(60):
        try:
            found = etcd.get(0)
            ours = found == genesis if found is not None else etcd.append(0, genesis)
            if not ours:
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


def etcd_watcher(node: Node, etcd: EtcdLog) -> None:
    failures = 0
    paused = _Paused(node)
    alarm = ForeignAlarm(node.org)
    chain = VouchedChain(_SOURCE, "etcd")
    recheck = 0.0
    while not node.stop_event.is_set() and node.halted is None:
        if paused.is_set():
            node.watch_paused = True
            node.stop_event.wait(_PAUSE_POLL)
            if time.monotonic() >= recheck:
                recheck = time.monotonic() + _PAUSE_CHECK
                with contextlib.suppress(OrderingError):
                    if etcd.head() > node.ledger.height:
                        node.log_is_mine = False  # someone appended past us: watch again
            continue
        node.watch_paused = False
        start = node.ledger.height + 1
        try:
            if start < oldest_height(etcd):
                # Pruned from etcd (`node.compaction`): every peer has these
                # blocks; fetch them there, validated like etcd's.
                catch_up_from_peers(node)
                if node.ledger.height + 1 < oldest_height(etcd):
                    node.stop_event.wait(1.0)  # no peer had them yet: try again
                    continue
                start = node.ledger.height + 1
            head = etcd.head()
            if head < start:
                node.caught_up = True
            # Behind the log after start: progress in the log and the status.
            progress = None if node.caught_up else begin(node, "the ordering log", head)
            backlog = Backlog(
                etcd, start, paused, name=f"{node.org}-etcd-read", depth=2 * GROUP_BLOCKS
            )
            try:
                while (ready := backlog.take(GROUP_BLOCKS)) is not None:
                    failures = 0
                    foreign = _apply_watched(node, ready, etcd, chain)
                    if node.halted is not None:
                        return
                    if foreign is not None:
                        alarm.raise_alarm(foreign, etcd.void(foreign.height, foreign.data))
                        node.note_voided(foreign.height)
                        break  # read the height again: the leader appends there
                    if not node.caught_up:
                        with contextlib.suppress(OrderingError):
                            head = etcd.head()
                            last, _, watched = ready[-1]
                            at = node.ledger.height
                            node.caught_up = caught_up_with(head, at, watched and last <= at)
                            if progress is not None:
                                progress.raise_target(head)
                    if progress is not None and node.caught_up:
                        end(node, progress)
                        progress = None
            finally:
                backlog.close()
                if progress is not None:
                    end(node, progress)
        except OrderingError as exc:
            failures += 1
            log.warning("etcd watch interrupted: %s", exc)
            node.stop_event.wait(min(2.0, 0.1 * 2**failures))


def _apply_watched(
    node: Node, ready: list[Read], etcd: EtcdLog, chain: VouchedChain
) -> Foreign | None:
    """Commit blocks read from the log: ours as built, others validated, in groups.

    Stops at a foreign value and returns it (the blocks before it are committed).
    A block whose time is uncertain is committed once the peers had time to
    refuse it, if `etcd` still holds it then (`arrivals._settle`). A block its
    peers vouch for, or one a range read returned, must be the one they vouch for
    (`node.vouching`).
    """

    def still_logged(height: int, data: bytes) -> bool:
        return etcd.get(height) == data

    remote: list[tuple[int, bytes]] = []
    for height, data, live in ready:
        mine = node.last_appended
        if mine is not None and mine[0] == height and mine[1] == data:
            # Our own block: executed when we built it, no need to re-validate.
            _, foreign = apply_log_blocks(node, remote, still_logged)
            if foreign is not None:
                return foreign
            remote = []
            with node.commit_lock:
                if node.ledger.height == height - 1 and node.halted is None:
                    node.commit(mine[2], data, mine[3])
            continue
        if not remote and height <= node.ledger.height and node.store.block_bytes(height) == data:
            continue  # committed already (the leader's own blocks): nothing to check
        if height > node.ledger.height + len(remote):
            vouched = _vouched_bytes(node, chain, etcd, height, data, live)
            if vouched is None:
                break  # stopping, or halted
            data = vouched
        remote.append((height, data))
    return apply_log_blocks(node, remote, still_logged)[1]


def _vouched_bytes(
    node: Node, chain: VouchedChain, etcd: EtcdLog, height: int, data: bytes, live: bool
) -> bytes | None:
    """The block to commit at `height`, where the log offers `data`: `data` unless the
    peers vouch for another there (then theirs); None if the node stopped meanwhile.

    A block a range read returned above the vouched height waits for the peers first;
    one a watch event delivered is followed at once (`node.vouching`)."""
    if quorum(node) is None:
        return data  # no peers: nobody to vouch
    if height > chain.top:
        if live:
            return data

        def read(lo: int, hi: int) -> Iterator[tuple[int, bytes]]:
            return etcd.range(lo, hi + 1)

        vouched = chain.wait(node, height, read)
        if vouched is None:
            return None
        if not vouched:
            return data  # the log's newest: nobody committed that height yet
    want = chain.expected(height)
    if want is None or block_hash(data) == want:
        return data
    if (found := chain.found.get(height)) is not None and block_hash(found) == want:
        return found
    # The log changed since the walk: refuse `data`, take the vouched block from the log
    # if it holds it now (a value voided and appended again), else from the peers.
    chain.refused(node, height, data)
    now = etcd.get(height)
    if now is not None and block_hash(now) == want:
        return now
    while (found := fetch_vouched(node, height, want)) is None:
        if node.stop_event.wait(1.0):
            return None
    chain.found[height] = found
    return found
