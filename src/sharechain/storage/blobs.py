"""A content-addressed store of blobs (sealed payloads) on a node's disk.

Every blob is named by the SHA-256 of its bytes, written as 64 lowercase hex
characters; for sealed streams that is the ``ciphertext_sha256`` the chain
records. Layout under the store's root::

    root/ab/cdef0123...          the blob whose digest is "abcdef0123..." (first two
                                 hex characters name the shard directory)
    root/.incoming/<random>.part a blob being written

A blob is written to ``.incoming`` first, flushed to disk (``fsync``), then
renamed into its shard and the shard directory is flushed, so a crash at any
moment leaves either the whole blob under its name or nothing there (at worst an
orphan ``.part`` file, which is never visible as a blob and which
`BlobStore.discard_incomplete` removes). Writing the same content twice is a no-op.

Reads check the digest: `open` returns a reader that raises `IntegrityError` naming
the blob when it reaches the end of bytes that do not hash to the name, and
`read_bytes` checks before returning anything. Range reads (for HTTP range delivery)
cannot be checked against the whole-blob digest; the segment Merkle proofs of
`sharechain.crypto.stream` check the segments a range carries.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final

from sharechain.errors import EncodingError, IntegrityError, NotFoundError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["BlobDigest", "BlobReader", "BlobStore", "parse_digest"]

BlobDigest = str
"""SHA-256 of a blob's bytes as 64 lowercase hex characters."""

_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHUNK: Final = 1 << 20
_INCOMING = ".incoming"


def parse_digest(digest: str | bytes) -> BlobDigest:
    """Normalise a digest given as 64 lowercase hex characters or 32 raw bytes."""
    if isinstance(digest, bytes):
        if len(digest) != 32:
            raise EncodingError(f"a raw blob digest is 32 bytes (SHA-256), got {len(digest)}")
        return digest.hex()
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        raise EncodingError(
            f"a blob digest is 64 lowercase hex characters (SHA-256), got {digest!r:.80}"
        )
    return digest


class BlobReader(io.RawIOBase):
    """Reads one blob and checks its digest when the end is reached."""

    def __init__(self, file: io.FileIO, digest: BlobDigest) -> None:
        self._file = file
        self._digest = digest
        self._hash = hashlib.sha256()
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        got = self._file.readinto(buffer)
        if got is None:  # only non-blocking files return None; blob files never are
            raise OSError(f"blob {self._digest} could not be read")
        if got:
            self._hash.update(memoryview(buffer)[:got])
        elif not self._checked:
            self._checked = True
            if self._hash.hexdigest() != self._digest:
                raise IntegrityError(
                    f"blob {self._digest} is corrupt: its bytes hash to {self._hash.hexdigest()}"
                )
        return got

    def close(self) -> None:
        self._file.close()
        super().close()


