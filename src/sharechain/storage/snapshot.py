"""State snapshots: a node's world state and indexes at one height, with the block headers.

A node that starts from a snapshot does not replay the chain from genesis: it
loads the state, the transaction index and the history index as they were
after block `h`, the headers of blocks `0 .. h - 1` and block `h` itself, then
syncs forward from its peers like any node. Nodes make a snapshot every
`snapshot_blocks` blocks (`sharechain.node.snapshot_maker`), so that every
honest node's snapshot at a height is the same bytes.

The file is `MAGIC` followed by frames, each a 4-byte big-endian length and
a canonical CBOR value:

    manifest   {"genesis", "height", "block_hash", "state_root", "content_hash", "rows"}
    items      ["headers", [[header CBOR, orderer signature], ...]]   heights 0 .. h - 1
               ["block", block bytes]                                 block h, whole
               ["rows", table, [[column, ...], ...]]                   in primary-key order
               ["end"]

`content_hash` is SHA-256 over every frame after the manifest, lengths
included. Loading (`load_snapshot`) checks, before anything is installed:
that the snapshot is of this consortium, the header chain (block 0 is this
consortium's genesis, every header names the hash of the one before, block
`h` names header `h - 1`, the running state root recomputed from the
headers' delta hashes is the manifest's), block `h`'s hash and Merkle root,
every row's shape, and the content hash. What the state *is* cannot be
derived from headers (they commit to each block's writes, not to the whole
state), so the last step is the members' word: a quorum of them must have
signed the same `(height, block hash, state root, content hash)`
(`sharechain.storage.snapshot_evidence`). Anything that fails is refused with
`SnapshotRefusedError` naming the check, and nothing is installed.
"""

from __future__ import annotations

import hashlib
import sqlite3
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sharechain.codec import decode, encode
from sharechain.errors import EncodingError, IntegrityError
from sharechain.ledger.blocks import (
    GENESIS_PREV_HASH,
    BlockHeader,
    computed_tx_root,
    decode_block,
    decode_header,
    encode_block,
    make_block,
)
from sharechain.ledger.execution import next_state_root
from sharechain.ledger.store import Store

