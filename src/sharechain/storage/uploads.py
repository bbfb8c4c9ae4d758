"""Receiving a blob in chunks: one session per blob, written and hashed as it arrives.

`PUT /v1/blobs/{digest}?offset=&final=` carries one chunk per request. Each
request is signed whole (RFC 9421 with a `Content-Digest` the node checks
before the handler runs), and the blob's name is the SHA-256 of all its
bytes, so the node must also hash the whole blob before it keeps it.

How the time is spent matters here. Profiled, the first version did
everything on the server's event loop and in series: each chunk was written
there, and the final chunk re-read and re-hashed the whole blob (and
flushed it to disk) before answering, while the client sat waiting and then
hashed its next chunk while the server sat idle. Now:

- one session per blob keeps the part file open, the running SHA-256 and the
  offset received; a chunk is handed to the session's writer thread and
  answered at once, so the node receives (and checks the signature of) the
  next chunk while the previous one is written and hashed. At most two
  chunks per upload are in memory;
- every `FLUSH_EVERY` bytes the part file is flushed to disk on another
  thread, so the `fsync` before the rename only waits for the tail;
- the final chunk waits for the writes and compares the running digest with
  the name: a match is installed (fsync, rename, fsync of the directory), a
  mismatch discards everything (422, upload again from 0);
- a node restarted in the middle of an upload has no session: the next chunk
  rebuilds it from the part file (hashing what is there once), so an upload
  still resumes where it stopped (409 says where);
- leftovers are swept (`Uploads.sweep`): streamed parts at start (they cannot
  resume), any part untouched for a day at start and every minute after.

Streamed uploads (`PUT /v1/uploads/{id}?offset=&final=&digest=`) use the same
sessions for an owner's tools that send the sealed payload while sealing it,
before its digest is known: the final chunk names the digest, checked the
same way. Only the node's own organisation may stream (replicas name their
digest).

What a chunk comes to is an `Outcome` (received, stored, wrong offset, digest
mismatch, write failed); the node's route answers each with its HTTP status
and body (`sharechain.api.chunk_replies`). The sessions run on the server's
event loop and hand their blocking steps to its worker threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

# The worker threads the routes use too (anyio's limiter), not asyncio's default pool.
from fastapi.concurrency import run_in_threadpool

from sharechain.errors import TooLargeError
from sharechain.storage.blobs import BlobStore

__all__ = [
    "FLUSH_EVERY",
    "STALE",
    "DigestMismatch",
    "Outcome",
    "Received",
    "Stored",
    "Uploads",
    "WriteFailed",
    "WrongOffset",
    "part_path",
]

FLUSH_EVERY: Final = 64 << 20
"""Bytes written between background flushes of a part file."""
IDLE: Final = 600.0
"""Seconds after which an abandoned session is closed (its part file stays for resuming)."""
STALE: Final = 86_400.0
"""Seconds after which a part file nobody writes is deleted (an upload abandoned for good)."""
SWEEP_EVERY: Final = 60.0
"""Seconds between sweeps of abandoned part files."""
MAX_SESSIONS: Final = 64
"""Open sessions per node; beyond, the least recently used idle ones are closed."""


@dataclass(frozen=True, slots=True)
class Received:
    """A chunk accepted; the blob is not complete yet (200)."""

    name: str
    """The blob's digest in hex, or `id-<upload id>` for a streamed upload."""
    received: int
    """Bytes received so far."""


@dataclass(frozen=True, slots=True)
class Stored:
    """The final chunk accepted: the bytes hash to the digest, the blob is kept (200)."""

    digest: bytes
    size: int
    """The blob's size in bytes."""


@dataclass(frozen=True, slots=True)
class WrongOffset:
    """A chunk that does not start where the bytes received end (409): send from `received`."""

    name: str
    """The blob's digest in hex, or the streamed upload's session name."""
    received: int
    """Bytes this node holds of the blob."""


@dataclass(frozen=True, slots=True)
class DigestMismatch:
    """The bytes received do not hash to the digest (422): nothing was kept."""

    name: str
    """The digest they were sent under, in hex."""