class BlobStore:
    """Blobs on disk under ``root``, named by their SHA-256."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._incoming = self.root / _INCOMING
        self._incoming.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str | bytes) -> Path:
        """Where the blob named ``digest`` lives (whether or not it exists)."""
        name = parse_digest(digest)
        return self.root / name[:2] / name[2:]

    # --- writing ------------------------------------------------------------------------------

    def put_stream(self, src: BinaryIO) -> BlobDigest:
        """Store everything ``src`` yields; returns its digest. Atomic and durable."""
        digest = hashlib.sha256()
        fd_path = self._incoming / f"{os.urandom(16).hex()}.part"
        fd = os.open(fd_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb", buffering=0) as out:
                buf = bytearray(_CHUNK)
                view = memoryview(buf)
                readinto = getattr(src, "readinto", None)
                while True:
                    if readinto is not None:
                        got = readinto(view)
                    else:
                        data = src.read(_CHUNK)
                        got = len(data)
                        view[:got] = data
                    if not got:
                        break
                    digest.update(view[:got])
                    _write_all(out, view[:got])
                os.fsync(out.fileno())
            name = digest.hexdigest()
            self.adopt(fd_path, name)
        except BaseException:
            fd_path.unlink(missing_ok=True)
            raise
        return name

    def adopt(self, part: Path, digest: str | bytes) -> None:
        """Make `part`, already durable (fsynced) and hashing to `digest`, that blob.

        An atomic rename into the shard directory, which is then flushed (and the
        root, when the shard is new): a crash leaves the whole blob under its name or
        nothing there. Writers that hash while they write (sealing, uploads, peer
        downloads) write to `.incoming` and end here.
        """
        final = self.path(digest)
        created_shard = not final.parent.exists()
        final.parent.mkdir(exist_ok=True)
        os.replace(part, final)
        _fsync_dir(final.parent)
        if created_shard:
            _fsync_dir(self.root)

    def put_bytes(self, data: bytes) -> BlobDigest:
        """Store ``data``; returns its digest."""
        return self.put_stream(io.BytesIO(data))

    def delete(self, digest: str | bytes) -> bool:
        """Remove a blob (dataset purge); returns whether there was one to remove."""
        path = self.path(digest)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        return True

    def discard_incomplete(self) -> int:
        """Remove blobs left half-written by a crash; call when no writer is running."""
        removed = 0
        for part in self._incoming.glob("*.part"):
            part.unlink(missing_ok=True)
            removed += 1
        return removed

    # --- reading ------------------------------------------------------------------------------

    def has(self, digest: str | bytes) -> bool:
        """Whether the blob is here (its content is not re-checked)."""
        return self.path(digest).is_file()

    def size(self, digest: str | bytes) -> int:
        """The blob's length in bytes; `NotFoundError` if absent."""
        path = self.path(digest)
        try:
            return path.stat().st_size
        except FileNotFoundError:
            raise NotFoundError(f"blob {parse_digest(digest)} is not in {self.root}") from None

    def open(self, digest: str | bytes) -> BlobReader:
        """A reader of the blob that raises `IntegrityError` at the end if it is corrupt."""
        name = parse_digest(digest)
        try:
            file = self.path(name).open("rb", buffering=0)
        except FileNotFoundError:
            raise NotFoundError(f"blob {name} is not in {self.root}") from None
        return BlobReader(file, name)

    def read_stream(self, digest: str | bytes, dst: BinaryIO) -> int:
        """Copy the blob to ``dst``; returns its length; `IntegrityError` at the end if corrupt.

        The bytes are written as they are read, so on `IntegrityError` discard what ``dst``
        received.
        """
        total = 0
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        with self.open(digest) as reader:
            while got := reader.readinto(view):
                _write_all(dst, view[:got])
                total += got
        return total

    def read_bytes(self, digest: str | bytes) -> bytes:
        """The whole blob, checked before it is returned."""
        out = io.BytesIO()
        self.read_stream(digest, out)
        return out.getvalue()

    def verify(self, digest: str | bytes) -> None:
        """Re-hash the blob; raises `IntegrityError` naming it if it is corrupt."""
        with self.open(digest) as reader:
            buf = bytearray(_CHUNK)
            while reader.readinto(buf):
                pass

    def read_range(self, digest: str | bytes, start: int, end: int) -> bytes:
        """Bytes ``start`` (inclusive) to ``end`` (exclusive); not checked against the digest.

        Raises `NotFoundError` if the range is not within the blob.
        """
        name = parse_digest(digest)
        size = self.size(name)
        if not 0 <= start <= end <= size:
            raise NotFoundError(f"range {start}..{end} is outside blob {name} of {size} bytes")
        with self.path(name).open("rb") as file:
            file.seek(start)
            data = file.read(end - start)
        if len(data) != end - start:
            raise IntegrityError(f"blob {name} changed size while being read")
        return data

    def digests(self) -> Iterator[BlobDigest]:
        """Every blob's digest (in no particular order)."""
        for shard in self.root.iterdir():
            if len(shard.name) != 2 or not shard.is_dir():
                continue
            for entry in shard.iterdir():
                name = shard.name + entry.name
                if _HEX64.fullmatch(name):
                    yield name


def _write_all(dst: BinaryIO, view: memoryview) -> None:
    while view:
        written = dst.write(view)
        # Buffered writers write everything; raw ones may report a short write.
        view = view[len(view) if written is None else written :]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