__all__ = [
    "BASE_META",
    "MAGIC",
    "TABLES",
    "SnapshotInfo",
    "SnapshotRefusedError",
    "load_snapshot",
    "read_manifest",
    "snapshot_base",
    "write_snapshot",
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
_ORDER = {"state": "key", "state_idx": "key", "txs": "id", "history": "key, height, idx"}
_TYPES: dict[str, tuple[type, ...]] = {
    "state": (str, bytes),
    "state_idx": (str, bytes),
    "txs": (bytes, int, int, str, str, str),
    "history": (str, int, int, bytes),
}
_CHUNK = 1024
_MAX_FRAME = 64 * 1024 * 1024
_LEN = struct.Struct(">I")
_MANIFEST_BYTES = 512


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


def _manifest_frame(info: SnapshotInfo) -> bytes:
    """The manifest's frame, padded to `_MANIFEST_BYTES` (it is written after the items)."""
    value = _manifest(info)
    for pad in range(_MANIFEST_BYTES):
        frame = _frame({**value, "pad": bytes(pad)})
        if len(frame) == _MANIFEST_BYTES:
            return frame
    raise EncodingError("the snapshot manifest does not fit its frame")


def _frame(value: Any) -> bytes:
    body = encode(value)
    return _LEN.pack(len(body)) + body


# -- writing --------------------------------------------------------------------


def write_snapshot(db: sqlite3.Connection, out: Path, genesis_hash: bytes) -> SnapshotInfo:
    """Write the store `db` reads (inside a read transaction, so at one height) to `out`.

    The file is written beside `out` and renamed into place when complete.
    """
    row = db.execute(
        "SELECT height, hash, state_root, data FROM blocks ORDER BY height DESC LIMIT 1"
    ).fetchone()
    if row is None:
        raise SnapshotRefusedError("store", "the store holds no block to snapshot")
    height, block_hash, state_root, base = int(row[0]), bytes(row[1]), bytes(row[2]), bytes(row[3])
    tmp = out.with_name(out.name + ".part")
    digest = hashlib.sha256()
    counts: list[tuple[str, int]] = []
    with tmp.open("wb") as f:
        f.write(MAGIC)
        f.write(bytes(_MANIFEST_BYTES))  # written at the end, once the counts are known

        def put(value: Any) -> None:
            frame = _frame(value)
            digest.update(frame)
            f.write(frame)

        chunk: list[list[bytes]] = []
        for _, data in _rows(
            db, "SELECT height, data FROM blocks WHERE height<? ORDER BY height", (height,)
        ):
            block = decode_block(bytes(data), check_canonical=False)
            chunk.append([block.header.encoded(), block.signature])
            if len(chunk) == _CHUNK:
                put(["headers", chunk])
                chunk = []
        if chunk:
            put(["headers", chunk])
        put(["block", base])
        for table, columns in TABLES.items():
            n = 0
            rows: list[list[Any]] = []
            query = f"SELECT {', '.join(columns)} FROM {table} ORDER BY {_ORDER[table]}"
            for r in _rows(db, query, ()):
                rows.append([bytes(v) if isinstance(v, memoryview | bytearray) else v for v in r])
                if len(rows) == _CHUNK:
                    put(["rows", table, rows])
                    n, rows = n + len(rows), []
            if rows:
                put(["rows", table, rows])
                n += len(rows)
            counts.append((table, n))
        put(["end"])
        info = SnapshotInfo(
            genesis_hash, height, block_hash, state_root, digest.digest(), tuple(counts)
        )
        manifest = _manifest_frame(info)
        f.seek(len(MAGIC))
        f.write(manifest)
        f.flush()
    tmp.replace(out)
    return info


def _rows(db: sqlite3.Connection, query: str, args: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    cursor = db.execute(query, args)
    while batch := cursor.fetchmany(_CHUNK):
        yield from batch


# -- reading --------------------------------------------------------------------


def _read_frame(f: IO[bytes]) -> bytes | None:
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


def _value(frame: bytes) -> Any:
    try:
        return decode(frame[_LEN.size :])
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


def _open(path: Path) -> tuple[IO[bytes], SnapshotInfo]:
    try:
        f = path.open("rb")
    except OSError as exc:
        raise SnapshotRefusedError("format", f"cannot read the snapshot {path}: {exc}") from None
    try:
        if f.read(len(MAGIC)) != MAGIC:
            raise SnapshotRefusedError("format", f"{path} is not a sharechain snapshot")
        frame = _read_frame(f)
        if frame is None:
            raise SnapshotRefusedError("format", "the snapshot file has no manifest")
        return f, _parse_manifest(_value(frame))
    except BaseException:
        f.close()
        raise


def read_manifest(path: Path) -> SnapshotInfo:
    """The manifest of the snapshot at `path` (nothing else is checked)."""
    f, info = _open(path)
    f.close()
    return info


def snapshot_base(store: Store) -> int | None:
    """The height a store loaded from a snapshot started at (None: it holds every block)."""
    raw = store.meta(BASE_META)
    return None if raw is None else int.from_bytes(raw, "big")


class _Loader:
    """Checks a snapshot's items in order and writes them to a new store."""

    def __init__(self, info: SnapshotInfo, genesis: bytes, db: sqlite3.Connection) -> None:
        self.info = info
        self.genesis = decode_block(genesis)
        self.db = db
        self.next_header = 0
        self.prev_hash = GENESIS_PREV_HASH
        self.root = GENESIS_PREV_HASH
        self.have_block = False
        self.counts = dict.fromkeys(TABLES, 0)
        self.table_at = 0

    def headers(self, value: Any) -> None:
        if self.have_block or not isinstance(value, list):
            raise SnapshotRefusedError("format", "snapshot headers are malformed or out of order")
        rows = []
        for pair in value:
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], bytes)):
                raise SnapshotRefusedError("format", "a snapshot header is malformed")
            header = self._header(pair[0])
            if header.height == 0:
                data = encode_block(self.genesis)
                if header != self.genesis.header:
                    raise SnapshotRefusedError(
                        "consortium", "the snapshot's block 0 is not this consortium's genesis"
                    )
            else:
                data = encode_block(make_block(header, pair[1], (), ()))
            self._link(header)
            rows.append((header.height, header.hash(), self.root, header.timestamp, data))
        self.db.executemany("INSERT INTO blocks VALUES (?, ?, ?, ?, ?)", rows)

    def _header(self, raw: Any) -> BlockHeader:
        try:
            if not isinstance(raw, bytes):
                raise EncodingError("not bytes")
            header = decode_header(decode(raw))
        except EncodingError as exc:
            raise SnapshotRefusedError(
                "headers", f"snapshot header {self.next_header} is malformed: {exc}"
            ) from None
        if header.encoded() != raw:
            raise SnapshotRefusedError("headers", f"snapshot header {self.next_header} is altered")
        return header

    def _link(self, header: BlockHeader) -> None:
        h = self.next_header
        if header.height != h:
            raise SnapshotRefusedError(
                "headers", f"the snapshot's headers skip from height {h - 1} to {header.height}"
            )
        if header.prev_hash != self.prev_hash:
            raise SnapshotRefusedError(
                "headers",
                f"header {h} does not name the hash of header {h - 1}: the snapshot's headers "
                "do not form this chain",
            )
        self.prev_hash = header.hash()
        self.root = next_state_root(self.root, header.state_delta_hash)
        self.next_header = h + 1

    def block(self, value: Any) -> None:
        info = self.info
        if self.have_block or self.next_header != info.height or not isinstance(value, bytes):
            raise SnapshotRefusedError(
                "headers",
                f"the snapshot holds {self.next_header} headers before block "
                f"{info.height}, not {info.height}",
            )
        try:
            block = decode_block(value)
        except EncodingError as exc:
            raise SnapshotRefusedError(
                "block", f"the snapshot's block is malformed: {exc}"
            ) from None
        if block.height != info.height or block.hash() != info.block_hash:
            raise SnapshotRefusedError(
                "block", f"the snapshot's block is not the block {info.height} its manifest names"
            )
        if computed_tx_root(block) != block.header.tx_root:
            raise SnapshotRefusedError("block", "the snapshot's block does not match its tx root")
        if info.height == 0 and block.hash() != self.genesis.hash():
            raise SnapshotRefusedError("consortium", "the snapshot's block 0 is not our genesis")
        self._link(block.header)
        if self.root != info.state_root:
            raise SnapshotRefusedError(
                "headers",
                "the state root recomputed from the snapshot's headers is not the one its "
                "manifest names",
            )
        self.db.execute(
            "INSERT INTO blocks VALUES (?, ?, ?, ?, ?)",
            (block.height, block.hash(), self.root, block.header.timestamp, value),
        )
        self.have_block = True

    def rows(self, table: Any, value: Any) -> None:
        names = list(TABLES)
        if not self.have_block or table not in TABLES or names.index(table) < self.table_at:
            raise SnapshotRefusedError("format", f"snapshot rows of {table!r} are out of order")
        self.table_at = names.index(table)
        types = _TYPES[table]
        if not isinstance(value, list) or not all(
            isinstance(r, list)
            and len(r) == len(types)
            and all(type(v) is t for v, t in zip(r, types, strict=True))
            for r in value
        ):
            raise SnapshotRefusedError("format", f"snapshot rows of {table} are malformed")
        columns = TABLES[table]
        marks = ", ".join("?" * len(columns))
        try:
            self.db.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", value
            )
        except sqlite3.IntegrityError:
            raise SnapshotRefusedError(
                "content", f"snapshot rows of {table} repeat a key"
            ) from None
        self.counts[table] += len(value)