@dataclass(frozen=True, slots=True)
class WriteFailed:
    """Writing the bytes failed (503): the session is dropped, upload again from 0."""

    name: str
    """The blob's digest in hex, or the streamed upload's session name."""
    error: OSError
    """What the file system said."""


Outcome = Received | Stored | WrongOffset | DigestMismatch | WriteFailed
"""What one chunk comes to."""


class _Session:
    """One blob being received: its part file, running hash and writer thread."""

    def __init__(self, store: BlobStore, name: str) -> None:
        self.store = store
        self.name = name
        """The blob's digest in hex, or `id-<upload id>` for a streamed upload."""
        self.part = store.root / ".incoming" / f"upload-{name}.part"
        self.lock = asyncio.Lock()
        self.file: Any = None
        self.hash: Any = hashlib.sha256()
        self.received = 0
        """Bytes accepted (handed to the writer)."""
        self.written = 0
        self.flushed = 0
        self.pending: Future[None] | None = None
        self.flushing: Future[None] | None = None
        self.used = time.monotonic()
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="blob-upload")
        self.flusher = ThreadPoolExecutor(1, thread_name_prefix="blob-flush")

    def open(self) -> None:
        """Open (or reopen, after a restart) the part file; hash what it already holds."""
        self.part.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.part.open("a+b")
        self.file.seek(0)
        while data := self.file.read(1 << 20):
            self.hash.update(data)
        self.received = self.written = self.flushed = self.file.tell()

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.hash.update(data)
        self.written += len(data)
        if self.written - self.flushed >= FLUSH_EVERY and (
            self.flushing is None or self.flushing.done()
        ):
            self.file.flush()
            self.flushed = self.written
            self.flushing = self.flusher.submit(os.fdatasync, self.file.fileno())

    def finish(self, digest: bytes) -> bool:
        """Flush, compare with `digest`, install under it or discard; True when installed."""
        self.file.flush()
        if self.flushing is not None:
            self.flushing.result()
        os.fsync(self.file.fileno())
        self.file.close()
        if self.hash.digest() != digest:
            self.part.unlink(missing_ok=True)
            return False
        if self.store.has(digest):  # arrived by another road meanwhile: same bytes
            self.part.unlink(missing_ok=True)
        else:
            self.store.adopt(self.part, digest)  # durable already: fsynced above
        return True

    def close(self, *, discard: bool) -> None:
        if self.file is not None and not self.file.closed:
            self.file.close()
        if discard:
            self.part.unlink(missing_ok=True)
        self.writer.shutdown(wait=False)
        self.flusher.shutdown(wait=False)


