"""Committing a stream of blocks with every core busy.

A peer catching up, or verifying its chain from genesis, validates blocks one
after another. Executing a block (contracts, SQLite) is Python work that holds
the GIL, so threads verifying signatures at the same time would starve. This
pipeline therefore checks signatures in worker *processes* (`_sigworker`),
one per core but one: while this process executes and commits block k, the
workers verify block k+1, and block k+2 waits in their pipes, so a worker
never waits for this process to hand it work. This process verifies a share
of each block itself, while the block before waits for its fsync (or, for a
stream's first block, while the workers verify the rest: half of it with one
worker): as much as keeps it from waiting for the workers (`_Balance`), on a
core that would otherwise idle.

Workers check each signature against the key the envelope names, among the
organisations' keys as of when the block was handed to them; anything that
changed meanwhile (a key rotated in block k) is checked again inline during
execution, so the outcome is exactly that of `Ledger.commit`.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import gc
import os
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import cbor2

from sharechain.crypto.merkle import merkle_root
from sharechain.errors import ChainError, EncodingError
from sharechain.ledger._sigworker import FAILED, NOT_CHECKED, check
from sharechain.ledger.blocks import Block, decode_block, results_root
from sharechain.ledger.chain import Ledger
from sharechain.ledger.execution import (
    Execution,
    Prepared,
    Presigned,
    collector_paused,
    parse_tx,
    prepare_after,
)
from sharechain.ledger.identities import org_from_value
from sharechain.ledger.state import StateReader
from sharechain.ledger.transactions import SignedTransaction

__all__ = [
    "MIN_PIPELINED_TXS",
    "Waits",
    "commit_stream",
    "start_workers",
    "waits",
    "worker_count",
    "workers_cpu_seconds",
]

_IN_FLIGHT = 3
"""Blocks dispatched and not yet settled when every block is at hand (a sequence):
the one settling and two more, so a block that takes this process longer than
usual (a WAL checkpoint, a slow fsync) leaves the workers a block to verify
rather than none. A source that may wait for its next block (an iterator) is
read one block ahead only, so no block waits to commit for two more to arrive."""

MIN_PIPELINED_TXS = 256
"""Blocks smaller than this are verified inline: shipping them costs more than it saves."""

_PAUSE_BLOCKS = 8
"""Blocks a stream commits between two young collections (see `_Pause`)."""

_PAUSE_SECONDS = 2.0
"""...or seconds, whichever comes first: the pause is process-wide."""

_PIPE_BYTES = 1 << 20
"""Asked-for pipe size (Linux's default limit for unprivileged processes): a block's
share for a worker fits, so handing it over never waits for the worker to read."""


class _Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sharechain.ledger._sigworker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError, AttributeError):  # elsewhere: writes may wait
            fcntl.fcntl(self.proc.stdin.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        self.keys: dict[bytes, bytes] | None = None
        """The keys sent last: the worker keeps them until others are sent."""

    def send(self, keys: dict[bytes, bytes], raws: list[bytes]) -> None:
        assert self.proc.stdin is not None
        body = cbor2.dumps([None if keys == self.keys else keys, raws])
        self.keys = keys
        self.proc.stdin.write(len(body).to_bytes(4, "big") + body)
        self.proc.stdin.flush()

    def receive(self) -> tuple[float, bytes]:
        """The seconds the worker's checks took and their statuses."""
        assert self.proc.stdout is not None
        head = self.proc.stdout.read(4)
        body = self.proc.stdout.read(int.from_bytes(head, "big")) if len(head) == 4 else b""
        if len(head) != 4 or len(body) < 8:
            raise RuntimeError("signature worker died")
        return struct.unpack(">d", body[:8])[0], body[8:]

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


def worker_count() -> int:
    """Worker processes to start: one per core but one (the core this process uses)."""
    return max(1, (os.cpu_count() or 1) - 1)


def start_workers() -> None:
    """Start the worker processes now (a node does this at start-up)."""
    with _lock:
        if not _pool:
            _pool.extend(_Worker() for _ in range(worker_count()))
            atexit.register(_stop_workers)


def workers_cpu_seconds() -> float | None:
    """CPU time the running workers have used (None where /proc does not tell)."""
    total = 0.0
    try:
        for worker in list(_pool):
            with open(f"/proc/{worker.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return total


def _stop_workers() -> None:
    while _pool:
        _pool.pop().close()


class _Balance:
    """How much of each block this process verifies itself.

    Per transaction of a block, this process spends `e` executing and
    committing it and `v` verifying one signature; the workers, together, `w`
    per signature they verify. Taking the last fraction `s` of the block, it
    finishes with the workers when `e + s*v = (1 - s)*w`. The times are
    measured on each block (wall time: another process on the machine slows
    either side), and the share moves halfway to that balance each time.
    Only the stream holding the workers (under `_lock`) uses it.
    """

    MAX_SHARE = 0.5

    def __init__(self) -> None:
        self.share = 0.0
        """The fraction of a block verified here, 0 to `MAX_SHARE`."""

    def observe(self, e: float, v: float, w: float) -> None:
        if v > 0 and w > 0:
            target = min(self.MAX_SHARE, max(0.0, (w - e) / (v + w)))
            self.share = (self.share + target) / 2


_balance = _Balance()


@dataclass(slots=True)
class Waits:
    """Where the streams' wall time went, summed since the process started (for
    finding idle cores: `sharechain.bench.ledger` reports them per transaction)."""

    for_workers: float = 0.0
    """Seconds this process waited for a worker's reply after its own share."""
    in_commit: float = 0.0
    """Seconds spent in blocks' commits (SQLite writes, the COMMIT's fsync, and
    whatever of the next block's early work outlasts the fsync)."""
    commit_cpu: float = 0.0
    """Of which the committing thread's CPU seconds (the rest: the disk, or the
    parse-ahead thread)."""
    worker_checks: float = 0.0
    """Seconds the workers spent checking signatures, all workers together."""


_waits = Waits()


def waits() -> Waits:
    """A copy of the wait counters (subtract two copies for one stream's)."""
    return replace(_waits)


class _Pause:
    """One pause of the garbage collector over several blocks of a stream.

    Each block pauses the collector while it runs (`collector_paused`); when
    it resumes, its next allocation starts a collection, which walks every
    object still alive since the pause began: the blocks in flight, their
    transactions and executions, a few milliseconds per block of 2,000 (about
    2.5 us per transaction, measured), and nothing of them is garbage yet. A
    stream therefore keeps the collector paused from block to block and runs
    that young collection itself once every `_PAUSE_BLOCKS` blocks (or
    `_PAUSE_SECONDS`), when it walks about what one block's would (every
    tenth time the middle generation too, as the collector would); the
    collector resumes when the stream ends, however it ends. Reference
    counting still frees everything the blocks drop; only cycles wait, as
    they do within a block. The pause spans the caller's work between the
    blocks the stream yields, and the source's `next()`: every source here
    has its blocks at hand.
    """

    def __init__(self) -> None:
        self.held = False
        self.blocks = 0
        self.since = 0.0
        self.collections = 0

    def hold(self) -> None:
        """Pause the collector, unless it is paused (here or by the caller) already."""
        if not self.held and gc.isenabled():
            gc.disable()
            self.held, self.blocks, self.since = True, 0, time.perf_counter()

    def tick(self) -> None:
        """One more block committed: collect the young objects if the pause has lasted."""
        if not self.held:
            return
        self.blocks += 1
        now = time.perf_counter()
        if self.blocks >= _PAUSE_BLOCKS or now - self.since > _PAUSE_SECONDS:
            self.collections += 1
            gc.collect(0 if self.collections % 10 else 1)
            self.blocks, self.since = 0, now

    def release(self) -> None:
        if self.held:
            self.held = False
            gc.enable()


@dataclass(slots=True)
class _Pending:
    block: Block
    data: bytes
    keys: dict[bytes, bytes] = field(default_factory=dict)
    """Key id -> public key, of every organisation's current key as of dispatch."""
    parts: list[tuple[_Worker, int, int]] = field(default_factory=list)
    """(worker, first, end) of the transactions each worker verifies."""
    own: int = 0
    """Where the transactions this process verifies start (up to the end)."""
    replies: int = 0
    """Worker replies read so far."""
    parsed: list[SignedTransaction | None] | None = None
    """Its transactions, parsed while the block before it committed (None: not yet)."""
    roots: tuple[bytes, bytes] | None = None
    """Its (tx_root, results_root) as computed from its ids and results, at the same
    moment (None: not yet; `Ledger.validate_block` computes them then)."""
    own_checked: tuple[bytes, float] | None = None
    """The statuses of the share this process verifies and the seconds that took,
    at the same moment (None: not yet)."""
    prepared: Prepared | None = None
    """Its first reads of the store (replays, the keys its contracts name), at the
    same moment (None: not yet; execution does them then)."""

    def drain(self) -> None:
        """Read the replies not read yet, so the workers stay in step."""
        while self.replies < len(self.parts):
            self.parts[self.replies][0].receive()
            self.replies += 1


def _current_keys(ledger: Ledger) -> dict[bytes, bytes]:
    orgs = [org_from_value(value) for _, value in StateReader(ledger.store).scan("org/")]
    return {org.sign_key_id: org.sign_key for org in orgs}


def _dispatch(ledger: Ledger, block: Block, data: bytes, pooled: bool, first: bool) -> _Pending:
    """Hand `block` to the workers (if pooled and large enough).

    The `first` block of a stream has no block before it for this process to
    execute meanwhile, so it verifies as large a share as each worker."""
    pending = _Pending(block, data)
    n = len(block.txs)
    pending.own = n
    if pooled and n >= MIN_PIPELINED_TXS and block.height > 0:
        pending.keys = _current_keys(ledger)
        share = 1 / (len(_pool) + 1) if first else _balance.share
        sent = n - int(n * share)
        size = -(-sent // len(_pool))
        for worker, lo in zip(_pool, range(0, sent, size), strict=False):
            hi = min(sent, lo + size)
            worker.send(pending.keys, list(block.txs[lo:hi]))
            pending.parts.append((worker, lo, hi))
        pending.own = sent
    return pending


def _finish(ledger: Ledger, p: _Pending, ahead: _Pending | None) -> tuple[Block, Execution]:
    with collector_paused():  # parsing allocates as much as executing (see there)
        return _settle(ledger, p, ahead)


def _parse(block: Block) -> list[SignedTransaction | None]:
    return [parse_tx(r, i) for r, i in zip(block.txs, block.tx_ids, strict=True)]


def _roots(block: Block) -> tuple[bytes, bytes] | None:
    """The block's (tx_root, results_root) as `Ledger.validate_block` computes them;
    None where that raises (it then raises the same error itself)."""
    try:
        return merkle_root(block.tx_ids), results_root(block.tx_ids, block.results)
    except EncodingError:
        return None


@contextmanager
def _parsing_ahead(
    ledger: Ledger, ahead: _Pending, committing: Block, ex: Execution
) -> Iterator[None]:
    """Parse `ahead` while the store's COMMIT of `committing` waits for the disk.

    A block's COMMIT waits for its fsync with the GIL released, about a third
    of the time the block takes here on an idle disk (several times more on a
    busy one); a thread parses the next block then, computes its two Merkle
    roots, does its first reads of the store (`prepare_after`: through a read
    connection while the COMMIT holds the store) and verifies this process's
    share of its signatures (it starts when `Store.on_commit` says the COMMIT
    begins, so it does not compete with the commit's own Python work). None
    of it writes: the block commits, fails or crashes exactly as it would
    without it. If the commit fails, the results are dropped. The workers'
    replies are read afterwards, in turn: waiting for them here would hold
    the next block back from the workers."""
    start, failed = threading.Event(), False
    store = ledger.store
    # Inside a group the blocks before this one are not committed yet, and another
    # thread would read the store as it was before them: execution reads then.
    prepare = not store.grouped

    def parse() -> None:
        start.wait()
        if not failed:
            parsed = ahead.parsed = _parse(ahead.block)
            ahead.roots = _roots(ahead.block)
            if prepare:
                # A read that fails here (a disk error) is left to execution, which
                # reads again and fails, or not, on the committing thread.
                with contextlib.suppress(Exception):
                    ahead.prepared = prepare_after(
                        store, ledger.registry, parsed, committing.tx_ids, ex.writes
                    )
            ahead.own_checked = _own(ahead)

    thread = threading.Thread(target=parse, name="parse-ahead", daemon=True)
    thread.start()
    store.on_commit = start.set
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        store.on_commit = None
        start.set()
        thread.join()


def _own(p: _Pending) -> tuple[bytes, float]:
    """The statuses of the share of `p` this process verifies, and the seconds it took."""
    t0 = time.perf_counter()
    return check(p.keys, list(p.block.txs[p.own :])), time.perf_counter() - t0


def _statuses(p: _Pending) -> tuple[bytes, float, float]:
    """One status byte per transaction (this process's share verified here, then the
    workers' replies), this process's seconds per verification (0: none done
    here), and the workers' seconds per transaction of theirs."""
    own, own_seconds = p.own_checked if p.own_checked is not None else _own(p)
    replies, slowest = [], 0.0
    t1 = time.perf_counter()
    while p.replies < len(p.parts):
        seconds, status = p.parts[p.replies][0].receive()
        replies.append(status)
        slowest = max(slowest, seconds)
        _waits.worker_checks += seconds
        p.replies += 1
    _waits.for_workers += time.perf_counter() - t1
    n, done_here = len(p.block.txs), len(p.block.txs) - p.own
    v = own_seconds / done_here if done_here else 0.0
    w = slowest / (n - done_here) if n > done_here else 0.0
    return b"".join(replies) + own, v, w


def _settle(ledger: Ledger, p: _Pending, ahead: _Pending | None) -> tuple[Block, Execution]:
    parsed: list[SignedTransaction | None] | None = None
    presigned: list[Presigned] | None = None  # None: verified during execution
    v = w = 0.0
    t0 = time.perf_counter()
    if p.parts:
        status, v, w = _statuses(p)
        t0 = time.perf_counter()
        if not v:  # none verified here yet: as fast as a worker is alone
            v = w * len(p.parts)
        parsed = p.parsed if p.parsed is not None else _parse(p.block)
        # A status says whether the signature verifies under the key its envelope
        # names; execution uses it only if that key is the sender's current one.
        # One (key, verified?) pair per key and outcome, shared by the block.
        verdicts = {kid: ((key, True), (key, False)) for kid, key in p.keys.items()}
        presigned = [
            None if s == NOT_CHECKED or stx is None else verdicts[stx.key_id][s == FAILED]
            for s, stx in zip(status, parsed, strict=True)
        ]
    ex = ledger.validate_block(p.block, presigned, parsed, p.roots, p.prepared)
    t1, cpu = time.perf_counter(), time.thread_time()
    if ahead is not None and ahead.parts:
        with _parsing_ahead(ledger, ahead, p.block, ex):
            ledger.commit(p.block, ex, p.data)
    else:
        ledger.commit(p.block, ex, p.data)
    _waits.in_commit += time.perf_counter() - t1
    _waits.commit_cpu += time.thread_time() - cpu
    if p.parts:
        _balance.observe((time.perf_counter() - t0) / len(p.block.txs), v, w)
    return p.block, ex


def commit_stream(ledger: Ledger, blocks: Iterable[bytes]) -> Iterator[tuple[Block, Execution]]:
    """Validate and commit each encoded block in order, yielding it (and its execution)
    once committed.

    Raises `ChainError` at the first block that does not validate (or
    `EncodingError` if it does not decode); nothing of that block is written
    and the blocks before it stay committed. Uses the worker processes when
    they are free; another stream running at the same time verifies inline.
    `blocks` is read two blocks ahead of the one committing if it is a
    sequence (all at hand), one block ahead otherwise.
    """
    depth = _IN_FLIGHT if isinstance(blocks, Sequence) else 2
    pooled = bool(_pool) and _lock.acquire(blocking=False)
    # Dispatched and not yet settled: the block being settled and up to `depth - 1` more.
    # Whatever happens (a bad block, the caller stopping early), their replies are
    # read before the workers serve another stream, or it would read them as its own.
    flight: list[_Pending] = []
    pause = _Pause()
    try:
        source = iter(blocks)
        while True:
            try:
                data = next(source)
                pause.hold()
                block = decode_block(data)
            except StopIteration:
                break
            except (ChainError, EncodingError):
                # The block read ahead is bad (or missing): settle the pending one
                # first, so the error names the first bad height, not the one before.
                while flight:
                    yield _finish(ledger, flight[0], flight[1] if len(flight) > 1 else None)
                    flight.pop(0)
                raise
            flight.append(_dispatch(ledger, block, data, pooled, not flight))
            if len(flight) == depth:
                yield _finish(ledger, flight[0], flight[1])
                flight.pop(0)
                pause.tick()
        while flight:
            pause.hold()
            yield _finish(ledger, flight[0], flight[1] if len(flight) > 1 else None)
            flight.pop(0)
            pause.tick()
    finally:
        pause.release()
        for pending in flight:
            with contextlib.suppress(RuntimeError):  # a dead worker: its error came first
                pending.drain()
        if pooled:
            _lock.release()
