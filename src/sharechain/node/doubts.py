"""A follower's doubts about the leader: appending around one that does not order.

Any member's node may win the leader key, and followers forward their
batches to it. A hostile leader could keep the lease (or write the key
without one) and then order nothing of theirs: hang on each forwarded
batch, answer with an error, or answer with receipts for a block that never
comes. Leadership is only an optimisation (`EtcdLog.append` is a
compare-and-set any member may do), so a follower whose batch the leader
failed stops forwarding to that leader's term and appends its own blocks:

- a forward that fails is a failure at once, and so is one still unanswered
  `HANG_SLACK` seconds after its timeout (an answer dripped a byte at a
  time, which the HTTP client's per-read timeout lets through);
- a forward that is answered is a *claim*: each transaction is committed at
  the height its receipt names. Once this node has reached that height (or
  `CLAIM_GRACE` seconds after the answer, whichever comes first), a
  transaction of the batch missing from its own store proves the claim false.

The transactions of a failed or false forward go back into this node's queue
(those already in its store excepted), and into its own blocks.

The doubt lasts `DOUBT` seconds, doubled for each further failure of the
same term up to `DOUBT_MAX`; a new term (another leader, or the same one
with a new lease after a restart) starts trusted. A term trusted again after
a doubt is on probation: a batch it leaves unanswered for `PROBATION`
seconds is a failure, so a hostile leader that hangs on batches holds them
that long once per doubt, not the full timeout and its slack. An honest leader that
failed once (a restart, a moment of overload) costs only some lost append
races meanwhile: the compare-and-set keeps the chain single either way.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sharechain.errors import OrderingError
from sharechain.ordering.etcd_lease import Leader

__all__ = ["CLAIM_GRACE", "DOUBT", "DOUBT_MAX", "HANG_SLACK", "PROBATION", "Doubts", "Forward"]

log = logging.getLogger("sharechain.node")

DOUBT = 60.0
"""Seconds a follower appends around a leader term that failed one of its batches."""
DOUBT_MAX = 900.0
"""The longest doubt, reached by doubling for each further failure of the same term."""
CLAIM_GRACE = 60.0
"""Seconds after a leader's answer within which its claimed block must reach this node."""
HANG_SLACK = 15.0
"""Seconds past its timeout after which an unanswered forward counts as failed."""
PROBATION = 10.0
"""Seconds after which a forward to a term doubted before, still unanswered, counts as
failed (an honest leader answers a batch within about a second: `docs/node.md`)."""
_TERMS_KEPT = 64
"""Doubted terms remembered (their doubt's length, their probation); the oldest go first."""
_SETTLE = 1.0
"""Seconds after an answer before a reached height is checked (the commit's own bookkeeping)."""


@dataclass(slots=True, eq=False)
class Forward:
    """One batch sent to a leader, until it is judged."""

    leader: Leader
    batch: list[bytes]
    sent: float
    answered: float | None = None
    """When the leader answered (None: not yet)."""
    height: int = -1
    """The highest height its receipts named."""
    taken_back: bool = False
    """Judged failed by `Doubts.due` (unanswered too long): its batch went back already."""


