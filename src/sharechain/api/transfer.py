"""Moving sealed blobs between an organisation's tools and nodes over HTTP.

Uploads go in resumable chunks (`PUT /v1/blobs/{digest}?offset=&final=`): a
node that holds a different amount answers 409 with what it has, and the
upload continues from there. Every chunk is a signed request with its
Content-Digest; the next one is prepared while the current one travels, and
the node writes and hashes a chunk while it receives the next
(`sharechain.storage.uploads`). Downloads stream `GET /v1/blobs/{digest}` and,
after a dropped connection, resume with a `Range` request from the byte
reached; the whole blob must hash to the digest the chain records, or it is
discarded. `download_blob` tries each node that may hold a copy in turn.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Final

import httpx

from sharechain.api.client import NodeClient, raise_for_reply
from sharechain.crypto.stream import HEADER_SIZE, parse_header, sealed_size
from sharechain.errors import (
    DecryptionError,
    IntegrityError,
    NotFoundError,
    OrderingError,
    SharechainError,
)
from sharechain.handoff import put_until
from sharechain.storage.blobs import BlobStore

__all__ = [
    "RESUMES",
    "UPLOAD_CHUNK",
    "Progress",
    "StreamingUpload",
    "download_blob",
    "install",
    "upload_blob",
]

UPLOAD_CHUNK: Final = 16 << 20
"""Bytes per `PUT /v1/blobs` request."""
RESUMES: Final = 8
"""How many times one download resumes after a dropped connection before it gives up."""

Progress = Callable[[int], None]


def upload_blob(
    client: NodeClient, digest: bytes, path: Path, *, chunk: int = UPLOAD_CHUNK
) -> None:
    """Store the blob at `path` (named `digest`) on `client`'s node, in resumable chunks.

    Each chunk is a signed request (RFC 9421, with its Content-Digest). The next
    chunk is read, hashed and signed on a helper thread while the current one is
    in flight, so the client's hashing overlaps the transfer and the node's work.
    """
    size = path.stat().st_size
    url = f"/v1/blobs/{digest.hex()}"
    fd = os.open(path, os.O_RDONLY)

    def prepare(offset: int) -> tuple[httpx.Request, int, bool]:
        data = os.pread(fd, chunk, offset)
        final = offset + len(data) >= size
        request = client.signed(
            "PUT",
            url,
            params={"offset": offset, "final": str(final).lower()},
            content=data,
            headers={"content-type": "application/octet-stream"},
        )
        return request, len(data), final

    try:
        with ThreadPoolExecutor(1, thread_name_prefix="upload-prepare") as pool:
            offset = 0
            ahead = pool.submit(prepare, offset)
            for _ in range(size // chunk + 2 * RESUMES + 2):  # bounded: every turn progresses
                request, sent, final = ahead.result()
                if not final:
                    ahead = pool.submit(prepare, offset + sent)  # speculative: the usual case
                reply = client.http.send(request, auth=None)
                if reply.status_code == 409:  # the node has another amount: continue from there
                    offset = int(reply.json()["received"])
                    ahead.result()  # drop the speculative chunk
                    ahead = pool.submit(prepare, offset)
                    continue
                if reply.status_code == 422:
                    raise IntegrityError(f"{client.base_url}: {reply.json()['detail']}")
                raise_for_reply(reply)
                if reply.json()["stored"]:
                    return
                offset += sent
    finally:
        os.close(fd)
    raise OrderingError(f"uploading blob {digest.hex()} to {client.base_url} made no progress")


class StreamingUpload:
    """Send bytes to a node while they are produced: the digest is named at the end.

    `write` (from the producer) collects chunks for a sender thread, which puts
    each with `PUT /v1/uploads/{id}?offset=` (signed, with its Content-Digest);
    `finish(digest)` sends the rest and names the blob, which the node installs
    only if the bytes hash to it. At most `depth` chunks wait in memory: a slow
    node slows the producer. A failure of the sender is raised by the next
    `write` or by `finish`; nothing is kept on the node then.
    """

    def __init__(self, client: NodeClient, *, chunk: int = UPLOAD_CHUNK, depth: int = 2) -> None:
        self.client = client
        self.chunk = chunk
        self.id = os.urandom(16).hex()
        self._buffer = bytearray()
        self._queue: queue.Queue[tuple[bytes, bytes | None] | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._stored = False
        self._offset = 0
        self._thread = threading.Thread(target=self._send_all, name="stream-upload", daemon=True)
        self._thread.start()

    def write(self, data: bytes | memoryview) -> int:
        if self._error is not None:
            raise self._error
        self._buffer += data
        while len(self._buffer) >= self.chunk:
            self._put((bytes(self._buffer[: self.chunk]), None))
            del self._buffer[: self.chunk]
        return len(data)

    def _put(self, item: tuple[bytes, bytes | None] | None) -> None:
        if not put_until(self._queue, item, lambda: self._error is not None, 0.5):
            assert self._error is not None
            raise self._error

    def finish(self, digest: bytes) -> None:
        """Send what is left, name the blob `digest`; raise unless the node stored it."""
        self._put((bytes(self._buffer), digest))
        self._buffer = bytearray()
        self._thread.join()
        if self._error is not None:
            raise self._error
        if not self._stored:
            raise OrderingError(f"{self.client.base_url} did not store the streamed blob")

    def abort(self) -> None:
        """Stop sending (the producer failed); the node drops the partial upload later."""
        if self._thread.is_alive():
            self._error = self._error or OrderingError("upload aborted")
            self._thread.join()

    def _send_all(self) -> None:
        try:
            while True:
                try:
                    item = self._queue.get(timeout=0.5)
                except queue.Empty:
                    if self._error is not None:
                        return
                    continue
                if item is None:
                    return
                data, digest = item
                params: dict[str, str | int] = {"offset": self._offset, "final": "false"}
                if digest is not None:
                    params |= {"final": "true", "digest": digest.hex()}
                reply = self.client.http.put(
                    f"/v1/uploads/{self.id}",
                    params=params,
                    content=data,
                    headers={"content-type": "application/octet-stream"},
                )
                if reply.status_code == 422:
                    raise IntegrityError(f"{self.client.base_url}: {reply.json()['detail']}")
                raise_for_reply(reply)
                self._offset += len(data)
                if digest is not None:
                    self._stored = bool(reply.json()["stored"])
                    return
        except BaseException as exc:  # handed to the producer, which raises it
            self._error = exc


def _hash_existing(f: BinaryIO) -> tuple[Any, int]:
    """SHA-256 state and length of what a partial download already holds."""
    h = hashlib.sha256()
    f.seek(0)
    while data := f.read(1 << 20):
        h.update(data)
    return h, f.tell()


class _Bound:
    """The most a sealed blob of a `plain_size`-byte payload can be (`sealed_size`),
    known once its header (which gives the segment size) is in the file."""

    def __init__(self, client: NodeClient, digest: bytes, plain_size: int | None) -> None:
        self.client, self.digest, self.plain_size = client, digest, plain_size
        self.limit: int | None = None

    def check(self, f: BinaryIO, reached: int, claimed: int | None = None) -> None:
        """Raise IntegrityError once `reached` (or the size the node `claimed`) passes it."""
        if self.plain_size is None or reached < HEADER_SIZE:
            return
        if self.limit is None:
            f.seek(0)
            try:
                header = parse_header(f.read(HEADER_SIZE))
            except DecryptionError:
                raise self._refused("does not begin as a sealed stream") from None
            finally:
                f.seek(0, os.SEEK_END)
            self.limit = sealed_size(self.plain_size, header.segment_size)
        if max(reached, claimed or 0) > self.limit:
            raise self._refused(
                f"is longer than the {self.limit} bytes a sealed payload of the dataset's "
                f"{self.plain_size} bytes can be"
            )

    def _refused(self, what: str) -> IntegrityError:
        return IntegrityError(
            f"the blob {self.client.base_url} sends as {self.digest.hex()} {what}; it was discarded"
        )


def _download_from(
    client: NodeClient,
    digest: bytes,
    dest: Path,
    progress: Progress | None,
    resume: bool,
    plain_size: int | None = None,
) -> None:
    """Download into `dest`, resuming with `Range` after a dropped connection; check SHA-256.

    With `resume`, bytes already in `dest` (an earlier, interrupted download of the
    same blob) are kept and the download continues after them. With `plain_size`
    (the dataset's size as the chain records it), a download longer than its sealed
    payload can be is refused as soon as it is (IntegrityError), not at its end.
    """
    h = hashlib.sha256()
    reached = 0
    size: int | None = None
    drops = 0
    bound = _Bound(client, digest, plain_size)
    with dest.open("r+b" if resume and dest.exists() else "w+b") as f:
        if resume:
            h, reached = _hash_existing(f)
            bound.check(f, reached)
        while size is None or reached < size:
            headers = {"Range": f"bytes={reached}-"} if reached else {}
            try:
                with client.http.stream(
                    "GET", f"/v1/blobs/{digest.hex()}", headers=headers
                ) as reply:
                    if reply.status_code == 416 and reached:  # what we hold is all, or too much
                        reply.read()
                        total = reply.headers.get("content-range", "").rpartition("/")[2]
                        if total.isdigit() and int(total) == reached:
                            size = reached
                            break
                        f.seek(0)
                        f.truncate()
                        h, reached = hashlib.sha256(), 0
                        continue
                    if not reply.is_success:
                        reply.read()
                        raise_for_reply(reply)
                    if reached and reply.status_code != 206:  # range ignored: start over
                        f.seek(0)
                        f.truncate()
                        h, reached = hashlib.sha256(), 0
                    total = reply.headers.get("content-range", "").rpartition("/")[2]
                    size = int(total) if total.isdigit() else int(reply.headers["content-length"])
                    bound.check(f, reached, size)
                    for data in reply.iter_bytes():
                        f.write(data)
                        h.update(data)
                        reached += len(data)
                        bound.check(f, reached)
                        if progress is not None:
                            progress(len(data))
            except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout) as exc:
                drops += 1
                if drops > RESUMES:
                    raise OrderingError(
                        f"the download of blob {digest.hex()} from {client.base_url} broke off "
                        f"{drops} times (last: {exc}); try again later"
                    ) from None
            if size is not None and reached > size:
                break
    if h.digest() != digest or reached != size:
        dest.unlink(missing_ok=True)
        raise IntegrityError(
            f"the blob {client.base_url} sent hashes to {h.hexdigest()} ({reached} bytes), not "
            f"{digest.hex()} as the chain records; it was discarded"
        )


def download_blob(
    sources: Sequence[NodeClient],
    digest: bytes,
    dest: Path,
    *,
    progress: Progress | None = None,
    resume: bool = False,
    plain_size: int | None = None,
) -> NodeClient:
    """Download the blob `digest` from the first source that has it intact; returns it.

    `plain_size`: the size of the payload sealed in it, as the chain records it
    (`Dataset.size`); a source sending more than its sealed stream can be is
    cut off and treated as altered bytes.

    A source that is offline, refuses, lacks the blob or sends bytes that do not hash
    to `digest` is skipped; when none succeeds, the first `IntegrityError` (altered
    bytes) is raised, else the first error. With `resume`, the bytes already in
    `dest` are kept and continued (from any source: the blob is named by its
    digest), and bytes received before a failure stay for the next try; altered
    bytes are always discarded.
    """
    errors: list[SharechainError] = []
    for client in sources:
        try:
            _download_from(client, digest, dest, progress, resume, plain_size)
            return client
        except httpx.TransportError as exc:
            errors.append(OrderingError(f"{client.base_url} does not answer ({exc})"))
        except IntegrityError as exc:
            errors.append(exc)
            dest.unlink(missing_ok=True)
            continue
        except SharechainError as exc:
            errors.append(exc)
        if not resume:
            dest.unlink(missing_ok=True)
    # A node that sent altered bytes matters more than one that had nothing to send.
    altered = [e for e in errors if isinstance(e, IntegrityError)]
    raise (altered or errors or [NotFoundError(f"no node to download {digest.hex()} from")])[0]


def install(store: BlobStore, part: Path, digest: bytes) -> None:
    """Make the checked file `part` the blob `digest` of `store`: durable, then renamed.

    The caller has checked that the bytes hash to `digest`. A crash leaves the whole
    blob under its name or nothing there (the `.part` file at worst).
    """
    with part.open("rb") as f:
        os.fsync(f.fileno())
    store.adopt(part, digest)
