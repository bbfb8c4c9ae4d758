"""A follower's doubts about the leader (`node.doubts`), on an injected clock."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from sharechain.errors import OrderingError
from sharechain.node.doubts import CLAIM_GRACE, DOUBT, DOUBT_MAX, HANG_SLACK, PROBATION, Doubts
from sharechain.ordering.etcd_lease import Leader

HOSTILE = Leader("bank-b", 7)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _store(*raws: bytes) -> Callable[[Sequence[bytes]], set[bytes]]:
    ids = {hashlib.sha256(r).digest() for r in raws}

    def known(asked: Sequence[bytes]) -> set[bytes]:
        return ids & set(asked)

    return known


def test_a_doubt_lasts_its_time_doubles_and_a_new_term_starts_trusted() -> None:
    clock = Clock()
    doubted: list[Leader] = []
    doubts = Doubts(30.0, doubted.append, clock=clock)
    assert not doubts.doubts(HOSTILE)
    assert doubts.doubt(HOSTILE, "failed") == DOUBT
    assert doubts.doubts(HOSTILE) and not doubts.doubts(Leader("bank-b", 8))
    clock.now += DOUBT + 1
    assert not doubts.doubts(HOSTILE)
    lengths = [doubts.doubt(HOSTILE, "failed again") for _ in range(6)]
    assert lengths == [2 * DOUBT, 4 * DOUBT, 8 * DOUBT, DOUBT_MAX, DOUBT_MAX, DOUBT_MAX]
    assert doubted == [HOSTILE] * 7


def test_a_false_claim_is_judged_at_the_height_or_by_the_log_head() -> None:
    clock = Clock()
    doubts = Doubts(30.0, clock=clock)
    honest, lie = [b"tx-1", b"tx-2"], [b"tx-3"]
    kept = doubts.sent(Leader("hospital-a", 1), honest)
    doubts.answered(kept, [12, 12])
    false = doubts.sent(HOSTILE, lie)
    doubts.answered(false, [12])
    heads: list[int] = []

    def head() -> int:
        heads.append(12)
        return 12

    known = _store(*honest)
    assert doubts.due(11, known, head) == []  # within the settling second: nothing judged
    clock.now += 1.5
    # This node is at 11, the log at 12: both claims may still be true, nothing judged.
    assert doubts.due(11, _store(), head) == [] and heads == [12]
    assert doubts.due(11, _store(), head) == [] and heads == [12]  # the head is read once a second
    # At 12, the honest claim holds and the false one is proven.
    assert doubts.due(12, known, head) == lie
    assert doubts.doubts(HOSTILE) and not doubts.doubts(Leader("hospital-a", 1))
    assert doubts.due(12, known, head) == []  # each forward is judged once


def test_a_claim_past_the_log_head_is_false_at_once_and_an_unreadable_log_judges_nothing() -> None:
    clock = Clock()
    doubts = Doubts(30.0, clock=clock)
    far = doubts.sent(HOSTILE, [b"tx-9"])
    doubts.answered(far, [1_000_000])
    clock.now += 1.5

    def unreachable() -> int:
        raise OrderingError("no quorum")

    assert doubts.due(5, _store(), unreachable) == []
    clock.now += 1.5
    assert doubts.due(5, _store(), lambda: 5) == [b"tx-9"]
    # And one the log never reached is judged when its grace runs out, log or not.
    late = doubts.sent(Leader("regulator", 3), [b"tx-10"])
    doubts.answered(late, [1_000_000])
    clock.now += CLAIM_GRACE + 1
    assert doubts.due(5, _store(), unreachable) == [b"tx-10"]


def test_an_unanswered_forward_is_taken_back_once() -> None:
    clock = Clock()
    doubts = Doubts(30.0, clock=clock)
    hung = doubts.sent(HOSTILE, [b"tx-1", b"tx-2"])
    clock.now += 30 + HANG_SLACK - 1
    assert doubts.due(0, _store(), lambda: 0) == []
    clock.now += 2
    assert doubts.due(0, _store(b"tx-1"), lambda: 0) == [b"tx-2"]  # tx-1 committed meanwhile
    assert doubts.doubts(HOSTILE)
    # When the hung request finally fails, its batch is not queued a second time.
    assert doubts.failed(hung, "read timeout") is False
    other = doubts.sent(Leader("regulator", 3), [b"tx-5"])
    assert doubts.failed(other, "connection refused") is True
    assert doubts.doubts(Leader("regulator", 3))


def test_a_term_trusted_again_after_a_doubt_is_on_probation() -> None:
    """A hostile leader that hangs on batches holds them for `PROBATION` seconds once per
    doubt, not for the timeout and its slack; a term never doubted keeps the full time."""
    clock = Clock()
    doubts = Doubts(30.0, clock=clock)
    first = doubts.sent(HOSTILE, [b"tx-1"])
    clock.now += 30 + HANG_SLACK + 1
    assert doubts.due(0, _store(), lambda: 0) == [b"tx-1"] and doubts.doubts(HOSTILE)
    assert doubts.failed(first, "read timeout") is False
    clock.now += DOUBT + 1  # the doubt runs out: the term is trusted again, on probation
    assert not doubts.doubts(HOSTILE)
    honest = Leader("hospital-a", 4)
    doubts.sent(HOSTILE, [b"tx-2"])
    doubts.sent(honest, [b"tx-3"])
    clock.now += PROBATION - 1
    assert doubts.due(0, _store(), lambda: 0) == []
    clock.now += 2
    assert doubts.due(0, _store(), lambda: 0) == [b"tx-2"]  # the fresh term still waits
    assert doubts.doubts(HOSTILE) and not doubts.doubts(honest)
    clock.now += 30 + HANG_SLACK - PROBATION
    assert doubts.due(0, _store(), lambda: 0) == [b"tx-3"]
    assert doubts.doubt(HOSTILE, "failed once more") == 4 * DOUBT  # its doubts still double


def test_doubted_terms_are_remembered_within_a_bound() -> None:
    clock = Clock()
    doubts = Doubts(30.0, clock=clock)
    for lease in range(200):
        doubts.doubt(Leader("bank-b", lease), "failed")
        clock.now += DOUBT_MAX + 1
    assert len(doubts._length) <= 64 and len(doubts._until) <= 64
    assert doubts.doubt(Leader("bank-b", 199), "failed") == 2 * DOUBT  # the newest is kept
