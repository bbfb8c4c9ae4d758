"""Committing a stream of blocks with both cores busy.

A peer catching up, or verifying its chain from genesis, validates blocks one
after another. Executing a block (contracts, SQLite) is Python work that holds
the GIL, so threads verifying signatures at the same time would starve. This
pipeline therefore checks the signatures of block k+1 in worker *processes*
(`_sigworker`) while this process executes and commits block k. Workers check
each signature against the sender's key as of when the block was handed to
them (looked up by the key id the envelope names); anything that changed
meanwhile (a key rotated in block k) is checked again inline during
execution, so the outcome is exactly that of `Ledger.commit`.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import cbor2

from sharechain.errors import ChainError, EncodingError
from sharechain.ledger._sigworker import FAILED, NOT_CHECKED
from sharechain.ledger.blocks import Block, decode_block
from sharechain.ledger.chain import Ledger
from sharechain.ledger.execution import Execution, Presigned, collector_paused, parse_tx
from sharechain.ledger.identities import org_from_value
from sharechain.ledger.state import StateReader
from sharechain.ledger.transactions import SignedTransaction

__all__ = ["MIN_PIPELINED_TXS", "commit_stream", "start_workers"]

MIN_PIPELINED_TXS = 256
"""Blocks smaller than this are verified inline: shipping them costs more than it saves."""


class _Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sharechain.ledger._sigworker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.keys: dict[bytes, bytes] | None = None
        """The keys sent last: the worker keeps them until others are sent."""

    def send(self, keys: dict[bytes, bytes], raws: list[bytes]) -> None:
        assert self.proc.stdin is not None
        body = cbor2.dumps([None if keys == self.keys else keys, raws])
        self.keys = keys
        self.proc.stdin.write(len(body).to_bytes(4, "big") + body)
        self.proc.stdin.flush()

    def receive(self) -> bytes:
        assert self.proc.stdout is not None
        head = self.proc.stdout.read(4)
        body = self.proc.stdout.read(int.from_bytes(head, "big")) if len(head) == 4 else b""
        if len(head) != 4:
            raise RuntimeError("signature worker died")
        return body

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


_lock = threading.Lock()
_pool: list[_Worker] = []


def start_workers() -> None:
    """Start the worker processes now (a node does this at start-up)."""
    with _lock:
        if not _pool:
            _pool.extend(_Worker() for _ in range(os.cpu_count() or 1))
            atexit.register(_stop_workers)


def _stop_workers() -> None:
    while _pool:
        _pool.pop().close()


@dataclass(slots=True)
class _Pending:
    block: Block
    data: bytes
    keys: dict[bytes, bytes]
    """Key id -> public key, of every organisation's current key as of dispatch."""
    parts: list[tuple[_Worker, int, int]]


def _current_keys(ledger: Ledger) -> dict[bytes, bytes]:
    orgs = [org_from_value(value) for _, value in StateReader(ledger.store).scan("org/")]
    return {org.sign_key_id: org.sign_key for org in orgs}


def _dispatch(ledger: Ledger, block: Block, data: bytes, pooled: bool) -> _Pending:
    pending = _Pending(block, data, {}, [])
    n = len(block.txs)
    if pooled and n >= MIN_PIPELINED_TXS and block.height > 0:
        pending.keys = _current_keys(ledger)
        size = -(-n // len(_pool))
        for worker, lo in zip(_pool, range(0, n, size), strict=False):
            worker.send(pending.keys, list(block.txs[lo : lo + size]))
            pending.parts.append((worker, lo, min(n, lo + size)))
    return pending


def _finish(ledger: Ledger, p: _Pending) -> tuple[Block, Execution]:
    with collector_paused():  # parsing allocates as much as executing (see there)
        return _settle(ledger, p)


def _settle(ledger: Ledger, p: _Pending) -> tuple[Block, Execution]:
    parsed: list[SignedTransaction | None] | None = None
    presigned: list[Presigned] | None = None  # None: verified during execution
    if p.parts:
        status = b"".join(worker.receive() for worker, _, _ in p.parts)
        parsed = [parse_tx(r, i) for r, i in zip(p.block.txs, p.block.tx_ids, strict=True)]
        keys = p.keys
        # A status says whether the signature verifies under the key its envelope
        # names; execution uses it only if that key is the sender's current one.
        presigned = [
            None if s == NOT_CHECKED or stx is None else (keys[stx.key_id], s != FAILED)
            for s, stx in zip(status, parsed, strict=True)
        ]
    ex = ledger.validate_block(p.block, presigned, parsed)
    ledger.commit(p.block, ex, p.data)
    return p.block, ex


def commit_stream(ledger: Ledger, blocks: Iterable[bytes]) -> Iterator[tuple[Block, Execution]]:
    """Validate and commit each encoded block in order, yielding it (and its execution)
    once committed.

    Raises `ChainError` at the first block that does not validate (or
    `EncodingError` if it does not decode); nothing of that block is written
    and the blocks before it stay committed. Uses the worker processes when
    they are free; another stream running at the same time verifies inline.
    """
    pooled = bool(_pool) and _lock.acquire(blocking=False)
    pending: _Pending | None = None
    try:
        source = iter(blocks)
        while True:
            try:
                data = next(source)
                with collector_paused():
                    block = decode_block(data)
            except StopIteration:
                break
            except (ChainError, EncodingError):
                # The block read ahead is bad (or missing): settle the pending one
                # first, so the error names the first bad height, not the one before.
                if pending is not None:
                    done, pending = pending, None
                    yield _finish(ledger, done)
                raise
            nxt = _dispatch(ledger, block, data, pooled)
            if pending is not None:
                done, pending = pending, None
                yield _finish(ledger, done)
            pending = nxt
        if pending is not None:
            done, pending = pending, None
            yield _finish(ledger, done)
    finally:
        if pending is not None:  # drain replies so the workers stay in step
            for worker, _, _ in pending.parts:
                worker.receive()
        if pooled:
            _lock.release()
