"""Validating a follower's arriving blocks with the ledger's block pipeline.

A follower validates every block it did not build. `Ledger.commit` does it
one block at a time: the signature checks of a block run on a thread pool
while the committing thread waits for them, then the block executes. When
several blocks arrive together (a backlog, a group of
`sharechain.node.arrivals`, committed in one store transaction), `commit_stream`
(`sharechain.ledger.pipeline`) verifies block k+1 in a worker process while
block k executes and commits here, and shares each block's checks with it
in chunks (whoever is free takes the next). A block that arrives
alone is validated the plain way (`wanted`). Outcomes are those of
`Ledger.commit`: the same validation, the same `ChainError` at the first bad
block, nothing of it written. A backlog of several groups goes through one
stream (`stream`, `Stream.take` a group at a time), so the pipeline does not
start over at each group: the first block of a group is verified while the
last of the group before executes (a node catching up 1.24x faster).

A node starts its worker process (one on two cores: four nodes share the
machine in the benchmark) when it starts following (`start`). Should a
worker die, this node stops using the pipeline and validates the remaining
blocks the plain way (`Stream.take` leaves them to its caller).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import closing

from sharechain.errors import ChainError, EncodingError
from sharechain.ledger.blocks import Block
from sharechain.ledger.chain import Ledger
from sharechain.ledger.execution import Execution
from sharechain.ledger.pipeline import commit_stream, start_workers

__all__ = ["FollowPipeline", "Stream"]

log = logging.getLogger("sharechain.node")


class FollowPipeline:
    """Whether a node validates arriving blocks through `commit_stream`, and doing so."""

    def __init__(self) -> None:
        self.on = False
        """True once `start` ran and until a worker fails."""

    def start(self) -> None:
        """Start the worker processes (shared by every node in this process)."""
        start_workers()
        self.on = True

    def wanted(self, blocks: Sequence[tuple[Block, bytes]]) -> bool:
        """Whether a backlog of `blocks` arriving from elsewhere goes through the
        pipeline (`stream`): two or more. A block alone has no next block to
        verify meanwhile: handing its checks to the worker cost more than the
        thread pool (measured: 22% fewer blocks per second, 8% more CPU)."""
        return self.on and len(blocks) > 1

    def stream(self, ledger: Ledger, blocks: Sequence[tuple[Block, bytes]]) -> closing[Stream]:
        """One `commit_stream` over all of `blocks`, committed a group at a time
        (`Stream.take`): the workers check the next group's first block while
        this group's last one executes, instead of the pipeline starting over
        at each group. Closed (its blocks in flight drained) on leaving."""
        return closing(Stream(self, ledger, blocks))


class Stream:
    """A block pipeline over a backlog, handed out a group at a time (`FollowPipeline.stream`)."""

    def __init__(
        self, owner: FollowPipeline, ledger: Ledger, blocks: Sequence[tuple[Block, bytes]]
    ) -> None:
        self._owner = owner
        self._blocks = blocks
        self._stream = commit_stream(ledger, [data for _, data in blocks])
        self.taken = 0
        """Blocks committed through it so far."""
        self.broken = False
        """True once a block did not validate or the pipeline failed: take no more."""

    def take(
        self, count: int, done: list[tuple[Block, Execution, float]]
    ) -> tuple[int, ChainError | None]:
        """Commit the stream's next `count` blocks, appending each to `done`; returns
        how many it committed and the `ChainError` of the first that did not
        validate (None: all did, or the pipeline failed, and the caller commits
        the rest itself, the plain way, as it does every block after it)."""
        if self.broken:
            return 0, None
        taken = 0
        started = time.perf_counter()
        try:
            for _ in range(count):
                block, ex = next(self._stream)
                now = time.perf_counter()
                done.append((block, ex, now - started))
                taken, started = taken + 1, now
                self.taken += 1
        except ChainError as exc:
            self.broken = True
            return taken, exc
        except EncodingError as exc:  # the caller decoded it already: not expected
            self.broken = True
            return taken, ChainError(str(exc), self._blocks[self.taken][0].height)
        except (RuntimeError, BrokenPipeError) as exc:
            # A signature worker died (nothing of the block it was checking is
            # written): validate the rest without the pipeline from now on.
            # (StopIteration, a RuntimeError inside a generator, cannot come:
            # callers take no more blocks than they gave.)
            self.broken = True
            self._owner.on = False
            log.error("ALERT the block pipeline failed (%s); validating without it", exc)
        return taken, None

    def close(self) -> None:
        """Stop the stream: blocks read ahead and not taken are drained, not committed."""
        self.broken = True
        self._stream.close()
