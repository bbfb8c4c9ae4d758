"""Validating a follower's arriving blocks with the ledger's block pipeline.

A follower validates every block it did not build. `Ledger.commit` does it
one block at a time: the signature checks of a block run on a thread pool
while the committing thread waits for them, then the block executes. When
several blocks arrive together (a backlog, a group of
`sharechain.node.arrivals`, committed in one store transaction), `commit_stream`
(`sharechain.ledger.pipeline`) verifies block k+1 in a worker process while
block k executes and commits here, and shares each block's checks between
that process and this one by their measured times. A block that arrives
alone is validated the plain way (`wanted`). Outcomes are those of
`Ledger.commit`: the same validation, the same `ChainError` at the first bad
block, nothing of it written.

A node starts its worker process (one on two cores: four nodes share the
machine in the benchmark) when it starts following (`start`). Should a
worker die, this node stops using the pipeline and validates the remaining
blocks the plain way (`commit_blocks` returns them uncommitted).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from sharechain.errors import ChainError, EncodingError
from sharechain.ledger.blocks import Block
from sharechain.ledger.chain import Ledger
from sharechain.ledger.execution import Execution
from sharechain.ledger.pipeline import commit_stream, start_workers

__all__ = ["FollowPipeline"]

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

    def wanted(self, blocks: Sequence[tuple[Block, bytes, Execution | None]]) -> bool:
        """Whether `blocks` (a group for `Node.commit_many`) go through the pipeline:
        two or more, none built here. A block alone has no next block to verify
        meanwhile: handing its checks to the worker cost more than the thread
        pool (measured: 22% fewer blocks per second, 8% more CPU)."""
        return self.on and len(blocks) > 1 and all(ex is None for _, _, ex in blocks)

    def commit_blocks(
        self,
        ledger: Ledger,
        blocks: Sequence[tuple[Block, bytes]],
        done: list[tuple[Block, Execution, float]],
    ) -> tuple[int, ChainError | None]:
        """Validate and commit `blocks` in order, appending each committed one to `done`.

        Returns how many of `blocks` it committed and the `ChainError` of the
        first that did not validate (None: all did, or the pipeline failed,
        and the caller commits the rest itself). Commits through `ledger`, so
        inside the caller's `Store.group` the blocks share one transaction.
        """
        count = 0
        started = time.perf_counter()
        try:
            for block, ex in commit_stream(ledger, (data for _, data in blocks)):
                now = time.perf_counter()
                done.append((block, ex, now - started))
                count, started = count + 1, now
        except ChainError as exc:
            return count, exc
        except EncodingError as exc:  # the caller decoded it already: not expected
            return count, ChainError(str(exc), blocks[count][0].height)
        except (RuntimeError, BrokenPipeError) as exc:
            # A signature worker died (nothing of the block it was checking is
            # written): validate the rest without the pipeline from now on.
            self.on = False
            log.error("ALERT the block pipeline failed (%s); validating without it", exc)
        return count, None
