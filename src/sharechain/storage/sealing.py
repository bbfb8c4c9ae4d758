"""Sealing files into a node's blob store and opening them back, in bounded memory.

The file-level half of the data plane, under `node.sharing`: where
`crypto.stream` seals one stream into another, this module decides where the
bytes go so that each byte crosses the disk once each way:

- `seal_file` seals a file straight into the blob store's `.incoming` area and,
  once sealed, renames it to its address (the ciphertext digest the seal just
  computed), so the blob store does not read and hash the ciphertext again;
- `open_to_file` opens a sealed payload into a temporary file next to the
  destination and renames it into place only when the whole stream was authentic
  and its digests passed the caller's check (against the chain);
- `reseal` moves a payload to a new key (rotation) without writing its plaintext
  anywhere: one thread opens the old ciphertext into a pipe, the caller's thread
  seals from the pipe.

Progress callbacks receive byte counts as the input is read.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from sharechain.crypto.stream import (
    DEFAULT_SEGMENT_SIZE,
    StreamDigests,
    decrypt_stream,
    encrypt_bytes,
    encrypt_stream,
)
from sharechain.storage.blobs import BlobStore
from sharechain.storage.direct import DirectReader, DirectWriter

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

__all__ = ["Source", "counting", "open_to_file", "reseal", "seal_bytes", "seal_file"]

Progress = Callable[[int], None]
_PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_FLUSH_EVERY = 64 << 20
"""While a blob is written, hand each this many bytes to the disk in the background."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where a sealed payload is: a blob file, or bytes carried on the chain."""

    path: Path | None = None
    """The blob file, when the payload is off the chain."""
    data: bytes = b""
    """The sealed bytes, when the payload is on the chain."""

    @contextlib.contextmanager
    def open(self) -> Iterator[BinaryIO]:
        if self.path is None:
            yield io.BytesIO(self.data)
            return
        with DirectReader(self.path) as f:
            yield cast(BinaryIO, f)

    @property
    def size(self) -> int:
        """Bytes of the sealed payload."""
        return len(self.data) if self.path is None else self.path.stat().st_size


class _Counting(io.RawIOBase):
    """A reader that reports how many bytes went through it."""

    def __init__(self, inner: BinaryIO, progress: Progress | None) -> None:
        self._inner = inner
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        got = self._inner.readinto(buffer)  # type: ignore[attr-defined]  # raw files and BytesIO have it
        got = got or 0
        if got and self._progress is not None:
            self._progress(got)
        return int(got)


def counting(inner: BinaryIO, progress: Progress | None) -> BinaryIO:
    """`inner`, reporting each read's byte count to `progress` (when given)."""
    return cast(BinaryIO, _Counting(inner, progress))


class _EarlyFlush(io.RawIOBase):
    """A writer that flushes what it has written to disk on a background thread.

    Without it the fsync that makes a blob durable would wait for the whole blob to
    reach the disk after sealing; with it the disk works while the seal hashes, and the
    final fsync only waits for the tail.
    """

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._fd = out.fileno()
        self._unflushed = 0
        self._wake = threading.Event()
        self._stopping = False
        self._failure: OSError | None = None
        self._thread: threading.Thread | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        written = self._out.write(data)
        self._unflushed += written
        if self._unflushed >= _FLUSH_EVERY:
            self._unflushed = 0
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sharechain-flush")
                self._thread.start()
            self._wake.set()  # wakes coalesce: a slow disk is not asked twice at once
        return written

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                self._failure = exc
                return

    def stop(self) -> None:
        """Wait for the background flush; re-raise its error, which a later fsync may not see."""
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            self._thread.join()
        if self._failure is not None:
            raise self._failure


@contextlib.contextmanager
def _flushing(out: DirectWriter) -> Iterator[BinaryIO]:
    """`out` itself when it writes with direct I/O, else `out` flushed as it goes."""
    if out.direct:
        yield cast(BinaryIO, out)
        return
    writer = _EarlyFlush(cast(BinaryIO, out))
    try:
        yield cast(BinaryIO, writer)
    finally:
        writer.stop()


@contextlib.contextmanager
def _incoming(store: BlobStore, expected_size: int) -> Iterator[tuple[Path, DirectWriter]]:
    """A fresh `.incoming` file of the store; removed unless the caller adopted it.

    About `expected_size` bytes will be written: large blobs bypass the page cache.
    """
    tmp = store.root / ".incoming" / f"{os.urandom(16).hex()}.part"
    try:
        with DirectWriter(tmp, expected_size=expected_size) as out:
            yield tmp, out
    finally:
        tmp.unlink(missing_ok=True)


def _adopt(store: BlobStore, tmp: Path, out: DirectWriter, digest: bytes) -> None:
    """Make the sealed file `tmp` the blob named `digest`: durable, then atomic rename."""
    out.finish()
    os.fsync(out.fileno())
    store.adopt(tmp, digest)


