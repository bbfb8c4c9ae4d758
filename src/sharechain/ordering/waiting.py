"""What a submission waits for: the receipts of its transactions, then one future.

A node settles receipts as blocks commit (`Node._announce`); the submission's
future resolves when the last of its transactions has one, or fails when
the ordering service refused them or the node stopped.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future

from sharechain.ledger.blocks import Block
from sharechain.ordering.solo import Receipt

__all__ = ["Wait", "Waiters"]


class Wait:
    """The receipts one submission waits for; its future resolves when the last one arrives."""

    __slots__ = ("future", "left", "receipts")

    def __init__(self, count: int) -> None:
        self.future: Future[list[Receipt]] = Future()
        self.receipts: list[Receipt | None] = [None] * count
        self.left = count
        if count == 0:
            self.future.set_result([])

    def settle(self, index: int, receipt: Receipt) -> bool:
        """Record a receipt (under the node's lock); True when that was the last one."""
        if self.receipts[index] is not None:
            return False
        self.receipts[index] = receipt
        self.left -= 1
        return self.left == 0

    def finish(self) -> None:
        """Resolve the future (outside the node's lock: callbacks may call the node)."""
        if not self.future.done():
            self.future.set_result([r for r in self.receipts if r is not None])

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class Waiters:
    """Submissions waiting for receipts, by transaction id. Thread-safe."""

    def __init__(self) -> None:
        self._by_id: dict[bytes, list[tuple[Wait, int]]] = {}
        self._since: dict[bytes, float] = {}
        """When each waited-for transaction was first submitted (monotonic; latency figures)."""
        self._lock = threading.Lock()

    def add(
        self,
        raws: Sequence[bytes],
        ids: Sequence[bytes],
        known: Collection[bytes],
        receipt: Callable[[bytes], Receipt],
        now: float,
    ) -> tuple[Wait, list[bytes]]:
        """Wait for `raws`; returns the wait and the transactions nobody waited for yet.

        Those `known` (committed already) settle at once through `receipt`.
        """
        wait = Wait(len(raws))
        fresh: list[bytes] = []
        with self._lock:
            for i, (raw, tx_id) in enumerate(zip(raws, ids, strict=True)):
                entries = self._by_id.get(tx_id)
                if entries is not None:
                    entries.append((wait, i))
                elif tx_id in known:
                    if wait.settle(i, receipt(tx_id)):
                        wait.finish()  # nothing else can reach this new waiter yet
                else:
                    self._by_id[tx_id] = [(wait, i)]
                    self._since[tx_id] = now
                    fresh.append(raw)
        return wait, fresh

    def drop(self, ids: Sequence[bytes]) -> None:
        with self._lock:
            for tx_id in ids:
                self._by_id.pop(tx_id, None)
                self._since.pop(tx_id, None)

    def fail(self, raws: Sequence[bytes], exc: BaseException) -> None:
        """Fail the waiters of `raws`."""
        failed: list[Wait] = []
        with self._lock:
            for raw in raws:
                tx_id = hashlib.sha256(raw).digest()
                entries = self._by_id.pop(tx_id, None)
                self._since.pop(tx_id, None)
                failed.extend(wait for wait, _ in entries or ())
        for wait in failed:
            wait.fail(exc)

    def fail_all(self, exc: BaseException) -> None:
        with self._lock:
            waiting, self._by_id = self._by_id, {}
        for entries in waiting.values():
            for wait, _ in entries:
                wait.fail(exc)

    def pending(self, raws: Sequence[bytes]) -> list[bytes]:
        with self._lock:
            return [r for r in raws if hashlib.sha256(r).digest() in self._by_id]

    def settle(self, block: Block, latency: Callable[[float], None]) -> None:
        """Hand out the receipts of a committed `block`; `latency` gets each one's wait (s)."""
        now = time.monotonic()
        complete: list[Wait] = []
        with self._lock:
            if self._by_id:
                for i, (tx_id, r) in enumerate(zip(block.tx_ids, block.results, strict=True)):
                    entries = self._by_id.pop(tx_id, None)
                    if entries is not None:
                        receipt = Receipt(tx_id, block.height, i, r.code, r.reason)
                        complete.extend(w for w, index in entries if w.settle(index, receipt))
                        t0 = self._since.pop(tx_id, None)
                        if t0 is not None:
                            latency(now - t0)
        for wait in complete:
            wait.finish()
