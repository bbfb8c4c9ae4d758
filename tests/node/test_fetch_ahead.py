"""FetchAhead: a peer's next page of blocks is asked while this node commits the last."""

from __future__ import annotations

import threading
import time
from contextlib import closing

import pytest

from sharechain.node.fetch_ahead import FetchAhead


class Peer:
    """Pages of `size` blocks up to `height`; records each page asked for."""

    def __init__(self, height: int, size: int = 3) -> None:
        self.height, self.size = height, size
        self.asked: list[int] = []
        self.second_asked = threading.Event()

    def __call__(self, start: int) -> list[bytes]:
        self.asked.append(start)
        if len(self.asked) == 2:
            self.second_asked.set()
        end = min(self.height, start + self.size - 1)
        return [b"block %d" % h for h in range(start, end + 1)]


def test_pages_follow_each_other_and_end_at_an_empty_one() -> None:
    peer = Peer(height=10)
    with closing(FetchAhead(peer, 1, name="t")) as pages:
        got = list(pages)
    assert [first for first, _ in got] == [1, 4, 7, 10, 11]
    assert got[-1] == (11, [])
    assert [b for _, blocks in got for b in blocks] == [b"block %d" % h for h in range(1, 11)]
    assert peer.asked == [1, 4, 7, 10, 11]  # nothing asked after the empty page


def test_the_next_page_is_asked_while_the_caller_still_holds_the_last() -> None:
    peer = Peer(height=9)
    with closing(FetchAhead(peer, 1, name="t")) as pages:
        first, _ = next(iter(pages))
        # The caller has not asked for more; the fetcher asks the peer all the same.
        assert peer.second_asked.wait(5.0), "the second page was not fetched ahead"
        assert first == 1


def test_at_most_depth_pages_wait_beyond_the_one_being_fetched() -> None:
    peer = Peer(height=1_000, size=1)
    with closing(FetchAhead(peer, 1, depth=2, name="t")) as pages:
        it = iter(pages)
        next(it)
        time.sleep(0.5)  # the fetcher runs as far ahead as it may
        # One page taken, two waiting, one fetched and waiting for room.
        assert len(peer.asked) <= 4, peer.asked


def test_a_fetch_error_reaches_the_caller_after_the_pages_before_it() -> None:
    calls: list[int] = []

    def fetch(start: int) -> list[bytes]:
        calls.append(start)
        if start > 1:
            raise ConnectionError("peer went away")
        return [b"block 1"]

    with closing(FetchAhead(fetch, 1, name="t")) as pages:
        it = iter(pages)
        assert next(it) == (1, [b"block 1"])
        with pytest.raises(ConnectionError, match="peer went away"):
            next(it)


def test_close_stops_fetching() -> None:
    peer = Peer(height=10**9, size=1)
    with closing(FetchAhead(peer, 1, name="t")) as pages:
        next(iter(pages))
    asked = len(peer.asked)
    time.sleep(0.3)
    assert len(peer.asked) == asked  # nothing more after the fetcher was closed


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="depth must be at least 1"):
        FetchAhead(Peer(1), 1, depth=0, name="t")
