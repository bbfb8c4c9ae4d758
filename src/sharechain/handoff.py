"""Handing items from a producer thread to a consumer through a small bounded queue.

A producer (a thread reading a stream, prefetching pages, hashing chunks) must
wait while its consumer is busy, so that a slow consumer holds back the
source instead of filling memory, and must stop waiting as soon as the
consumer has gone away. `put_until` is that wait.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import TypeVar

__all__ = ["put_until"]

T = TypeVar("T")


def put_until(
    into: queue.Queue[T], item: T, stopped: Callable[[], bool], poll: float = 0.1
) -> bool:
    """Put `item` into the bounded queue `into`, waiting for room for as long as
    `stopped()` is false (looked at every `poll` seconds); False if it turned true first."""
    while not stopped():
        try:
            into.put(item, timeout=poll)
            return True
        except queue.Full:
            continue
    return False
