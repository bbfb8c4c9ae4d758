"""Sealed blobs on the nodes: the `Blobs` port over the organisations' nodes.

Each node keeps its own blob store. Publishing seals the file here while
streaming the sealed bytes to the owner's node (`StreamingUpload`: the upload
overlaps the sealing instead of following it), keeping a local copy only
when custodians' nodes need one pushed after the commit (`replicate`; every
other node fetches its replica by itself). A rotation downloads the old blob
from the owner's node, re-seals it here and uploads the new one. A fetch
downloads with byte ranges, resuming where a dropped connection stopped,
from the grantee's own node first (it keeps a replica), then the owner's and
the custodians'. Old blobs are deleted on each node once it has committed
the epoch that replaces them.

Files live in `work`, a directory the caller owns for the operation.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, cast

from sharechain.api.client import NodeClient
from sharechain.api.transfer import StreamingUpload, download_blob, upload_blob
from sharechain.contracts.epochs import KeyEpoch
from sharechain.crypto.stream import StreamDigests, encrypt_stream
from sharechain.errors import TooLargeError
from sharechain.sharing.ports import Rng, Seal, Sealed, quiet
from sharechain.sharing.records import DEFAULT_INLINE_LIMIT, Progress
from sharechain.sharing.remote_chain import committed_tx
from sharechain.sharing.remote_custody import ask, peer
from sharechain.storage import sealing
from sharechain.storage.blobs import BlobStore

__all__ = ["RemoteBlobs"]


class _Tee(io.RawIOBase):
    """Where the sealed stream goes while sealing: the upload, and a local copy if wanted."""

    def __init__(self, upload: StreamingUpload, copy: BinaryIO | None) -> None:
        self.upload = upload
        self.copy = copy

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.copy is not None:
            self.copy.write(data)
        return self.upload.write(data)


class RemoteBlobs:
    """The blob stores of the organisations' nodes, reached as one organisation."""

    inline_limit = DEFAULT_INLINE_LIMIT

    def __init__(
        self,
        home: NodeClient,
        peers: Mapping[str, NodeClient],
        me: str,
        work: Path,
        warn: Callable[[str], None] = quiet,
    ) -> None:
        self.home = home
        self.peers = dict(peers)
        self.me = me
        self.work = work
        self.warn = warn
        self._copies: dict[bytes, Path] = {}
        """Digest -> a local copy of a blob sealed here (for `replicate`)."""

    def _streamed(
        self, job: Seal, rng: Rng, progress: Progress | None, keep: Path | None
    ) -> StreamDigests:
        """Seal `source` (epoch 1) and stream it to the owner's node while sealing."""
        upload = StreamingUpload(self.home)
        try:
            with contextlib.ExitStack() as stack:
                raw = stack.enter_context(job.source.open("rb", buffering=0))
                copy = stack.enter_context(keep.open("wb")) if keep is not None else None
                src = sealing.counting(cast(BinaryIO, raw), progress)
                dst = cast(BinaryIO, _Tee(upload, copy))
                digests = encrypt_stream(
                    job.key, src, dst, epoch=1, segment_size=job.segment_size, rng=rng
                )
            upload.finish(digests.ciphertext_sha256)
        except BaseException:
            upload.abort()
            raise
        return digests

    def seal(self, job: Seal, rng: Rng, progress: Progress | None) -> Sealed:
        if job.source.stat().st_size <= job.inline_limit:
            store = BlobStore(self.work / "blobs")
            return sealing.seal_source(
                store, job.key, job.source, 1, job.segment_size, rng, progress, job.inline_limit
            )
        blob = self.work / "sealed"
        keep = blob if any(h != self.me for h in job.holders) else None
        digests = self._streamed(job, rng, progress, keep)
        self._copies[digests.ciphertext_sha256] = blob
        return b"", digests

    def reseal(
        self, old: KeyEpoch, keys: tuple[bytes, bytes], rng: Rng, progress: Progress | None
    ) -> Sealed:
        old_key, new_key = keys
        if old.inline:
            src = sealing.Source(data=old.inline)
        else:
            download_blob([self.home], old.ciphertext_digest, self.work / "old.sealed")
            src = sealing.Source(path=self.work / "old.sealed")
        store = BlobStore(self.work / "blobs")
        inline, digests = sealing.reseal(
            src, old_key, old.epoch, new_key, old.epoch + 1, store, rng, progress
        )
        if not inline:
            blob = store.path(digests.ciphertext_sha256)
            upload_blob(self.home, digests.ciphertext_sha256, blob)
            self._copies[digests.ciphertext_sha256] = blob
        return inline, digests

    @contextlib.contextmanager
    def source(
        self,
        epoch: KeyEpoch,
        *,
        offline: frozenset[str],
        progress: Progress | None,
        plain_size: int | None = None,
    ) -> Iterator[tuple[sealing.Source, Progress | None]]:
        if epoch.inline:
            yield sealing.Source(data=epoch.inline), None
            return
        # Our own node first (it keeps a replica), then the owner's and the custodians'.
        order = [self.me, epoch.by, *epoch.holders, *self.peers]
        usable = (o for o in dict.fromkeys(order) if o in self.peers and o not in offline)
        nodes = [self.peers[o] for o in usable]
        sealed = self.work / "payload.sealed"
        download_blob(
            nodes, epoch.ciphertext_digest, sealed, progress=progress, plain_size=plain_size
        )
        try:
            yield sealing.Source(path=sealed), None
        finally:
            sealed.unlink(missing_ok=True)

    def replicate(self, digest: bytes, holders: Sequence[str], owner: str, *, after: bytes) -> None:
        for org in holders:
            if org == owner:
                continue
            client = peer(self.peers, org)
            committed_tx(client, after)
            try:
                upload_blob(client, digest, self._copies[digest])
            except TooLargeError as exc:  # its quota or its disk: it fetches it later itself
                self.warn(
                    f"{org}'s node did not take the replica of blob {digest.hex()[:16]} "
                    f"({exc}); it fetches the blob itself once it has room, and grantees "
                    "fetch from the other nodes meanwhile"
                )

    def delete(self, digest: bytes, orgs: Sequence[str], *, after: bytes | None) -> None:
        path = f"/v1/blobs/{digest.hex()}"
        if after is None:
            # Never committed: only our own node received it (sealing streams it there).
            ask(
                self.me,
                self.home,
                "delete an uncommitted blob",
                "DELETE",
                path,
            )
            return
        for org in dict.fromkeys(orgs):
            node = self.home if org == self.me else peer(self.peers, org)
            if node is not self.home:
                committed_tx(node, after)
            ask(
                org,
                node,
                f"delete the superseded blob {digest.hex()[:16]}",
                "DELETE",
                path,
            )
