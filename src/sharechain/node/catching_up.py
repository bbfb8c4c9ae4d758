"""How far a node catching up has come: a log line every few seconds, and its status.

A node that starts behind its network (restored from an old backup, newly
admitted, down for a while) commits the blocks it missed before it serves
as a current peer, which on a network that has run for years takes minutes
or hours. While it does, `Node.catching_up` holds a `CatchUp`: the node
logs where it is every `EVERY` seconds (height and target, blocks and
transactions a second, the time left at that rate), shows the same in
`GET /v1/status` (`catch_up`) and `sharechain node status`, sets the metrics
`sharechain_catch_up_blocks_left` and `sharechain_catch_up_eta_seconds`
(0 once current), and logs one line when it is done.

Each committed block advances it (`Node._announce`); the loops that catch
up set the target: the peer's height (`arrivals.catch_up_from_peers`) or
the ordering log's head (`etcd_watch.etcd_watcher`), raised as the log
grows meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the node imports this module
    from sharechain.node.service import Node

__all__ = ["EVERY", "CatchUp", "begin", "catching_up", "end", "show"]

log = logging.getLogger("sharechain.node")

EVERY = 5.0
"""Seconds between two progress lines in the log."""


class CatchUp:
    """A node catching up from height `start` to `target`, from `source`."""

    def __init__(
        self,
        source: str,
        start: int,
        target: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        every: float = EVERY,
    ) -> None:
        self.source = source
        self.start = start
        self.target = target
        self.height = start
        self.txs = 0
        self._clock = clock
        self._every = every
        self.started = self._logged = clock()

    def advance(self, height: int, txs: int) -> None:
        """Block `height`, of `txs` transactions, is committed; log if a line is due."""
        self.height = max(self.height, height)
        self.target = max(self.target, self.height)
        self.txs += txs
        now = self._clock()
        if now - self._logged >= self._every:
            self._logged = now
            log.info("%s", self.describe(now))

    def raise_target(self, target: int) -> None:
        """The source has grown to `target` meanwhile."""
        self.target = max(self.target, target)

    def figures(self, now: float | None = None) -> dict[str, Any]:
        """Where it is, as `GET /v1/status` shows it (`catch_up`)."""
        now = self._clock() if now is None else now
        seconds = max(now - self.started, 1e-9)
        blocks = self.height - self.start
        rate = blocks / seconds
        left = self.target - self.height
        total = self.target - self.start
        return {
            "source": self.source,
            "start": self.start,
            "height": self.height,
            "target": self.target,
            "done": round(blocks / total, 4) if total > 0 else 1.0,
            "blocks_per_s": round(rate, 1),
            "tx_per_s": round(self.txs / seconds, 1),
            "seconds": round(seconds, 1),
            "eta_seconds": round(left / rate, 1) if rate > 0 else None,
        }

    def describe(self, now: float | None = None) -> str:
        f = self.figures(now)
        eta = "unknown" if f["eta_seconds"] is None else _duration(f["eta_seconds"])
        return (
            f"catching up from {f['source']}: block {f['height']:,} of {f['target']:,}"
            f" ({100 * f['done']:.1f}%), {f['blocks_per_s']:,.0f} blocks/s"
            f" ({f['tx_per_s']:,.0f} tx/s), about {eta} left"
        )

    def finish(self) -> None:
        f = self.figures()
        reached = "caught up" if self.height >= self.target else "stopped catching up"
        log.info(
            "%s from %s at block %s: %s blocks, %s transactions in %s (%s tx/s)",
            reached,
            self.source,
            f"{self.height:,}",
            f"{self.height - self.start:,}",
            f"{self.txs:,}",
            _duration(f["seconds"]),
            f"{f['tx_per_s']:,.0f}",
        )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def begin(node: Node, source: str, target: int) -> CatchUp | None:
    """Set `node.catching_up` for committing up to `target` from `source` (None, and
    nothing logged, when the node is there already or another loop reports its
    catching up); `end` it when done."""
    if target <= node.ledger.height or node.catching_up is not None:
        return None
    progress = CatchUp(source, node.ledger.height, target, every=EVERY)
    node.catching_up = progress
    show(node, progress)
    log.info(
        "catching up from %s: block %s to %s",
        source,
        f"{node.ledger.height + 1:,}",
        f"{target:,}",
    )
    return progress


def end(node: Node, progress: CatchUp) -> None:
    """Clear `node.catching_up` and log where `progress` ended."""
    if node.catching_up is progress:
        node.catching_up = None
        node.metrics.catch_up_blocks_left.set(0)
        node.metrics.catch_up_eta_seconds.set(0)
    progress.finish()


def show(node: Node, progress: CatchUp) -> None:
    """`progress` in the node's metrics (`sharechain_catch_up_*`)."""
    figures = progress.figures()
    node.metrics.catch_up_blocks_left.set(figures["target"] - figures["height"])
    eta = figures["eta_seconds"]
    node.metrics.catch_up_eta_seconds.set(float("nan") if eta is None else eta)


@contextmanager
def catching_up(node: Node, source: str, target: int) -> Iterator[CatchUp | None]:
    """`begin` ... `end` around the caller's catching up."""
    progress = begin(node, source, target)
    try:
        yield progress
    finally:
        if progress is not None:
            end(node, progress)
