"""A node fetching the blobs it should keep from its peers, in the background.

`sharechain.node.upkeep` queues a `FetchJob` when the node commits a key
epoch whose blob it lacks (or finds one missing on start). One thread per
node works through the queue:

- the download goes through `sharechain.api.transfer`: streamed,
  resumed with `Range` after a dropped connection, and the whole blob must
  hash to the digest the chain records or it is discarded. The bytes land in
  `blobs/.incoming/fetch-<digest>.part`, so a fetch interrupted by a failure
  or a restart continues from the bytes it has;
- sources are the node's peers (`--peer ORG=URL`): the dataset's owner
  first, then its custodians, then the others; the request is signed by this
  node's organisation, which the serving node allows because every node
  keeps a replica (`docs/api.md`);
- a failed attempt is retried after 1, 2, 4, ... seconds (at most 60) up to
  `ATTEMPTS` times; then the job is marked failed (visible in the status and
  metrics) until the node restarts or commits a new epoch of the dataset;
- a fetch waits while the owner's tools are uploading the same blob to this
  node (`PUT /v1/blobs`), and is dropped when the blob arrives by that road,
  when the dataset is purged or when its epoch is superseded. A blob is
  installed only while it is still wanted, under the upkeep's lock, so a
  purge that commits during a download leaves nothing behind;
- what one peer sends cannot fill the node's disk: a download longer than
  the sealed payload of the dataset's recorded size can be is cut off as
  altered bytes (`transfer.download_blob(plain_size=)`), and a fetch does
  not start, or stops and deletes its part, while the disk has less than
  twice the node's reserve free (`disk_reserve_bytes`) beside what it still
  needs: the node's own full-disk guard never trips because of a fetch;
- nor can one member's blobs take more than its replica quota
  (`sharechain.sharing.replica_quota`): a fetch that would pass it does not
  start, or stops and deletes its part, and waits (`over_quota` in the
  status), looking again every `replica_quota.RECHECK` seconds without
  spending its attempts.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import httpx

from sharechain.api.client import NodeClient
from sharechain.api.serving import ServingNode
from sharechain.api.transfer import download_blob, install
from sharechain.contracts import queries
from sharechain.contracts.epochs import KeyEpoch
from sharechain.crypto.stream import DEFAULT_SEGMENT_SIZE, sealed_size
from sharechain.errors import NotFoundError, SharechainError
from sharechain.sharing.replica_quota import RECHECK, ReplicaQuota
from sharechain.storage.blobs import BlobStore
from sharechain.storage.uploads import part_path

__all__ = ["ATTEMPTS", "GRACE", "BlobFetcher", "FetchJob"]

log = logging.getLogger("sharechain.node.blob_fetch")  # the node's log, its name kept

ATTEMPTS: Final = 8
"""Attempts per blob before the job is marked failed."""
BACKOFF_FIRST: Final = 1.0
"""Seconds before the first retry; doubled at each further one."""
BACKOFF_MAX: Final = 60.0
"""Longest wait between attempts."""
GRACE: Final = 2.0
"""Seconds a fetch waits after the commit: the owner's tools push replicas themselves."""
UPLOAD_IDLE: Final = 5.0
"""An upload of the same blob to this node that wrote within this many seconds is live."""
TIMEOUT: Final = 30.0
"""HTTP timeout of one request to a peer."""
DISK_CHECK_BYTES: Final = 4 << 20
"""A running fetch looks at the free disk after every this many bytes."""


@dataclass(frozen=True, slots=True)
class FetchJob:
    """A blob this node should keep and lacks."""

    digest: bytes
    """The blob (SHA-256 of the sealed payload, as the chain records it)."""
    dataset: str
    """The dataset whose current epoch names it."""
    epoch: int
    """That epoch."""
    owner: str
    """The dataset's owner: its node is asked first."""
    holders: tuple[str, ...]
    """The custodians: their nodes are asked next."""

    @classmethod
    def of(cls, epoch: KeyEpoch) -> FetchJob:
        return cls(epoch.ciphertext_digest, epoch.dataset, epoch.epoch, epoch.by, epoch.holders)


@dataclass(slots=True)
class _Progress:
    """Where one job stands (mutable, guarded by the fetcher's lock)."""

    job: FetchJob
    state: str = "queued"
    """queued, fetching, waiting (for a retry), failed, done."""
    attempts: int = 0
    received: int = 0
    """Bytes downloaded by the current or last attempt (resumed bytes included)."""
    due: float = 0.0
    """Monotonic time of the next attempt."""
    error: str = ""
    source: str = ""
    """The peer that served it (done) or was being asked."""
    over_quota: bool = False
    """Waiting because the owner's replicas here are at their quota."""

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "digest": self.job.digest.hex(),
            "dataset": self.job.dataset,
            "epoch": self.job.epoch,
            "state": "over_quota" if self.over_quota and self.state == "waiting" else self.state,
            "attempts": self.attempts,
            "received": self.received,
            "source": self.source,
            "error": self.error,
            "retry_in": round(max(0.0, self.due - now), 1) if self.state == "waiting" else None,
        }