def seal_bytes(
    key: bytes, plaintext: bytes, epoch: int, segment_size: int, rng: Callable[[int], bytes]
) -> tuple[bytes, StreamDigests]:
    """Seal a small payload in memory (it will travel on the chain)."""
    return encrypt_bytes(key, plaintext, epoch=epoch, segment_size=segment_size, rng=rng)


def seal_source(
    store: BlobStore,
    key: bytes,
    source: Path,
    epoch: int,
    segment_size: int,
    rng: Callable[[int], bytes],
    progress: Progress | None,
    inline_limit: int,
) -> tuple[bytes, StreamDigests]:
    """Seal `source`: in memory when it is at most `inline_limit` bytes (the sealed
    bytes are returned to travel on the chain), else into the blob store (b"")."""
    if source.stat().st_size <= inline_limit:
        inline, digests = seal_bytes(key, source.read_bytes(), epoch, segment_size, rng)
        if progress is not None:
            progress(digests.size)
        return inline, digests
    return b"", seal_file(store, key, source, epoch, segment_size, rng, progress)


def seal_file(
    store: BlobStore,
    key: bytes,
    source: Path,
    epoch: int,
    segment_size: int,
    rng: Callable[[int], bytes],
    progress: Progress | None,
) -> StreamDigests:
    """Seal `source` into the blob store; the blob's address is the ciphertext digest."""
    size = source.stat().st_size
    with source.open("rb", buffering=0) as raw, _incoming(store, size) as (tmp, out):
        src = counting(cast(BinaryIO, raw), progress)
        with _flushing(out) as dst:
            digests = encrypt_stream(key, src, dst, epoch=epoch, segment_size=segment_size, rng=rng)
        _adopt(store, tmp, out, digests.ciphertext_sha256)
    return digests


def open_to_file(
    source: Source,
    key: bytes,
    epoch: int,
    out: Path,
    *,
    progress: Progress | None,
    check: Callable[[StreamDigests], None] | None = None,
) -> StreamDigests:
    """Open the sealed payload into `out`; nothing is left at `out` if any segment fails.

    `check`, when given, sees the digests before the file is renamed into place and
    raises to refuse them (then nothing is left at `out` either). It must compare
    `segment_root` with a trusted record: with a check, the whole-stream SHA-256 is
    not computed (`ciphertext_sha256` comes back empty), since a matching segment root
    already pins every byte of the stream.
    """
    tmp = out.with_name(f".{out.name}.{os.urandom(8).hex()}.part")
    try:
        with (
            source.open() as sealed,
            DirectWriter(tmp, expected_size=source.size, mode=0o600) as dst,
        ):
            digests = decrypt_stream(
                key,
                counting(sealed, progress),
                cast(BinaryIO, dst),
                expected_epoch=epoch,
                ciphertext_sha256=check is None,
            )
            dst.finish()
            if check is not None:
                check(digests)
            os.fsync(dst.fileno())  # durable before it takes the name
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return digests


def reseal(
    source: Source,
    old_key: bytes,
    old_epoch: int,
    new_key: bytes,
    new_epoch: int,
    store: BlobStore,
    rng: Callable[[int], bytes],
    progress: Progress | None,
) -> tuple[bytes, StreamDigests]:
    """Seal the payload again under `new_key`; returns (inline bytes or b"", digests).

    An on-chain payload stays on the chain (returned as bytes); a blob becomes a new
    blob. The plaintext only ever crosses a pipe between two threads.
    """
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(OSError):  # a larger pipe is only an optimisation (Linux)
        fcntl.fcntl(write_fd, _F_SETPIPE_SZ, _PIPE_SIZE)
    failure: list[BaseException] = []

    def opener() -> None:
        try:
            with source.open() as sealed, open(write_fd, "wb", buffering=0) as pipe:
                decrypt_stream(
                    old_key,
                    counting(sealed, progress),
                    cast(BinaryIO, pipe),
                    expected_epoch=old_epoch,
                    digests=False,
                )
        except BrokenPipeError:  # the sealing side failed first and says why
            pass
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=opener, name="sharechain-reseal", daemon=True)
    worker.start()
    try:
        with open(read_fd, "rb", buffering=0) as pipe:
            plain = cast(BinaryIO, pipe)
            if source.path is None:
                sealed = io.BytesIO()
                digests = encrypt_stream(new_key, plain, sealed, epoch=new_epoch, rng=rng)
                result = sealed.getvalue()
            else:
                with _incoming(store, source.size) as (tmp, out):
                    digests = encrypt_stream(
                        new_key,
                        plain,
                        cast(BinaryIO, out),
                        epoch=new_epoch,
                        segment_size=DEFAULT_SEGMENT_SIZE,
                        rng=rng,
                    )
                    worker.join()
                    if failure:
                        raise failure[0]
                    _adopt(store, tmp, out, digests.ciphertext_sha256)
                result = b""
    finally:
        worker.join()
    if failure:
        raise failure[0]
    return result, digests
