"""The snapshot file's format: its manifest, its frames, and reading them back.

A state snapshot (`sharechain.storage.snapshot`) is `MAGIC` followed by frames,
each a 4-byte big-endian length and a canonical CBOR value:

    manifest   {"genesis", "height", "block_hash", "state_root", "content_hash", "rows"}
    items      ["headers", [[header CBOR, orderer signature], ...]]   heights 0 .. h - 1
               ["block", block bytes]                                 block h, whole
               ["rows", table, [[column, ...], ...]]                   in primary-key order
               ["end"]

The manifest is written last, into room kept for it after `MAGIC`
(`MANIFEST_BYTES`), once the row counts and the content hash are known.
`content_hash` is SHA-256 over every frame after the manifest, lengths
included. This module knows the layout only; what the items must say, and
how they are made and checked, is `sharechain.storage.snapshot`'s.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sharechain.codec import decode, encode
from sharechain.errors import EncodingError, IntegrityError

__all__ = [
    "BASE_META",
    "CHUNK",
    "MAGIC",
    "MANIFEST_BYTES",
    "ROW_ORDER",
    "ROW_TYPES",
    "TABLES",
    "SnapshotInfo",
    "SnapshotRefusedError",
    "frame",
    "frame_value",
    "manifest_frame",
    "open_snapshot",
    "read_frame",
    "read_manifest",
]

MAGIC = b"sharechain-snapshot/v1\n"
BASE_META = "snapshot_base"
"""`meta` row of a store loaded from a snapshot: the height it started at (8 bytes, big-endian).
Blocks below it (genesis aside) are held as headers only."""

TABLES: dict[str, tuple[str, ...]] = {
    "state": ("key", "value"),
    "state_idx": ("key", "value"),
    "txs": ("id", "height", "idx", "type", "sender", "code"),
    "history": ("key", "height", "idx", "tx_id"),
}
"""The tables a snapshot carries, in file order, with their columns."""
ROW_ORDER = {"state": "key", "state_idx": "key", "txs": "id", "history": "key, height, idx"}
ROW_TYPES: dict[str, tuple[type, ...]] = {
    "state": (str, bytes),
    "state_idx": (str, bytes),
    "txs": (bytes, int, int, str, str, str),
    "history": (str, int, int, bytes),
}
CHUNK = 1024
_MAX_FRAME = 64 * 1024 * 1024
_LEN = struct.Struct(">I")
MANIFEST_BYTES = 512


class SnapshotRefusedError(IntegrityError):
    """A snapshot was refused: it is of another chain, damaged, or not vouched for.

    `reason` is a short code (`consortium`, `format`, `headers`, `block`,
    `content`, `evidence`, `store`); the message says what failed and what to do.
    Nothing was installed.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """What a snapshot's manifest says."""

    genesis_hash: bytes
    """The consortium it is of."""
    height: int
    """The height of its state (block `height` is its last block)."""
    block_hash: bytes
    """The hash of block `height`."""
    state_root: bytes
    """The running state root after it."""
    content_hash: bytes
    """SHA-256 over every frame after the manifest."""
    rows: tuple[tuple[str, int], ...]
    """(table, rows) for each table carried."""

    def to_json(self) -> dict[str, Any]:
        return {
            "genesis_hash": self.genesis_hash.hex(),
            "height": self.height,
            "block_hash": self.block_hash.hex(),
            "state_root": self.state_root.hex(),
            "content_hash": self.content_hash.hex(),
            "rows": dict(self.rows),
        }


def _manifest(info: SnapshotInfo) -> dict[str, Any]:
    return {
        "genesis": info.genesis_hash,
        "height": info.height,
        "block_hash": info.block_hash,
        "state_root": info.state_root,
        "content_hash": info.content_hash,
        "rows": dict(info.rows),
    }


def manifest_frame(info: SnapshotInfo) -> bytes:
    """The manifest's frame, padded to `MANIFEST_BYTES` (it is written after the items)."""
    value = _manifest(info)
    for pad in range(MANIFEST_BYTES):
        framed = frame({**value, "pad": bytes(pad)})
        if len(framed) == MANIFEST_BYTES:
            return framed
    raise EncodingError("the snapshot manifest does not fit its frame")


def frame(value: Any) -> bytes:
    """`value` as a frame: its CBOR's length, then the CBOR."""
    body = encode(value)
    return _LEN.pack(len(body)) + body


def read_frame(f: IO[bytes]) -> bytes | None:
    """The next frame of `f`, length included (None at the end of the file)."""
    head = f.read(_LEN.size)
    if not head:
        return None
    if len(head) != _LEN.size:
        raise SnapshotRefusedError("format", "the snapshot file is truncated (a frame length)")
    (n,) = _LEN.unpack(head)
    if n > _MAX_FRAME:
        raise SnapshotRefusedError("format", f"a snapshot frame of {n} bytes is too large")
    body = f.read(n)
    if len(body) != n:
        raise SnapshotRefusedError("format", "the snapshot file is truncated")
    return head + body


def frame_value(raw: bytes) -> Any:
    """The value a frame carries (it must be canonical CBOR)."""
    try:
        return decode(raw[_LEN.size :])
    except EncodingError as exc:
        raise SnapshotRefusedError(
            "format", f"a snapshot frame is not canonical CBOR: {exc}"
        ) from None


def _parse_manifest(value: Any) -> SnapshotInfo:
    try:
        rows = value["rows"]
        info = SnapshotInfo(
            value["genesis"],
            value["height"],
            value["block_hash"],
            value["state_root"],
            value["content_hash"],
            tuple((t, rows[t]) for t in TABLES),
        )
    except (KeyError, TypeError):
        raise SnapshotRefusedError("format", "the snapshot manifest is malformed") from None
    hashes = (info.genesis_hash, info.block_hash, info.state_root, info.content_hash)
    if not all(isinstance(h, bytes) and len(h) == 32 for h in hashes):
        raise SnapshotRefusedError("format", "the snapshot manifest's hashes are malformed")
    if not isinstance(info.height, int) or not 0 <= info.height < 2**62:
        raise SnapshotRefusedError("format", "the snapshot manifest's height is malformed")
    return info


def open_snapshot(path: Path) -> tuple[IO[bytes], SnapshotInfo]:
    """The snapshot file, positioned after its manifest, and the manifest (caller closes)."""
    try:
        f = path.open("rb")
    except OSError as exc:
        raise SnapshotRefusedError("format", f"cannot read the snapshot {path}: {exc}") from None
    try:
        if f.read(len(MAGIC)) != MAGIC:
            raise SnapshotRefusedError("format", f"{path} is not a sharechain snapshot")
        raw = read_frame(f)
        if raw is None:
            raise SnapshotRefusedError("format", "the snapshot file has no manifest")
        return f, _parse_manifest(frame_value(raw))
    except BaseException:
        f.close()
        raise


def read_manifest(path: Path) -> SnapshotInfo:
    """The manifest of the snapshot at `path` (nothing else is checked)."""
    f, info = open_snapshot(path)
    f.close()
    return info
