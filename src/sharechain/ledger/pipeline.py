"""Committing a stream of blocks with every core busy.

A peer catching up, or verifying its chain from genesis, validates blocks one
after another. Executing a block (contracts, SQLite) is Python work that holds
the GIL, so threads verifying signatures at the same time would starve. This
pipeline therefore checks signatures in worker *processes* (`_sigworker`),
one per core but one: while this process executes and commits block k, the
workers verify block k+1, and block k+2 is queued behind it, so a worker
never waits for this process to hand it work. Each block's signatures are
cut into chunks, one ticket each on a socket the workers and this process
share (`_Pool`): whoever is free takes the next. This process takes one
whenever it would otherwise wait for a worker's reply (a stream's first
block; a block the workers have not finished), so neither its core nor a
worker's idles while any chunk is queued, without an estimate of how fast
either side is.

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
import logging
import os
import queue
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import cbor2

from sharechain.crypto.merkle import merkle_root
from sharechain.errors import ChainError, EncodingError
from sharechain.ledger._sigworker import FAILED, NOT_CHECKED, REPLY, TICKET, check
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

log = logging.getLogger("sharechain.ledger.pipeline")

__all__ = [
    "MIN_PIPELINED_TXS",
    "Waits",
    "WorkerError",
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
"""Asked-for pipe size (Linux's default limit for unprivileged processes): a block
for the workers fits, so handing it over hardly ever waits for a worker's reader."""

_DRAIN_SECONDS = 30.0
"""How long a stream that ends early (an error, a caller that stops reading) waits
for the workers' replies to its blocks in flight, so that they cannot be read as
another stream's. A worker holding a chunk that long is stuck (stopped, hung): the
pool is shut down rather than have the stream wait for it for ever."""

_CHUNKS = 32
"""Chunks a block's signatures are cut into at most (tickets, see `_sigworker`)..."""

_MIN_CHUNK = 32
"""...of at least this many transactions: few tickets stay queued (the ticket socket
never fills), and each costs a few microseconds against a chunk's milliseconds."""


class WorkerError(RuntimeError):
    """A signature worker died, answered out of step, or did not answer a stream
    that ended early within `_DRAIN_SECONDS`. The stream that meets it raises it
    (the last: ends with its own error), and the pool is shut down: later streams
    verify inline until `start_workers` starts a new one."""


class _Worker:
    def __init__(self, tickets: socket.socket) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sharechain.ledger._sigworker", str(tickets.fileno())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,  # unbuffered: `select` on stdout then tells whether a reply waits
            pass_fds=(tickets.fileno(),),
        )
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError, AttributeError):  # elsewhere: writes may wait
            fcntl.fcntl(self.proc.stdin.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._failed: OSError | None = None
        self._feeder = threading.Thread(target=self._feed, name="worker-feed", daemon=True)
        self._feeder.start()

    def send(self, frame: bytes) -> None:
        """Queue a framed block for the worker: a thread writes it, so the pipeline
        never waits for a worker that is still reading the block before (it would
        not check queued chunks meanwhile)."""
        if self._failed is not None:
            raise WorkerError("signature worker died") from self._failed
        self._outbox.put(frame)

    def _feed(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        while (frame := self._outbox.get()) is not None:
            view = memoryview(frame)
            try:
                while view:  # an unbuffered pipe may take part of a large write
                    view = view[stdin.write(view) or 0 :]
            except OSError as exc:  # the worker died: its stdout says so to the pool
                self._failed = exc
                return

    def receive(self) -> tuple[int, int, float, bytes]:
        """One reply: the block's seq, the chunk's first transaction, the seconds its
        checks took and its statuses."""
        head = self._read(4)
        body = self._read(int.from_bytes(head, "big")) if len(head) == 4 else b""
        if len(head) != 4 or len(body) < REPLY.size:
            raise WorkerError("signature worker died")
        seq, lo, seconds = REPLY.unpack_from(body)
        return seq, lo, seconds, body[REPLY.size :]

    def _read(self, n: int) -> bytes:
        stdout = self.proc.stdout
        assert stdout is not None
        buf = b""
        while len(buf) < n and (part := stdout.read(n - len(buf))):
            buf += part
        return buf

    def close(self) -> None:
        self._outbox.put(None)
        self._feeder.join(timeout=5)
        if self._feeder.is_alive():  # stuck writing to a worker that reads nothing
            self.proc.kill()
            self._feeder.join()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class _Pool:
    """The worker processes and the ticket socket they share with this process.

    Every block dispatched goes to every worker; its signatures are cut into
    chunks, one ticket each, queued in block order on one SOCK_SEQPACKET
    socket. A worker takes the next ticket whenever it is free; this process
    takes one whenever it would wait for a reply (`wait`). So no core idles
    while a chunk is queued, whatever the machine's load, and no estimate of
    the two sides' speeds is needed. Replies name the block (a sequence
    number) and the chunk they answer: one that answers nothing in flight
    cannot be taken for another block's."""

    def __init__(self, workers: int) -> None:
        self._queue, self._take = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._queue.setblocking(False)
        self.workers = [_Worker(self._take) for _ in range(workers)]
        self._replies = selectors.DefaultSelector()
        for worker in self.workers:
            assert worker.proc.stdout is not None
            self._replies.register(worker.proc.stdout, selectors.EVENT_READ, worker)
        self._seq = 0
        self._keys: dict[bytes, bytes] | None = None
        """The keys sent with a block last: every worker keeps them until others come."""
        self.flight: dict[int, _Pending] = {}
        """Blocks dispatched whose chunks are not all answered, by seq."""

    def dispatch(self, p: _Pending) -> None:
        """Hand `p`'s block to every worker and queue the tickets of its chunks."""
        self._seq += 1
        seq, n = self._seq, len(p.block.txs)
        oldest = min([seq, *self.flight])
        keys = None if p.keys == self._keys else p.keys  # the workers keep the last sent
        body = cbor2.dumps([seq, keys, list(p.block.txs), oldest])
        self._keys = p.keys
        frame = len(body).to_bytes(4, "big") + body
        for worker in self.workers:
            worker.send(frame)
        size = max(_MIN_CHUNK, -(-n // _CHUNKS))
        p.seq, p.status, p.left = seq, bytearray(n), -(-n // size)
        self.flight[seq] = p
        for lo in range(0, n, size):
            ticket = TICKET.pack(seq, lo, min(n, lo + size))
            while True:  # a full queue (a small socket buffer, every worker busy):
                try:  # check its first chunk here, making room
                    self._queue.send(ticket)
                    break
                except BlockingIOError:
                    self.steal()

    def wait(
        self,
        p: _Pending,
        check_here: bool = True,
        later: bool = True,
        deadline: float | None = None,
    ) -> None:
        """Until every chunk of `p` is answered: read the replies that arrive, and
        rather than wait for one, check the next queued chunk here: of `p`, or
        with `later` of a block after it. Without `later` (the stream has no more
        blocks to hand out), chunks of later blocks are left to the workers, which
        would otherwise idle while this process executes the last blocks.
        `check_here` False: take queued chunks unchecked (a stream ending early
        drops them). With a `deadline` (`time.monotonic`), raises `WorkerError`
        when it passes before the workers answered."""
        only = None if later else p.seq
        while p.left:
            if self._answers(0.0) or self.steal(check_here, only):
                continue
            t0 = time.perf_counter()
            if deadline is None:
                self._answers(None)
            elif (
                not self._answers(max(0.0, deadline - time.monotonic()))
                and time.monotonic() >= deadline
            ):
                raise WorkerError(f"signature workers left {p.left} chunks unanswered")
            _waits.for_workers += time.perf_counter() - t0
        del self.flight[p.seq]

    def steal(self, check_here: bool = True, only: int | None = None) -> bool:
        """Take the next queued chunk, if any (and, with `only`, if it is of that
        block), and check it here (with `check_here` False: answer it unchecked);
        whether there was one. Any thread may steal while the thread settling
        blocks does not touch the pool (the pipeline's parse-ahead thread, during
        a COMMIT)."""
        try:
            if only is not None:
                head = self._take.recv(TICKET.size, socket.MSG_DONTWAIT | socket.MSG_PEEK)
                if TICKET.unpack(head)[0] != only:
                    return False
            # (A worker may take the peeked ticket first: then this takes the next.)
            ticket = self._take.recv(TICKET.size, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        seq, lo, hi = TICKET.unpack(ticket)
        q = self.flight[seq]
        t0 = time.perf_counter()
        status = check(q.keys, list(q.block.txs[lo:hi])) if check_here else bytes(hi - lo)
        q.here += time.perf_counter() - t0
        self._answer(seq, lo, status)
        return True

    def _answers(self, timeout: float | None) -> bool:
        """Read the replies waiting (with None: wait for one); whether there were any."""
        ready = self._replies.select(timeout)
        for key, _ in ready:
            seq, lo, seconds, status = key.data.receive()
            _waits.worker_checks += seconds
            self._answer(seq, lo, status)
        return bool(ready)

    def _answer(self, seq: int, lo: int, status: bytes) -> None:
        p = self.flight.get(seq)
        if p is None or len(status) > len(p.status) - lo:
            raise WorkerError(f"signature worker replied out of step (block seq {seq})")
        p.status[lo : lo + len(status)] = status
        p.left -= 1

    def cpu_seconds(self) -> float:
        total = 0.0
        for worker in self.workers:
            with open(f"/proc/{worker.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def close(self) -> None:
        self._queue.close()
        for worker in self.workers:
            worker.close()
        self._replies.close()
        self._take.close()


_lock = threading.Lock()
_pools: list[_Pool] = []
"""The running pool (at most one), started by `start_workers`."""


def worker_count() -> int:
    """Worker processes to start: one per core but one (the core this process uses,
    which checks queued chunks itself whenever it would wait)."""
    return max(1, (os.cpu_count() or 1) - 1)


def start_workers() -> None:
    """Start the worker processes now (a node does this at start-up)."""
    with _lock:
        if not _pools:
            _pools.append(_Pool(worker_count()))
            atexit.register(_stop_workers)


def workers_cpu_seconds() -> float | None:
    """CPU time the running workers have used (None where /proc does not tell)."""
    try:
        return sum(pool.cpu_seconds() for pool in list(_pools))
    except (OSError, ValueError, IndexError):
        return None


def _stop_workers() -> None:
    while _pools:
        _pools.pop().close()


@dataclass(slots=True)
class Waits:
    """Where the streams' wall time went, summed since the process started (for
    finding idle cores: `sharechain.bench.ledger` reports them per transaction)."""

    for_workers: float = 0.0
    """Seconds this process waited for a worker's reply with no chunk left to check."""
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
    seq: int = 0
    """Its number in the pool (0: not handed to the workers, verified during execution)."""
    status: bytearray = field(default_factory=bytearray)
    """One status byte per transaction, filled in as the chunks are answered."""
    left: int = 0
    """Chunks not answered yet."""
    here: float = 0.0
    """Seconds this process spent checking chunks of it."""
    parsed: list[SignedTransaction | None] | None = None
    """Its transactions, parsed while the block before it committed (None: not yet)."""
    roots: tuple[bytes, bytes] | None = None
    """Its (tx_root, results_root) as computed from its ids and results, at the same
    moment (None: not yet; `Ledger.validate_block` computes them then)."""
    prepared: Prepared | None = None
    """Its first reads of the store (replays, the keys its contracts name), at the
    same moment (None: not yet; execution does them then)."""


def _current_keys(ledger: Ledger) -> dict[bytes, bytes]:
    orgs = [org_from_value(value) for _, value in StateReader(ledger.store).scan("org/")]
    return {org.sign_key_id: org.sign_key for org in orgs}


def _dispatch(ledger: Ledger, block: Block, data: bytes, pool: _Pool | None) -> _Pending:
    """Hand `block` to the workers (if there is a pool and it is large enough)."""
    pending = _Pending(block, data)
    if pool is not None and len(block.txs) >= MIN_PIPELINED_TXS and block.height > 0:
        pending.keys = _current_keys(ledger)
        pool.dispatch(pending)
    return pending


def _finish(
    ledger: Ledger, pool: _Pool | None, p: _Pending, ahead: _Pending | None, more: bool = True
) -> tuple[Block, Execution]:
    """Settle and commit `p`; `more`: the stream may hand out more blocks after those
    in flight (False: its source is exhausted)."""
    with collector_paused():  # parsing allocates as much as executing (see there)
        return _settle(ledger, pool, p, ahead, more)


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
    ledger: Ledger, pool: _Pool, ahead: _Pending, committing: Block, ex: Execution
) -> Iterator[None]:
    """Parse `ahead` while the store's COMMIT of `committing` waits for the disk.

    A block's COMMIT waits for its fsync with the GIL released, about a third
    of the time the block takes here on an idle disk (several times more on a
    busy one); a thread parses the next block then, computes its two Merkle
    roots, does its first reads of the store (`prepare_after`: through a read
    connection while the COMMIT holds the store); it starts when
    `Store.on_commit` says the COMMIT begins, so it does not compete with the
    commit's own Python work. Then, until the COMMIT ends, it checks queued
    chunks of signatures (`_Pool.steal`), on a core that would otherwise
    wait for the disk. None of it writes: the block commits, fails or
    crashes exactly as it would without it. If the commit fails, the results
    are dropped. The workers' replies are read afterwards, when the block
    settles."""
    start, done, failed = threading.Event(), threading.Event(), False
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
            while not done.is_set() and pool.steal():
                pass

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
        done.set()
        start.set()
        thread.join()


def _settle(
    ledger: Ledger, pool: _Pool | None, p: _Pending, ahead: _Pending | None, more: bool
) -> tuple[Block, Execution]:
    parsed: list[SignedTransaction | None] | None = None
    presigned: list[Presigned] | None = None  # None: verified during execution
    if p.seq:
        assert pool is not None
        pool.wait(p, later=more)
        parsed = p.parsed if p.parsed is not None else _parse(p.block)
        # A status says whether the signature verifies under the key its envelope
        # names; execution uses it only if that key is the sender's current one.
        # One (key, verified?) pair per key and outcome, shared by the block.
        verdicts = {kid: ((key, True), (key, False)) for kid, key in p.keys.items()}
        presigned = [
            None if s == NOT_CHECKED or stx is None else verdicts[stx.key_id][s == FAILED]
            for s, stx in zip(p.status, parsed, strict=True)
        ]
    ex = ledger.validate_block(p.block, presigned, parsed, p.roots, p.prepared)
    t1, cpu = time.perf_counter(), time.thread_time()
    if ahead is not None and ahead.seq:
        assert pool is not None
        with _parsing_ahead(ledger, pool, ahead, p.block, ex):
            ledger.commit(p.block, ex, p.data)
    else:
        ledger.commit(p.block, ex, p.data)
    _waits.in_commit += time.perf_counter() - t1
    _waits.commit_cpu += time.thread_time() - cpu
    return p.block, ex


def _drain(pool: _Pool, flight: list[_Pending]) -> bool:
    """Read the replies to a stream's blocks still in flight (its queued chunks taken
    unchecked); whether they all came within `_DRAIN_SECONDS`."""
    deadline = time.monotonic() + _DRAIN_SECONDS
    try:
        for pending in flight:
            if pending.seq in pool.flight:
                pool.wait(pending, check_here=False, deadline=deadline)
    except WorkerError as exc:  # died or stuck: the next stream starts without it
        log.warning(
            "shutting the signature workers down: %s for %.0f s (stopped or stuck)",
            exc,
            _DRAIN_SECONDS,
        )
        return False
    return True


def commit_stream(
    ledger: Ledger, blocks: Iterable[bytes]
) -> Generator[tuple[Block, Execution], None, None]:
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
    pool = _pools[0] if _pools and _lock.acquire(blocking=False) else None
    broken = False
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
                    yield _finish(ledger, pool, flight[0], flight[1] if len(flight) > 1 else None)
                    flight.pop(0)
                raise
            flight.append(_dispatch(ledger, block, data, pool))
            if len(flight) == depth:
                yield _finish(ledger, pool, flight[0], flight[1])
                flight.pop(0)
                pause.tick()
        while flight:
            pause.hold()
            yield _finish(ledger, pool, flight[0], flight[1] if len(flight) > 1 else None, False)
            flight.pop(0)
            pause.tick()
    except WorkerError:
        broken = True
        raise
    finally:
        pause.release()
        if pool is not None:
            if not broken:
                broken = not _drain(pool, flight)
            if broken:  # its replies cannot be trusted to come: a new pool, or none
                _pools.remove(pool)
                pool.close()
            _lock.release()
