"""What one caller may cost a node: body sizes, rates, quotas and waits.

A consortium member is trusted to sign what it sends, not to be reasonable
about how much it sends. Every limit here is charged to the party that can be
named: an unsigned request to its client address (the only name it has), a
signed one to the organisation whose key signed it. When a caller passes a
limit the node refuses at once with a clear error, before doing the work:

- `Limits.unsigned_per_minute`: refused (401) requests per client address;
  beyond, 429 without even checking the signature;
- `Limits.submissions_per_block`: transactions one organisation submits
  while the chain stays at one height; beyond, 429 with `Retry-After`;
- `Limits.bad_submissions_per_minute`: malformed submissions one
  organisation may send; beyond, 429 before its body is even read;
- `Limits.signed_in_flight_per_member`: signed requests of one organisation
  whose signatures have not expired yet (their nonces are remembered until
  then, `api.auth.NonceCache`); beyond, 429 with `Retry-After`, so one member
  cannot fill the node's replay cache and have everyone's requests refused;
- `Limits.long_polls_per_caller`: long-polls (`/v1/sync/blocks?wait=`) one
  organisation holds open at once; beyond, the wait is cut to 0 so the worker
  threads stay free for everyone else (`/v1/health` answers within 100 ms);
- `Limits.block_reads_per_caller`: block reads (`/v1/blocks`, one block,
  `/v1/sync/blocks`) one organisation has under way at once; beyond, 429
  with `Retry-After`: each holds up to 32 MiB of blocks in memory while it is
  read and answered, and takes its worker thread meanwhile;
- `Limits.checkpoint_waits_per_caller`: checkpoint requests (`GET` and
  `POST /v1/checkpoint`, `POST /v1/checkpoint/cosign`) one organisation has
  under way at once; beyond, 429 with `Retry-After`: each may hold a worker
  thread for seconds, waiting for blocks or for the peers' cosignatures;
- `Limits.requests_per_member`: signed requests one organisation other than
  the node's own has under way on the node at once, whatever they ask;
  beyond, 429 with `Retry-After` before the body is read: the node answers on
  a pool of `WORKER_THREADS` threads, and many routes may keep one waiting (a
  key release for the chain, a long-poll for blocks), so one member holds at
  most this share of them and the rest stay free for everyone else;
- `Limits.key_sessions_per_caller`: unused key-release sessions per caller;
- `Limits.pending_deposits_per_member`: datasets not yet on the chain a
  member may deposit keys of (413 beyond);
- `Limits.upload_sessions_per_member`: chunked uploads one organisation has
  open at once (413 beyond: finish or abandon one);
- `Limits.logs_per_minute`: log lines about refused requests per source.

The limits are the API's (the guard in `sharechain.api.refusals` applies the
body, signature and log ones); the errors they raise, `QuotaError` (429) and
`TooLargeError` (413), are in `sharechain.errors`, since the stores that keep
a caller's uploads and deposits refuse with them too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sharechain.api.auth import PER_MEMBER_IN_FLIGHT
from sharechain.errors import QuotaError

__all__ = ["WORKER_THREADS", "Limits", "PerSource", "SubmissionQuota", "WaitSlots"]

WORKER_THREADS = 40
"""Worker threads a node answers its routes on (anyio's default pool, which FastAPI
runs every route and dependency that is not a coroutine on)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """The per-caller limits of one node's API (see the module docstring)."""

    max_body: int = 64 << 20
    """Largest request body in bytes (a blob chunk has its own, smaller limit)."""
    unsigned_per_minute: int = 120
    """Refused (unauthenticated) requests one client address may make per minute."""
    bad_submissions_per_minute: int = 60
    """Malformed submissions (400/422) one organisation may send per minute (429 beyond)."""
    submissions_per_block: int = 50_000
    """Transactions one organisation may submit while the chain stays at one height."""
    signed_in_flight_per_member: int = PER_MEMBER_IN_FLIGHT
    """Signed requests of one organisation whose signatures have not expired (429 beyond)."""
    requests_per_member: int = 16
    """Signed requests one organisation other than the node's own may have under way
    at once (429 beyond); at most half the `WORKER_THREADS`."""
    long_polls_per_caller: int = 4
    """Long-polls one organisation may hold open at once (more are answered at once)."""
    block_reads_per_caller: int = 4
    """Block reads one organisation may have under way at once (429 beyond)."""
    checkpoint_waits_per_caller: int = 2
    """Checkpoint requests one organisation may have under way at once (429 beyond)."""
    key_sessions_per_caller: int = 64
    """Unused key-release sessions one organisation may hold."""
    pending_deposits_per_member: int = 256
    """Datasets not on the chain yet one organisation may deposit keys of on this node."""
    upload_sessions_per_member: int = 8
    """Chunked uploads one organisation may have open at once."""
    logs_per_minute: int = 5
    """Log lines about refused requests per source per minute."""