def load_snapshot(path: Path, dest: Path, genesis: bytes) -> SnapshotInfo:
    """Check the snapshot at `path` and write it as a new store at `dest` (which must not exist).

    `genesis` is this consortium's block 0 (its bytes). Raises
    `SnapshotRefusedError` (and removes `dest`) if any check fails. The
    quorum's word on the content hash is checked by the caller, on the
    store written here, before it is installed.
    """
    genesis_hash = decode_block(genesis).hash()
    f, info = _open(path)
    try:
        if info.genesis_hash != genesis_hash:
            raise SnapshotRefusedError(
                "consortium",
                f"the snapshot is of the consortium {info.genesis_hash.hex()[:16]}..., this node's "
                f"is {genesis_hash.hex()[:16]}...",
            )
        Store(dest).close()  # the schema
        db = sqlite3.connect(dest, isolation_level=None)
        try:
            db.execute("BEGIN")
            _load_items(f, info, genesis, db)
            db.execute(
                "INSERT INTO meta VALUES (?, ?)", (BASE_META, info.height.to_bytes(8, "big"))
            )
            db.execute("COMMIT")
        finally:
            db.close()
    except BaseException:
        for leftover in dest.parent.glob(dest.name + "*"):
            leftover.unlink()
        raise
    finally:
        f.close()
    return info


