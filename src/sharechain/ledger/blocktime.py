"""Block time: the only clock contracts have, so a bounded one.

Grants expire, risk windows roll and key releases are dated by block time;
an orderer that could stamp a block with any time could expire every grant
early or keep an expired one alive. Two bounds hold it:

- a block is never earlier than its parent (`Ledger.validate_block`, always);
- a peer following the chain live refuses a block more than `max_skew`
  seconds away from its own clock (`BlockClock`). A block from the future is
  refused at any time; one from the past only while the peer is caught up,
  since a peer catching up after downtime legitimately receives old blocks.

Peers' clocks differ a little, so a block stamped near the bound may be
refused by one peer and accepted by another. A block between half the bound
and the bound is *uncertain*: a node following the etcd log commits it only
after its peers had time to refuse it (`node.arrivals`), and marks it
*settled*, so that the wait does not push it past the bound; a block past
the bound is refused, and voided only when its peers did not commit it
(docs/security.md, threat 43).

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


def _never(header: BlockHeader) -> bool:
    return False


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
    settled: Callable[[BlockHeader], bool] = field(default=_never)
    """True for an uncertain block this peer decided to commit after waiting for
    its peers (`node.arrivals`): its time is not held to the bound again."""

    def ahead_ms(self, header: BlockHeader) -> int:
        """How far `header`'s time is ahead of this clock, in ms (negative: behind)."""
        return header.timestamp - int(self.now() * 1000)

    def uncertain(self, header: BlockHeader) -> bool:
        """Whether `header`'s time is more than half the bound from this clock but within
        it (behind: only while live), and not settled: a peer whose clock differs a
        little may refuse it."""
        ahead = self.ahead_ms(header)
        if ahead < 0 and not self.live():
            return False
        skew_ms = int(self.max_skew * 1000)
        return skew_ms // 2 < abs(ahead) <= skew_ms and not self.settled(header)

    def check(self, header: BlockHeader) -> None:
        """Raise `ClockSkewError` (a `ChainError`) if `header`'s time is too far from this clock."""
        skew_ms = int(self.max_skew * 1000)
        ahead = self.ahead_ms(header)
        if abs(ahead) > skew_ms and self.settled(header):
            return
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