class PerSource:
    """A token bucket per source: `rate` events per `period` seconds each. Thread-safe."""

    def __init__(
        self, rate: int, period: float = 60.0, *, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.period = period
        self._now = now
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, source: str) -> bool:
        """Take one token of `source`; False when its bucket is empty."""
        t = self._now()
        with self._lock:
            if len(self._buckets) > 100_000:  # forget full buckets: they carry no debt
                self._buckets = {
                    k: v for k, v in self._buckets.items() if self._level(v, t) < self.rate
                }
            level = self._level(self._buckets.get(source, (float(self.rate), t)), t)
            if level < 1.0:
                self._buckets[source] = (level, t)
                return False
            self._buckets[source] = (level - 1.0, t)
            return True

    def exhausted(self, source: str) -> bool:
        """Is `source`'s bucket empty (without taking a token)?"""
        t = self._now()
        with self._lock:
            bucket = self._buckets.get(source)
            return bucket is not None and self._level(bucket, t) < 1.0

    def _level(self, bucket: tuple[float, float], t: float) -> float:
        tokens, since = bucket
        return min(float(self.rate), tokens + (t - since) * self.rate / self.period)


class SubmissionQuota:
    """Transactions per organisation while the chain stays at one height. Thread-safe."""

    def __init__(self, per_block: int) -> None:
        self.per_block = per_block
        self._height = -1
        self._used: dict[str, int] = {}
        self._lock = threading.Lock()

    def charge(self, org: str, count: int, height: int) -> None:
        """Count `count` submissions of `org`; raise `QuotaError` (429) past the quota."""
        with self._lock:
            if height != self._height:
                self._height, self._used = height, {}
            used = self._used.get(org, 0) + count
            if used > self.per_block:
                raise QuotaError(
                    f"{org} submitted {used - count} transactions since block {height}; the "
                    f"quota is {self.per_block} per block: wait for the next block",
                    retry_after=1,
                )
            self._used[org] = used


class WaitSlots:
    """How many requests of one kind each caller holds open: its long-polls (a caller
    past its share waits 0 s), its block reads (a caller past its share gets 429)."""

    def __init__(self, per_caller: int) -> None:
        self.per_caller = per_caller
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, org: str) -> bool:
        """Take a slot for `org`; False when it holds its share (then do not wait)."""
        with self._lock:
            held = self._open.get(org, 0)
            if held >= self.per_caller:
                return False
            self._open[org] = held + 1
            return True

    def give_back(self, org: str) -> None:
        with self._lock:
            held = self._open.get(org, 0) - 1
            if held > 0:
                self._open[org] = held
            else:
                self._open.pop(org, None)

    @contextmanager
    def holding(self, org: str, what: str, retry_after: int = 1) -> Iterator[None]:
        """One of `org`'s slots for the `with` block; `QuotaError` (429) past its share,
        saying "`org` has N `what`"."""
        if not self.take(org):
            raise QuotaError(f"{org} has {self.per_caller} {what}", retry_after=retry_after)
        try:
            yield
        finally:
            self.give_back(org)
