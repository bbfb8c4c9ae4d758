"""The worker threads behind sealing and opening: writes and digests, overlapped.

`Pipeline.add` takes one segment (plaintext, ciphertext, and which of them to write)
and hands its work to single-thread lanes, so each kind of work stays in order while
all of it overlaps the caller reading and sealing (or opening) the next segments:

- ``write``: the segment's output, to ``dst``;
- ``streams``: the running SHA-256 of the plaintext and, when asked, of the whole
  ciphertext stream; with the CPU's SHA instructions both advance in one interleaved
  call (`sharechain.crypto.digests.update2`), else the ciphertext gets a lane of its own;
- ``segments``: the SHA-256 of each ciphertext segment, two segments per call
  (`sharechain.crypto.digests.sha256_pair`), pushed into the Merkle tree in order.

The buffers of a segment stay untouched until `Pipeline.drain` has seen every job on
them finish. The first segment is done inline: a payload of one segment starts no thread.
"""

from __future__ import annotations

import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from sharechain.crypto import digests as sha
from sharechain.crypto.segment_tree import TreeBuilder

__all__ = ["Pipeline", "Totals", "write_all"]

Totals = tuple[bytes, bytes, bytes, int, int]
"""Plaintext SHA-256, whole-stream SHA-256 (or empty), segment root, size, segment count:
the fields of `sharechain.crypto.stream.StreamDigests`, in order."""


def write_all(dst: BinaryIO, data: bytes | memoryview) -> None:
    """Write all of ``data``; raw files may take less than asked per call."""
    view = memoryview(data)
    while view:
        written = dst.write(view)
        # Buffered writers always write everything; raw ones may report less.
        view = view[len(view) if written is None else written :]


def _digest_one(data: memoryview) -> tuple[bytes, bytes]:
    digest = hashlib.sha256(data).digest()
    return digest, digest


@dataclass(slots=True)
class _Leaf:
    """A segment's digest to come: alone until the next segment pairs with it."""

    ciphertext: memoryview
    job: Future[tuple[bytes, bytes]] | None = None
    which: int = 0


class Pipeline:
    """Writes each segment's output and hashes plaintext, ciphertext stream and segments."""

    def __init__(
        self,
        dst: BinaryIO,
        header: bytes,
        *,
        parallel: bool,
        digests: bool = True,
        whole_stream: bool = True,
    ) -> None:
        self._dst = dst
        self._digests = digests
        self._plain = sha.new()
        self._cipher = sha.new(header) if whole_stream else None
        self._tree = TreeBuilder()
        self._parallel = parallel
        self._lanes: dict[str, ThreadPoolExecutor] = {}
        # Per segment in flight: its leaf (pushed into the tree in order) and the write
        # and running-hash jobs that must finish before its slot is reused.
        self._inflight: deque[tuple[_Leaf | None, tuple[Future[None], ...]]] = deque()
        self._unpaired: _Leaf | None = None
        self._size = 0
        self._count = 0

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        # On failure too: no write may land after the caller has given up on `dst`.
        for lane in self._lanes.values():
            lane.shutdown(wait=True)

    def _lane(self, name: str) -> ThreadPoolExecutor:
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = ThreadPoolExecutor(1, f"sharechain-{name}")
        return lane

    def add(self, plaintext: memoryview, ciphertext: memoryview, *, out: memoryview) -> None:
        """Write ``out`` and hash one segment; the buffers stay untouched until `drain`."""
        self._size += len(plaintext)
        self._count += 1
        if not self._parallel or self._count == 1:
            write_all(self._dst, out)
            if self._digests:
                self._plain.update(plaintext)
                if self._cipher is not None:
                    self._cipher.update(ciphertext)
                self._tree.push(hashlib.sha256(ciphertext).digest())
            return
        jobs = [self._lane("write").submit(write_all, self._dst, out)]
        leaf: _Leaf | None = None
        if self._digests:
            jobs.extend(self._hash_streams(plaintext, ciphertext))
            leaf = self._pair(ciphertext)
        self._inflight.append((leaf, tuple(jobs)))

    def _hash_streams(self, plaintext: memoryview, ciphertext: memoryview) -> list[Future[None]]:
        streams = self._lane("streams")
        if self._cipher is None:
            return [streams.submit(self._plain.update, plaintext)]
        if sha.ACCELERATED:  # one interleaved call beats two threads of one stream each
            return [streams.submit(sha.update2, self._plain, plaintext, self._cipher, ciphertext)]
        return [
            streams.submit(self._plain.update, plaintext),
            self._lane("cipher").submit(self._cipher.update, ciphertext),
        ]

    def _pair(self, ciphertext: memoryview) -> _Leaf:
        leaf = _Leaf(ciphertext)
        first, self._unpaired = self._unpaired, None
        if first is None:
            self._unpaired = leaf
            return leaf
        job = self._lane("segments").submit(sha.sha256_pair, first.ciphertext, ciphertext)
        first.job, leaf.job, leaf.which = job, job, 1
        return leaf

    def drain(self, *, keep: int) -> None:
        """Wait until at most ``keep`` segments are still being written or hashed."""
        while len(self._inflight) > keep:
            leaf, jobs = self._inflight.popleft()
            for job in jobs:
                job.result()
            if leaf is None:
                continue
            if leaf.job is None:  # no partner came in time: hash it alone
                self._unpaired = None
                leaf.job = self._lane("segments").submit(_digest_one, leaf.ciphertext)
            self._tree.push(leaf.job.result()[leaf.which])

    def finish(self) -> Totals | None:
        """Wait for everything; the stream's digests (None when built without digests)."""
        self.drain(keep=0)
        if not self._digests:
            return None
        cipher = b"" if self._cipher is None else self._cipher.digest()
        return self._plain.digest(), cipher, self._tree.root(), self._size, self._count
