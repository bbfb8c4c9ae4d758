"""Work overlapped across threads while a table is masked (`privacy.masking`).

Masking is mostly pyarrow and numpy kernels, which run without the interpreter
lock; what is left in Python (tokenising without the C extension, the noise
samplers' loops over undecided draws) holds it. Two helpers let the threads
share it well:

- `SWITCHING` lowers the interpreter's thread switch interval while any
  masking runs, so a thread between two lock-free kernels gets the lock back
  quickly;
- `NoiseAhead` draws the noised columns' noise on a thread of its own, in a
  fixed order, ahead of the rows that will take it.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import numpy as np
import pyarrow as pa

from sharechain.handoff import put_until
from sharechain.privacy.rules import NoiseStream, add_noise
from sharechain.privacy.samplers import IntArray

__all__ = ["NOISE_CHUNK", "SWITCHING", "NoiseAhead", "Switching"]

NOISE_CHUNK: Final = 1 << 15
"""Draws made at a time for a noised column."""


class Switching:
    """The interpreter's thread switch interval, lowered while any masking runs.

    Tokenising holds the interpreter lock for long stretches; the threads
    parsing, counting and encoding need it back for a moment between their
    (lock-free) array operations and would otherwise wait up to 5 ms for it
    each time. The interval is process state, so this guard is too: the
    first masking to start lowers it, the last to finish puts it back.
    """

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._lock = threading.Lock()
        self._running = 0
        self._before = 0.0

    @contextmanager
    def lowered(self) -> Iterator[None]:
        with self._lock:
            if self._running == 0:
                self._before = sys.getswitchinterval()
                sys.setswitchinterval(min(self._before, self._seconds))
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    sys.setswitchinterval(self._before)


SWITCHING: Final = Switching(0.0005)


class NoiseAhead:
    """The noised columns' draws, made ahead of need on a thread of their own.

    Drawing is mostly Python between array operations; pass 2's other work
    (filtering, encoding) runs without the interpreter lock, so the draws
    overlap it. One thread draws `NOISE_CHUNK` per column in a fixed
    round, so a seeded generator gives the same draws to the same column
    whatever the timing; at most `ahead` draws per column wait, and no round
    starts once a column has as many draws as `allow` said rows may need
    (the rows read so far: no more than a chunk per column is drawn for
    nothing).
    """

    def __init__(self, streams: dict[str, NoiseStream], ahead: int) -> None:
        self._streams = streams
        depth = max(1, ahead // NOISE_CHUNK)
        self._ready: dict[str, queue.Queue[IntArray | BaseException]] = {
            name: queue.Queue(maxsize=depth) for name in streams
        }
        self._held = {name: np.zeros(0, np.int64) for name in streams}
        self._stop = threading.Event()
        self._allowed = 0
        self._drawn = 0
        self._more = threading.Condition()
        self._thread = threading.Thread(target=self._fill, name="mask-noise", daemon=True)

    def allow(self, rows: int) -> None:
        """Let draws go on up to `rows` per column (it only grows)."""
        with self._more:
            if rows > self._allowed:
                self._allowed = rows
                self._more.notify_all()

    def _may_draw(self) -> bool:
        """Wait until another round is allowed; False once stopped."""
        with self._more:
            while self._drawn >= self._allowed:
                if self._stop.is_set():
                    return False
                self._more.wait(0.05)
        return not self._stop.is_set()

    def __enter__(self) -> NoiseAhead:
        if self._streams:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _put(self, name: str, item: IntArray | BaseException) -> bool:
        return put_until(self._ready[name], item, self._stop.is_set, 0.05)

    def _fill(self) -> None:
        try:
            while self._may_draw():
                for name, stream in self._streams.items():
                    if not self._put(name, stream.take(NOISE_CHUNK)):
                        return
                self._drawn += NOISE_CHUNK
        except BaseException as exc:  # handed to the taker, which re-raises it
            for name in self._streams:
                self._put(name, exc)

    def add_to(self, name: str, values: pa.Array) -> pa.Array:
        """`values` plus the column's next draws (nulls stay null)."""
        held = self._held[name]
        parts = [held]
        have = len(held)
        while have < len(values):
            item = self._ready[name].get()
            if isinstance(item, BaseException):
                raise item
            parts.append(item)
            have += len(item)
        held = np.concatenate(parts) if len(parts) > 1 else held
        self._held[name] = held[len(values) :]
        return add_noise(name, values, held[: len(values)])
