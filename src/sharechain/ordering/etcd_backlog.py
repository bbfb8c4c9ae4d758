"""An etcd watch read ahead on a thread of its own, so its reader sees what is waiting.

A node following the log (`sharechain.node.etcd_watch`) commits blocks as
they come. When it fell behind, committing one block per transaction (and
one fsync each) is the slow part; reading the watch ahead into a small
bounded queue lets it see which blocks are already waiting whenever it is
free, and commit them together. The reader stops when the follower pauses
or stops it (its `StopFlag`), or on `close`; whatever ended the watch (an
`OrderingError`, or anything unexpected) is raised to the follower.
"""

from __future__ import annotations

import queue
import threading

from sharechain.handoff import put_until
from sharechain.ordering.etcd_log import EtcdLog, StopFlag

__all__ = ["Backlog", "Read"]

Read = tuple[int, bytes, bool]
"""A block read from the log: height, bytes, and whether a watch event delivered it."""


class Backlog:
    """The etcd watch, read ahead on a thread of its own.

    The watcher then sees which blocks are already waiting when it is free to
    commit, and commits them together instead of one transaction (and one
    fsync) each. The read-ahead is bounded by a small queue (`depth`). The
    watch ends when `paused` is set, or on `close`.
    """

    def __init__(
        self, etcd: EtcdLog, start: int, paused: StopFlag, *, name: str, depth: int
    ) -> None:
        """Watch `etcd` from height `start` on the thread `name`, up to `depth` blocks ahead."""
        self._paused = paused
        self._closed = threading.Event()
        self._items: queue.Queue[Read | _WatchEnd] = queue.Queue(maxsize=depth)
        self._end: _WatchEnd | None = None
        self._reader = threading.Thread(
            target=self._run, args=(etcd, start), name=name, daemon=True
        )
        self._reader.start()

    def is_set(self) -> bool:
        """The watch's stop flag (see `StopFlag`)."""
        return self._closed.is_set() or self._paused.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        self._paused.wait(timeout)
        return self.is_set()

    def close(self) -> None:
        """Stop reading; returns once the reader is done with the log (it polls every 0.1 s)."""
        self._closed.set()
        if self._reader is not threading.current_thread():
            self._reader.join(timeout=30)

    def take(self, limit: int) -> list[Read] | None:
        """The next block and up to `limit - 1` more already read, each (height, bytes,
        whether a watch event delivered it: `EtcdLog.watch_marked`); None once the watch
        ended.

        Raises what ended the watch (an OrderingError, or anything unexpected).
        """
        items: list[Read] = []
        while self._end is None and len(items) < limit:
            try:
                item = self._items.get(timeout=0.1) if not items else self._items.get_nowait()
            except queue.Empty:
                if items or self._closed.is_set():
                    break
                continue
            if isinstance(item, _WatchEnd):
                self._end = item
            else:
                items.append(item)
        if items:
            return items
        if self._end is not None and self._end.error is not None:
            raise self._end.error
        return None

    def _run(self, etcd: EtcdLog, start: int) -> None:
        try:
            for item in etcd.watch_marked(start, stop=self):
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the watcher, which raises it
            self._put(_WatchEnd(exc))
            return
        self._put(_WatchEnd(None))

    def _put(self, item: Read | _WatchEnd) -> bool:
        return put_until(self._items, item, self._closed.is_set)


class _WatchEnd:
    """Queued by `Backlog` when the watch ends; `error` is why, if it failed."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error