class Doubts:
    """The leader terms this node doubts, and the forwards it has still to judge. Thread-safe."""

    def __init__(
        self,
        timeout: float,
        on_doubt: Callable[[Leader], None] = lambda leader: None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self._on_doubt = on_doubt
        self._clock = clock
        self._lock = threading.Lock()
        self._until: dict[Leader, float] = {}
        self._length: dict[Leader, float] = {}
        self._open: list[Forward] = []
        self._head, self._head_at = -1, float("-inf")

    def doubts(self, leader: Leader) -> bool:
        """Whether this node appends its own batches rather than forward them to `leader`."""
        with self._lock:
            return self._until.get(leader, 0.0) > self._clock()

    def doubt(self, leader: Leader, why: str, *, proven: bool = False) -> float:
        """Doubt `leader`'s term (again); the seconds the doubt lasts. `proven`: its
        answer was false (not merely failed, as a leader that died fails)."""
        with self._lock:
            now = self._clock()
            length = min(DOUBT_MAX, self._length.pop(leader, DOUBT / 2) * 2)
            self._length[leader] = length  # last in the order: the newest doubted term
            self._until[leader] = now + length
            for old in [t for t, until in self._until.items() if until <= now]:
                del self._until[old]  # a past doubt: that term is trusted again, on probation
            while len(self._length) > _TERMS_KEPT:
                oldest = next(iter(self._length))
                del self._length[oldest]
                self._until.pop(oldest, None)
        self._on_doubt(leader)
        log.warning(
            "%sleader %s (lease %x) %s: this node appends its own batches for %.0f s",
            "ALERT " if proven else "",
            leader.org,
            leader.lease,
            why,
            length,
        )
        return length

    def sent(self, leader: Leader, batch: list[bytes]) -> Forward:
        """A batch goes to `leader`: judged by `answered`, `failed` or `due`."""
        forward = Forward(leader, batch, self._clock())
        with self._lock:
            self._open.append(forward)
        return forward

    def answered(self, forward: Forward, heights: Sequence[int]) -> None:
        """The leader answered that the batch committed at `heights`: checked by `due`."""
        with self._lock:
            forward.answered = self._clock()
            forward.height = max(heights, default=-1)

    def drop(self, forward: Forward) -> None:
        """Judge the forward no more (the leader's refusal is one this node shares)."""
        with self._lock:
            if forward in self._open:
                self._open.remove(forward)

    def failed(self, forward: Forward, why: str) -> bool:
        """The forward failed: doubt its leader; False if `due` took its batch back already."""
        with self._lock:
            if forward in self._open:
                self._open.remove(forward)
            if forward.taken_back:
                return False
        self.doubt(forward.leader, f"failed a batch of {len(forward.batch)} transactions ({why})")
        return True

    def due(
        self,
        height: int,
        known: Callable[[Sequence[bytes]], set[bytes]],
        log_head: Callable[[], int],
    ) -> list[bytes]:
        """Judge the forwards this node can judge now, at its `height`: doubt each leader
        whose answer was false, or that has not answered well past the timeout, and
        return the transactions those left out (`known`: which ids are in the store).

        A claim is judged once this node reached its height, or once the ordering
        log's head (`log_head`, read only then) is below it: a leader answers after
        its block is in the log, so a claim past the log's head is false.
        """
        now = self._clock()
        with self._lock:
            hung = [
                f
                for f in self._open
                if f.answered is None and now - f.sent > self._hang_limit(f.leader)
            ]
            answered = [(f, now - f.answered) for f in self._open if f.answered is not None]
        settled = [(f, age) for f, age in answered if age >= _SETTLE]
        # Claims past this node's height, still within their grace: judged by the log.
        ahead = [f for f, age in settled if f.height > height and age < CLAIM_GRACE]
        head = self._log_head(log_head, now) if ahead else height
        claims = [f for f, _ in settled if f not in ahead or f.height > head]
        with self._lock:
            if not hung and not claims:
                return []
            for f in hung:
                f.taken_back = True
            judged = {id(f) for f in hung + claims}
            self._open = [f for f in self._open if id(f) not in judged]
        left_out: list[bytes] = []
        for f in hung:
            self.doubt(f.leader, f"has not answered a batch in {now - f.sent:.0f} s")
            left_out += _missing(f.batch, known)
        for f in claims:
            missing = _missing(f.batch, known)
            if missing:
                self.doubt(
                    f.leader,
                    f"answered that {len(missing)} transactions committed by height "
                    f"{f.height}, and this node has not got them",
                    proven=True,
                )
                left_out += missing
        return left_out

    def _hang_limit(self, leader: Leader) -> float:
        """Seconds a forward to `leader` may stay unanswered (caller holds the lock)."""
        if leader in self._length:  # doubted before: on probation
            return min(PROBATION, self.timeout + HANG_SLACK)
        return self.timeout + HANG_SLACK

    def _log_head(self, read: Callable[[], int], now: float) -> int:
        """The log's head, read at most once in `_SETTLE` seconds: a claim is judged only
        `_SETTLE` seconds after its answer, so the head read is never older than it."""
        if now - self._head_at >= _SETTLE:
            try:
                self._head = read()
            except OrderingError:
                self._head = -1  # etcd unreachable: judge no claim by the log meanwhile
            self._head_at = now
        return self._head if self._head >= 0 else 1 << 62


def _missing(batch: list[bytes], known: Callable[[Sequence[bytes]], set[bytes]]) -> list[bytes]:
    """The transactions of `batch` whose ids `known` does not find in the store."""
    ids = [hashlib.sha256(raw).digest() for raw in batch]
    done = known(ids)
    return [raw for raw, i in zip(batch, ids, strict=True) if i not in done]
