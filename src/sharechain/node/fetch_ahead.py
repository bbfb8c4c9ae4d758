"""Fetching a peer's next blocks while this node commits the ones it has.

A node catching up from a peer (`arrivals.catch_up_from_peers`) asks for a
page of blocks, validates and commits it, and asks for the next. Fetched in
turn, every page waits for the one before to commit, and every commit for the
next page to arrive: the peer's reading and sending, the link's latency and
this node's decoding add to the catch-up's time instead of overlapping it.
`FetchAhead` asks for page k+1 on a thread of its own while page k commits,
holding at most `depth` pages not yet taken (memory: a page is at most 256
blocks and 32 MiB, the peer's `/v1/sync/blocks` bounds).

Pages follow each other by height: the next is asked from where the last
ended. The caller that commits fewer blocks than a page held (a block it had
already, an invalid one) closes the fetcher and starts another from where its
chain now ends; nothing fetched ahead is committed without its validation.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

from sharechain.handoff import put_until

__all__ = ["FetchAhead", "Page"]

Page = tuple[int, list[bytes]]
"""A page of blocks: the height of its first block, and their encodings in order."""

_POLL = 0.1
"""Seconds between two looks at the stop flag while the queue is full or empty."""


class FetchAhead:
    """The pages `fetch(start)` returns, from `start` on, each asked while the last is used.

    Iterating yields pages until one is empty (the peer has no more), then stops;
    an exception `fetch` raised is raised to the iterating caller at the point its
    page would have come. `close` stops the fetching (use it with
    `contextlib.closing`): a page being fetched is dropped when it arrives.
    """

    def __init__(
        self, fetch: Callable[[int], list[bytes]], start: int, *, depth: int = 1, name: str
    ) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._fetch = fetch
        self._pages: queue.Queue[Page | BaseException] = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(start,), name=name, daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[Page]:
        while not self._closed.is_set():
            try:
                item = self._pages.get(timeout=_POLL)
            except queue.Empty:
                if not self._thread.is_alive() and self._pages.empty():
                    return  # ended without a last page (closed meanwhile)
                continue
            if isinstance(item, BaseException):
                raise item
            yield item
            if not item[1]:
                return

    def close(self) -> None:
        """Stop fetching. Does not wait for a page being fetched: it is dropped on arrival."""
        self._closed.set()
        self._thread.join(timeout=_POLL * 2)

    def _run(self, start: int) -> None:
        while not self._closed.is_set():
            try:
                blocks = self._fetch(start)
            except BaseException as exc:  # raised to the iterating caller
                self._put(exc)
                return
            if not self._put((start, blocks)) or not blocks:
                return
            start += len(blocks)

    def _put(self, item: Page | BaseException) -> bool:
        return put_until(self._pages, item, self._closed.is_set, _POLL)
