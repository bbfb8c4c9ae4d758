"""Solo ordering: one process orders for the consortium.

The embedded default. Transactions queue up and a block is cut when the queue
holds `max_txs` transactions or the oldest has waited `max_wait` seconds,
whichever comes first. The orderer executes the block (it must, to fill in
`state_delta_hash`), signs the header and commits it to its own ledger;
`on_block` hands the block to whoever distributes it to peers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from sharechain.crypto.signing import SigningKey
from sharechain.ledger.blocks import Block, encode_block
from sharechain.ledger.chain import Ledger

__all__ = ["Receipt", "SoloOrderer", "order_block"]


@dataclass(frozen=True, slots=True)
class Receipt:
    """Where a submitted transaction landed and how it was judged."""

    tx_id: bytes
    """The transaction id."""
    height: int
    """Height of the block holding it."""
    index: int
    """Position in that block."""
    code: str
    """Validation code (`valid` or why not)."""
    reason: str
    """Why not, in words; empty when valid."""

    @property
    def ok(self) -> bool:
        return self.code == "valid"


def order_block(
    ledger: Ledger,
    raw_txs: list[bytes],
    *,
    orderer: str,
    key: SigningKey,
    now: Callable[[], float] = time.time,
) -> tuple[Block, bytes, list[Receipt]]:
    """Build, sign and commit one block of `raw_txs`; returns it with receipts."""
    block, ex = ledger.build_block(raw_txs, orderer=orderer, key=key, timestamp=int(now() * 1000))
    data = encode_block(block)
    ledger.commit(block, ex, data)
    receipts = [
        Receipt(tx_id, block.height, i, r.code, r.reason)
        for i, (tx_id, r) in enumerate(zip(block.tx_ids, block.results, strict=True))
    ]
    return block, data, receipts


class SoloOrderer:
    """A background thread that cuts blocks by size or time."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        orderer: str,
        key: SigningKey,
        max_txs: int = 1000,
        max_wait: float = 0.05,
        now: Callable[[], float] = time.time,
        on_block: Callable[[Block, bytes], None] | None = None,
    ) -> None:
        self._ledger = ledger
        self._orderer = orderer
        self._key = key
        self.max_txs = max_txs
        self.max_wait = max_wait
        self._now = now
        self._on_block = on_block
        self._queue: list[tuple[bytes, Future[Receipt]]] = []
        self._first_at = 0.0
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None

    def submit(self, raw: bytes) -> Future[Receipt]:
        """Queue a signed transaction; the future resolves when its block commits."""
        fut: Future[Receipt] = Future()
        with self._cond:
            if self._stop:
                raise RuntimeError("the orderer is stopped")
            if not self._queue:
                self._first_at = time.monotonic()
            self._queue.append((raw, fut))
            if len(self._queue) >= self.max_txs:
                self._cond.notify()
        return fut

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="solo-orderer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after ordering whatever is queued."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def cut(self) -> Block | None:
        """Order whatever is queued now (at most `max_txs`); None when the queue is empty."""
        with self._cond:
            batch, self._queue = self._queue[: self.max_txs], self._queue[self.max_txs :]
            if self._queue:
                self._first_at = time.monotonic()
        if not batch:
            return None
        try:
            block, data, receipts = order_block(
                self._ledger,
                [raw for raw, _ in batch],
                orderer=self._orderer,
                key=self._key,
                now=self._now,
            )
        except Exception as exc:
            for _, fut in batch:
                fut.set_exception(exc)
            raise
        if self._on_block is not None:
            self._on_block(block, data)
        for (_, fut), receipt in zip(batch, receipts, strict=True):
            fut.set_result(receipt)
        return block

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (
                    not self._queue
                    or (
                        len(self._queue) < self.max_txs
                        and time.monotonic() - self._first_at < self.max_wait
                    )
                ):
                    timeout = (
                        None
                        if not self._queue
                        else max(0.0, self.max_wait - (time.monotonic() - self._first_at))
                    )
                    self._cond.wait(timeout)
                if self._stop and not self._queue:
                    return
            try:
                self.cut()
            except Exception:
                time.sleep(self.max_wait)