def _load_items(f: IO[bytes], info: SnapshotInfo, genesis: bytes, db: sqlite3.Connection) -> None:
    loader = _Loader(info, genesis, db)
    digest = hashlib.sha256()
    ended = False
    while (frame := _read_frame(f)) is not None:
        if ended:
            raise SnapshotRefusedError("format", "the snapshot has data after its end")
        digest.update(frame)
        item = _value(frame)
        kind = item[0] if isinstance(item, list) and item else None
        if kind == "headers" and len(item) == 2:
            loader.headers(item[1])
        elif kind == "block" and len(item) == 2:
            loader.block(item[1])
        elif kind == "rows" and len(item) == 3:
            loader.rows(item[1], item[2])
        elif kind == "end" and len(item) == 1:
            ended = True
        else:
            raise SnapshotRefusedError("format", "the snapshot holds an item of unknown kind")
    if not ended or not loader.have_block:
        raise SnapshotRefusedError("format", "the snapshot file is truncated (no end)")
    if digest.digest() != info.content_hash:
        raise SnapshotRefusedError(
            "content",
            "the snapshot's content does not match the content hash of its manifest: "
            "the file is damaged or was altered",
        )
    if tuple(loader.counts.items()) != info.rows:
        raise SnapshotRefusedError("content", "the snapshot's row counts differ from its manifest")


def check_loaded(store: Store, base: int) -> None:
    """The start-up check of a store loaded from a snapshot at `base`: links and roots.

    Every stored block must name its predecessor's hash and carry the state
    root its delta hash leads to; blocks from `base` on must be whole (their
    transactions match their Merkle root). Replay needs the state of every
    height, which such a store never had; `verify_ledger` is for stores that
    hold the chain from genesis.
    """
    prev, root = GENESIS_PREV_HASH, GENESIS_PREV_HASH
    for height, data in store.iter_blocks(0):
        meta = store.block_meta(height)
        try:
            block = decode_block(data, check_canonical=False)
        except EncodingError as exc:
            raise SnapshotRefusedError("store", f"block {height} is malformed: {exc}") from None
        header = block.header
        root = next_state_root(root, header.state_delta_hash)
        if header.height != height or header.prev_hash != prev or meta is None:
            raise SnapshotRefusedError(
                "store", f"block {height} does not link to block {height - 1}"
            )
        if meta.hash != block.hash() or meta.state_root != root:
            raise SnapshotRefusedError(
                "store", f"block {height}'s stored hash or state root is wrong"
            )
        if (height == 0 or height >= base) and computed_tx_root(block) != header.tx_root:
            raise SnapshotRefusedError("store", f"block {height} does not match its tx root")
        prev = meta.hash