class Uploads:
    """The upload sessions of one node's API (kept on its app as `app.state.uploads`)."""

    def __init__(self, per_member: int = MAX_SESSIONS) -> None:
        self.per_member = per_member
        """Open sessions one organisation may have (`Limits.upload_sessions_per_member`)."""
        self._sessions: dict[str, _Session] = {}
        self._owner: dict[str, str] = {}
        self._guard = threading.Lock()
        self._swept = -SWEEP_EVERY

    def sweep(
        self, store: BlobStore, *, at_start: bool = False, now: Callable[[], float] = time.time
    ) -> int:
        """Delete leftover part files of uploads; how many.

        At start every streamed upload's part goes (its id was random: nobody can
        resume it); any upload part untouched for `STALE` seconds goes at start and
        at most every `SWEEP_EVERY` seconds afterwards. Parts of open sessions stay.
        """
        t = now()
        with self._guard:
            if not at_start and t - self._swept < SWEEP_EVERY:
                return 0
            self._swept = t
            open_parts = {s.part for s in self._sessions.values()}
        removed = 0
        for part in (store.root / ".incoming").glob("upload-*.part"):
            if part in open_parts:
                continue
            try:
                idle = t - part.stat().st_mtime
            except FileNotFoundError:
                continue
            if idle > STALE or (at_start and part.name.startswith("upload-id-")):
                part.unlink(missing_ok=True)
                removed += 1
        return removed

    def admit(self, store: BlobStore, name: str, org: str) -> None:
        """Refuse (413) a new upload of `org` past its share of open sessions."""
        key = str(store.root / name)
        with self._guard:
            if key in self._sessions:
                return
            held = [k for k, o in self._owner.items() if o == org and k in self._sessions]
            if len(held) >= self.per_member:
                raise TooLargeError(
                    f"{org} has {len(held)} uploads open on this node (at most "
                    f"{self.per_member}); finish them, or wait {IDLE:.0f} s for idle ones to close"
                )
            self._owner[key] = org

    async def receive_chunk(
        self, store: BlobStore, digest: bytes, offset: int, body: bytes, final: bool
    ) -> Outcome:
        """Accept one chunk of the blob `digest` at `offset` (see the module docstring)."""
        return await self._receive(store, digest.hex(), digest, offset, body, final)

    async def receive_streamed(
        self,
        store: BlobStore,
        upload: str,
        digest: bytes | None,
        offset: int,
        body: bytes,
        final: bool,
    ) -> Outcome:
        """Accept one chunk of the streamed upload `upload`; the final one names the digest.

        For an owner's tools that upload while they seal (the digest is known only at
        the end). The bytes are checked against `digest` just the same; a streamed
        upload cannot be resumed by another process (its id is random): start afresh.
        The caller refuses a final chunk without a digest (`ValueError` here).
        """
        if final and digest is None:
            raise ValueError("the final chunk names the digest")
        return await self._receive(store, f"id-{upload}", digest, offset, body, final)

    def abandon(self, store: BlobStore, name: str) -> None:
        """End the session of `name` (if open) and delete its part: the upload was refused."""
        with self._guard:
            session = self._sessions.get(str(store.root / name))
        if session is not None:
            self._end(session, discard=True)

    def close(self) -> None:
        """Close every session, keeping the part files (as a stopping node does)."""
        with self._guard:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close(discard=False)

    def _session(self, store: BlobStore, name: str) -> tuple[_Session, bool]:
        self.sweep(store)
        key = str(store.root / name)
        now = time.monotonic()
        with self._guard:
            found = self._sessions.get(key)
            if found is not None:
                found.used = now
                return found, False
            by_age = sorted(self._sessions.items(), key=lambda kv: kv[1].used)
            excess = len(by_age) - MAX_SESSIONS + 1
            for k, old in by_age:
                if (now - old.used > IDLE or excess > 0) and not old.lock.locked():
                    del self._sessions[k]
                    excess -= 1
                    old.close(discard=old.name.startswith("id-"))  # a streamed one cannot resume
            session = self._sessions[key] = _Session(store, name)
            return session, True

    def _end(self, session: _Session, *, discard: bool) -> None:
        with self._guard:
            self._sessions.pop(str(session.store.root / session.name), None)
            self._owner.pop(str(session.store.root / session.name), None)
        session.close(discard=discard)

    def _write_failed(self, session: _Session, name: str, exc: OSError) -> WriteFailed:
        """Drop a session whose bytes could not be written; the uploader starts again."""
        self._end(session, discard=True)
        return WriteFailed(name, exc)

    async def _receive(
        self,
        store: BlobStore,
        session_name: str,
        digest: bytes | None,
        offset: int,
        body: bytes,
        final: bool,
    ) -> Outcome:
        session, new = self._session(store, session_name)
        name = digest.hex() if digest is not None else session_name
        async with session.lock:
            try:
                if new or session.file is None:
                    await run_in_threadpool(session.open)
                if session.pending is not None:  # the previous chunk: written, or its error
                    await asyncio.wrap_future(session.pending)
                    session.pending = None
            except OSError as exc:
                return self._write_failed(session, name, exc)
            if offset != session.received:
                return WrongOffset(name, session.received)
            session.pending = session.writer.submit(session.write, body)
            session.received += len(body)
            if not final:
                return Received(name, session.received)
            try:
                await asyncio.wrap_future(session.pending)
                session.pending = None
                assert digest is not None  # named by the route, or required with final
                kept = await run_in_threadpool(session.finish, digest)
            except OSError as exc:
                return self._write_failed(session, name, exc)
            self._end(session, discard=not kept)
            if not kept:
                return DigestMismatch(name)
            return Stored(digest, store.size(digest))


def part_path(store: BlobStore, digest: bytes) -> Path:
    """Where an upload of `digest` collects its bytes (the blob fetcher waits while it grows)."""
    return store.root / ".incoming" / f"upload-{digest.hex()}.part"
