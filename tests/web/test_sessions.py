"""Sessions expire (idle and absolute); failed logins are throttled per key."""

from __future__ import annotations

import pytest

from sharechain.web.accounts import Account
from sharechain.web.sessions import LoginThrottle, SessionBook, ThrottledError, same_token

ANNA = Account("anna", "approver", 0.0)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_idle_and_absolute_expiry() -> None:
    clock = Clock()
    book = SessionBook(now=clock, idle=60, lifetime=300)
    s = book.open(ANNA)
    assert len(s.token) == 64 and len(s.csrf) == 64 and s.token != s.csrf
    for _ in range(4):  # requests every 50 s keep it alive...
        clock.t += 50
        assert book.find(s.token) is not None
    clock.t += 101  # ...until its absolute lifetime (300 s) is over
    assert book.find(s.token) is None
    s2 = book.open(ANNA)
    clock.t += 61
    assert book.find(s2.token) is None  # idle too long


def test_close_and_unknown_tokens() -> None:
    book = SessionBook(now=Clock())
    s = book.open(ANNA)
    other = book.open(ANNA)
    book.close(s.token)
    assert book.find(s.token) is None and book.find("0" * 64) is None
    assert book.set_role(other.token, "viewer") is not None
    assert book.find(other.token).role == "viewer"  # type: ignore[union-attr]
    book.close_all("anna")
    assert book.find(other.token) is None


def test_same_token_never_matches_empty() -> None:
    assert same_token("ab", "ab") and not same_token("", "") and not same_token("ab", "ac")


def test_throttle_counts_failures_in_a_sliding_window() -> None:
    clock = Clock()
    throttle = LoginThrottle(now=clock, limit=3, window=60)
    for _ in range(3):
        throttle.check("address:1", "name:anna")
        throttle.failed("address:1", "name:anna")
        clock.t += 1
    with pytest.raises(ThrottledError, match="wait 58 seconds") as err:
        throttle.check("address:2", "name:anna")  # another address, the same name
    assert 56 < err.value.retry_after <= 58
    throttle.check("address:2", "name:bob")  # other keys are free
    clock.t += 58  # the first failure leaves the window
    throttle.check("address:1", "name:anna")
    throttle.succeeded("address:1", "name:anna")
    throttle.check("address:1", "name:anna")