class _DiskLow(Exception):
    """The disk has too little free for the fetch to go on: the part is deleted."""


class _OverQuota(Exception):
    """The owner's replicas here would pass their quota: the part is deleted."""


class _Stopped(Exception):
    """The node is stopping: abandon the download (its bytes stay for the next start)."""


class BlobFetcher:
    """The fetch queue of one node and the loop that works through it (`run`)."""

    def __init__(
        self,
        node: ServingNode,
        blobs: BlobStore,
        lock: threading.Lock,
        *,
        wanted: Callable[[bytes], KeyEpoch | None],
        on_bytes: Callable[[int], None],
        on_outcome: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        reserve: int = 0,
        quota: ReplicaQuota | None = None,
    ) -> None:
        """`reserve`: the bytes the node keeps free (its full-disk guard's); a fetch
        leaves twice that free. `quota`: the replica quota (None: none)."""
        self.node = node
        self.blobs = blobs
        self.install_lock = lock
        self.wanted = wanted
        self.on_bytes = on_bytes
        self.on_outcome = on_outcome
        self.clock = clock
        self.keep_free = 2 * max(0, reserve)
        self.quota = quota
        self._jobs: dict[bytes, _Progress] = {}
        self._done: deque[_Progress] = deque(maxlen=16)
        self._done_count = 0
        self._cond = threading.Condition()

    # -- the queue --------------------------------------------------------------

    def queue(self, job: FetchJob, *, delay: float = GRACE) -> None:
        """Fetch `job`'s blob after `delay` seconds (a failed job starts afresh)."""
        with self._cond:
            found = self._jobs.get(job.digest)
            if found is not None and found.state != "failed":
                return
            self._jobs[job.digest] = _Progress(job, due=self.clock() + delay)
            self._cond.notify()
        log.info(
            "%s: blob %s of dataset %s epoch %d is missing here; fetching it from the peers",
            self.node.org,
            job.digest.hex()[:16],
            job.dataset,
            job.epoch,
        )

    def forget(self, dataset: str) -> None:
        """Drop the jobs of `dataset` (purged)."""
        with self._cond:
            for digest in [d for d, p in self._jobs.items() if p.job.dataset == dataset]:
                if self._jobs[digest].state != "fetching":
                    del self._jobs[digest]

    def counts(self) -> dict[str, int]:
        with self._cond:
            states = [p.state for p in self._jobs.values()]
            over = sum(p.over_quota and p.state == "waiting" for p in self._jobs.values())
        return {s: states.count(s) for s in ("queued", "fetching", "waiting", "failed")} | {
            "queued": states.count("queued") + states.count("waiting"),
            "over_quota": over,
            "done": self._done_count,
        }

    def status(self) -> dict[str, Any]:
        now = self.clock()
        with self._cond:
            jobs = [p.to_json(now) for p in self._jobs.values()]
            done = [p.to_json(now) for p in self._done]
        return {**self.counts(), "jobs": jobs, "recent": done}

    # -- the loop ---------------------------------------------------------------

    def run(self) -> None:
        while not self.node.stop_event.is_set():
            progress = self._next_due()
            if progress is not None:
                try:
                    self._attempt(progress)
                except _Stopped:
                    return
                except Exception as exc:  # a bug must not end the loop for good
                    log.exception("%s: fetching blob failed unexpectedly", self.node.org)
                    self._retry(progress, f"{type(exc).__name__}: {exc}")

    def _next_due(self) -> _Progress | None:
        with self._cond:
            waiting = [p for p in self._jobs.values() if p.state in ("queued", "waiting")]
            now = self.clock()
            due = [p for p in waiting if p.due <= now]
            if due:
                p = min(due, key=lambda p: p.due)
                p.state = "fetching"
                return p
            wait = min((p.due - now for p in waiting), default=0.5)
            self._cond.wait(min(max(wait, 0.01), 0.5))
        return None

    def _finish(self, p: _Progress, state: str, error: str = "") -> None:
        with self._cond:
            p.state, p.error = state, error
            if state == "failed":
                return
            self._jobs.pop(p.job.digest, None)
            if state == "done":
                self._done.append(p)
                self._done_count += 1

    def _retry(self, p: _Progress, error: str) -> None:
        if p.attempts >= ATTEMPTS:
            log.error(
                "%s: gave up fetching blob %s of dataset %s after %d attempts: %s",
                self.node.org,
                p.job.digest.hex()[:16],
                p.job.dataset,
                p.attempts,
                error,
            )
            self._finish(p, "failed", error)
            self.on_outcome("failed")
            return
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (p.attempts - 1))
        log.warning(
            "%s: fetching blob %s (attempt %d) failed: %s; retrying in %.0f s",
            self.node.org,
            p.job.digest.hex()[:16],
            p.attempts,
            error,
            delay,
        )
        with self._cond:
            p.state, p.error, p.due = "waiting", error, self.clock() + delay
            p.over_quota = False
        self.on_outcome("retry")

    def _wait_quota(self, p: _Progress, why: str) -> None:
        """Park `p` until its owner's quota may have room (no attempt spent)."""
        if not p.over_quota:
            log.warning("%s: not fetching blob %s: %s", self.node.org, p.job.digest.hex()[:16], why)
        with self._cond:
            p.state, p.error, p.due, p.over_quota = "waiting", why, self.clock() + RECHECK, True
        self.on_outcome("over_quota")

    def _disk_low(self, needed: int) -> str | None:
        """Why the disk cannot take `needed` more bytes of a fetch (None: it can)."""
        free = shutil.disk_usage(self.blobs.root).free
        if free - max(0, needed) >= self.keep_free:
            return None
        return (
            f"the disk under {self.blobs.root} has {free} bytes free, and a fetch leaves "
            f"{self.keep_free} (twice the node's disk_reserve_bytes) beside the "
            f"{max(0, needed)} it still needs; the part was deleted, the fetch waits for space"
        )

    def _upload_live(self, digest: bytes) -> bool:
        try:
            return time.time() - part_path(self.blobs, digest).stat().st_mtime < UPLOAD_IDLE
        except FileNotFoundError:
            return False

    def _sources(self, job: FetchJob) -> list[tuple[str, str]]:
        peers = dict(self.node.config.peers)
        order = (job.owner, *job.holders, *peers)
        return [(org, peers[org]) for org in dict.fromkeys(order) if org in peers]

    def _attempt(self, p: _Progress) -> None:
        job = p.job
        if self.blobs.has(job.digest) or self.wanted(job.digest) is None:
            self._finish(p, "dropped")  # arrived by an upload, or no longer current
            return
        if self._upload_live(job.digest):
            with self._cond:  # the owner's tools are pushing it: look again later
                p.state, p.due = "queued", self.clock() + UPLOAD_IDLE
            return
        part = self.blobs.root / ".incoming" / f"fetch-{job.digest.hex()}.part"
        p.received = part.stat().st_size if part.exists() else 0
        try:
            plain = queries.dataset(self.node.store, job.dataset).size
        except NotFoundError:
            plain = None  # not on this chain copy: the digest check alone decides
        # As sealed by the tools (a running check covers the rest).
        whole = 0 if plain is None else sealed_size(plain, DEFAULT_SEGMENT_SIZE)
        left = None if self.quota is None else self.quota.left(job.owner, job.digest)
        if left is not None and max(whole, p.received) > left:
            assert self.quota is not None
            part.unlink(missing_ok=True)
            self._wait_quota(p, self.quota.refusal(job.owner, job.digest, whole))
            return
        p.over_quota = False
        sources = self._sources(job)
        p.attempts += 1
        if not sources:
            self._retry(p, "this node knows no peers to fetch from (start it with --peer)")
            return
        needed = whole - p.received
        if (low := self._disk_low(needed)) is not None:
            part.unlink(missing_ok=True)
            self._retry(p, low)
            return
        clients = [
            NodeClient(url, self.node.org, self.node.keys.signing, timeout=TIMEOUT)
            for _, url in sources
        ]
        checked = 0

        def progress(n: int) -> None:
            nonlocal checked
            if self.node.stop_event.is_set():
                raise _Stopped
            p.received += n
            self.on_bytes(n)
            if left is not None and p.received > left:
                raise _OverQuota
            checked += n
            if checked >= DISK_CHECK_BYTES:
                checked = 0
                if (low := self._disk_low(0)) is not None:
                    raise _DiskLow(low)

        try:
            with self._cond:
                p.source = ", ".join(org for org, _ in sources)
            served = download_blob(
                clients, job.digest, part, progress=progress, resume=True, plain_size=plain
            )
        except _DiskLow as exc:
            part.unlink(missing_ok=True)
            self._retry(p, str(exc))
            return
        except _OverQuota:
            assert self.quota is not None
            part.unlink(missing_ok=True)
            p.attempts -= 1
            self._wait_quota(p, self.quota.refusal(job.owner, job.digest, p.received))
            return
        except (SharechainError, httpx.HTTPError, OSError) as exc:
            self._retry(p, f"{type(exc).__name__}: {exc}")
            return
        finally:
            for c in clients:
                c.close()
        with self.install_lock:
            if self.wanted(job.digest) is None:  # purged or superseded meanwhile
                part.unlink(missing_ok=True)
                self._finish(p, "dropped")
                return
            install(self.blobs, part, job.digest)
        p.source = next(org for org, url in sources if url == served.base_url)
        log.info(
            "%s: fetched blob %s of dataset %s (%d bytes) from %s",
            self.node.org,
            job.digest.hex()[:16],
            job.dataset,
            p.received,
            p.source,
        )
        self._finish(p, "done")
        self.on_outcome("done")
