"""Block time: the only clock contracts have, so a bounded one.

Grants expire, risk windows roll and key releases are dated by block time;
an orderer that could stamp a block with any time could expire every grant
early or keep an expired one alive. Two bounds hold it:

- a block is never earlier than its parent (`Ledger.validate_block`, always);
- a peer following the chain live refuses a block more than `max_skew`
  seconds away from its own clock (`BlockClock`). A block from the future is
  refused at any time; one from the past only while the peer is caught up,
  since a peer catching up after downtime legitimately receives old blocks.

Whoever builds a block takes the time from its own clock, never from a
transaction, a flag or the environment (`Ledger.build_block`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sharechain.errors import ClockSkewError
from sharechain.ledger.blocks import BlockHeader

__all__ = ["DEFAULT_MAX_SKEW", "BlockClock"]

DEFAULT_MAX_SKEW = 30.0
"""Seconds a live block's time may differ from a peer's clock."""


def _always() -> bool:
    return True


@dataclass(frozen=True, slots=True)
class BlockClock:
    """A peer's clock and how far a live block's time may stray from it."""

    now: Callable[[], float] = time.time
    """Seconds since the epoch (injected in tests)."""
    max_skew: float = DEFAULT_MAX_SKEW
    """Largest accepted distance, in seconds, between block time and `now`."""
    live: Callable[[], bool] = field(default=_always)
    """True while blocks arrive as they are made (the peer is caught up): only
    then is a block too far in the past refused."""

    def check(self, header: BlockHeader) -> None:
        """Raise `ClockSkewError` (a `ChainError`) if `header`'s time is too far from this clock."""
        now_ms = int(self.now() * 1000)
        skew_ms = int(self.max_skew * 1000)
        ahead = header.timestamp - now_ms
        if ahead > skew_ms:
            raise ClockSkewError(
                f"block {header.height}: its time is {ahead / 1000:.1f} s ahead of this "
                f"node's clock (at most {self.max_skew:g} s allowed); the orderer "
                f"{header.orderer!r} or this node's clock is wrong: check both clocks (NTP)",
                header.height,
            )
        if -ahead > skew_ms and self.live():
            raise ClockSkewError(
                f"block {header.height}: its time is {-ahead / 1000:.1f} s behind this "
                f"node's clock (at most {self.max_skew:g} s allowed); the orderer "
                f"{header.orderer!r} or this node's clock is wrong: check both clocks (NTP)",
                header.height,
            )
