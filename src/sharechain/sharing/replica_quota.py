"""How much of a node's disk one member's replicas may take.

Every node keeps a replica of the current blob of every active dataset
(`sharechain.sharing.replicas`), and an owner registers datasets as large as
it likes. Without a limit one member could fill every other member's disk
with its own blobs: their full-disk guards would trip and they would stop
taking work. So each node gives every other organisation a quota:

- the bytes of that organisation's blobs this node holds (every blob one of
  its key epochs names, current or not, counted once) may not pass the
  quota; the node's own organisation's blobs do not count (its disk is its
  own);
- the quota is `replica_quota_bytes` (a `settings` entry of
  `consortium.json`), or by default a fair share: the size of the file
  system under the node's blob directory ÷ the number of active members;
- where a replica arrives, the node looks at what it may still take:
  the blob fetcher (`sharechain.sharing.blob_fetch`) does not start a
  download that would pass it and stops one that does (it waits, and looks
  again every `RECHECK` seconds: a purge or a rotation of that owner's
  datasets makes room), and a replica the owner pushes (`PUT
  /v1/blobs/{digest}`) is refused with 413 before its bytes are written.

A pushed replica is also held to what the sealed payload of its dataset can
be (`crypto.stream.sealed_size` of the recorded size, in the segments its
stream header names) and to the node's free disk (twice `disk_reserve_bytes`
kept free, as a fetch does): the node fetches what it refused later, by
itself.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sharechain.contracts import queries
from sharechain.crypto.stream import HEADER_SIZE, parse_header, sealed_size
from sharechain.errors import DecryptionError, NotFoundError, TooLargeError
from sharechain.ledger.state import StateReader
from sharechain.ledger.store import Store
from sharechain.sharing.replicas import naming
from sharechain.storage.blobs import BlobStore
from sharechain.storage.datadir import DataDir
from sharechain.storage.diskspace import DEFAULT_RESERVE

__all__ = ["RECHECK", "ReplicaQuota", "check_push"]

RECHECK: Final = 60.0
"""Seconds between looks at a fetch that waits for its owner's quota."""


@dataclass(frozen=True, slots=True)
class ReplicaQuota:
    """The replica quota of the node of `here` (see the module docstring)."""

    store: Store
    blobs: BlobStore
    here: str
    setting: int | None = None
    """`replica_quota_bytes`; None: a fair share of the disk."""
    keep_free: int = 0
    """Bytes a replica leaves free on the disk (twice `disk_reserve_bytes`)."""

    @classmethod
    def of(cls, store: Store, datadir: DataDir, here: str) -> ReplicaQuota:
        """The quota of the node of `here` on `datadir`, from its settings
        (`ConfigError` for a bad one)."""
        setting = None
        if "replica_quota_bytes" in datadir.settings:
            setting = datadir.int_setting("replica_quota_bytes", 0)
        reserve = datadir.int_setting("disk_reserve_bytes", DEFAULT_RESERVE)
        return cls(store, BlobStore(datadir.blob_dir), here, setting, 2 * reserve)

    def quota(self) -> int:
        """Bytes each other organisation's blobs may take on this node."""
        if self.setting is not None:
            return self.setting
        members = [
            o
            for o in queries.organisations(self.store)
            if o.status == "active" and "member" in o.roles
        ]
        return _disk(self.blobs.root).total // max(1, len(members))

    def used(self, owner: str, *, besides: bytes = b"") -> int:
        """Bytes of `owner`'s blobs (but `besides`) this node holds."""
        digests = {
            v["ciphertext_digest"]
            for _, v in StateReader(self.store).scan("epoch/")
            if v["by"] == owner and not v["inline"]
        }
        digests.discard(besides)
        return sum(self._size(d) for d in digests)

    def _size(self, digest: bytes) -> int:
        try:
            return self.blobs.size(digest)
        except NotFoundError:  # not here, or deleted meanwhile
            return 0

    def left(self, owner: str, digest: bytes) -> int | None:
        """Bytes of `owner`'s blob `digest` this node still takes (None: no limit)."""
        if owner == self.here:
            return None
        return max(0, self.quota() - self.used(owner, besides=digest))

    def refusal(self, owner: str, digest: bytes, size: int) -> str:
        """Why `size` bytes of `owner`'s blob `digest` pass the quota."""
        quota = self.quota()
        return (
            f"{owner}'s replicas on {self.here}'s node would pass their quota: "
            f"{self.used(owner, besides=digest)} bytes held, {size} more for blob "
            f"{digest.hex()[:16]}, {quota} allowed (replica_quota_bytes, or the disk's size "
            f"over the number of members); {owner} purges or shrinks its datasets, or "
            f"{self.here}'s operator raises replica_quota_bytes"
        )


def check_push(
    quota: ReplicaQuota,
    owner: str,
    digest: bytes,
    offset: int,
    body: bytes,
    part: Path,
) -> None:
    """Raise `TooLargeError` unless this node takes the chunk `body` at `offset` of the
    replica `digest` its owner `owner` pushes (`part`: where the bytes so far are)."""
    sizes = [
        queries.dataset(quota.store, e.dataset).size
        for e in naming(quota.store, digest)
        if e.by == owner
    ]
    if not sizes:
        return  # not a replica of `owner`'s (the route's own rules decide)
    plain = max(sizes)
    end = offset + len(body)
    head = body[:HEADER_SIZE] if offset == 0 else _head(part)
    try:
        whole = sealed_size(plain, parse_header(head).segment_size)
        to_come = whole - offset
    except DecryptionError:
        if offset == 0 and len(body) >= HEADER_SIZE:
            raise TooLargeError(
                f"the replica {digest.hex()[:16]} {owner} sends does not begin as a sealed stream"
            ) from None
        # The header is not on disk yet (the first chunk is still being written):
        # the loosest bound, one-byte segments; the quota still holds below.
        whole, to_come = sealed_size(plain, 1), len(body)
    if end > whole:
        raise TooLargeError(
            f"the replica {digest.hex()[:16]} {owner} sends passes the {whole} bytes a sealed "
            f"payload of its dataset's {plain} bytes can be"
        )
    left = quota.left(owner, digest)
    if left is not None and (whole if offset == 0 else end) > left:
        raise TooLargeError(quota.refusal(owner, digest, whole))
    free = _disk(quota.blobs.root).free
    if free - to_come < (keep_free := quota.keep_free):
        raise TooLargeError(
            f"{quota.here}'s node keeps {keep_free} bytes of its disk free (twice its "
            f"disk_reserve_bytes) and has {free}; the replica {digest.hex()[:16]} is fetched "
            "by the node itself once there is room"
        )


def _head(part: Path) -> bytes:
    """The stream header at the start of a part file (fewer bytes while it has none)."""
    try:
        with part.open("rb") as f:
            return f.read(HEADER_SIZE)
    except OSError:
        return b""


def _disk(path: Path) -> shutil._ntuple_diskusage:
    """The usage of the file system `path` is on (or would be, before it exists)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return shutil.disk_usage(path)
