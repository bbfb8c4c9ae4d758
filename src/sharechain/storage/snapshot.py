"""State snapshots: a node's world state and indexes at one height, with the block headers.

A node that starts from a snapshot does not replay the chain from genesis: it
loads the state, the transaction index and the history index as they were
after block `h`, the headers of blocks `0 .. h - 1` and block `h` itself, then
syncs forward from its peers like any node. Nodes make a snapshot every
`snapshot_blocks` blocks (`sharechain.node.snapshot_maker`), so that every
honest node's snapshot at a height is the same bytes. The file's layout is
`sharechain.storage.snapshot_format`'s.

Writing (`write_snapshot`) reads what a snapshot carries and nothing more:
the rows of the four tables, block `h`, and of every block below it the
header and the orderer's signature, cut out of the stored block without
decoding or hashing its transactions (`_header_parts`).

Loading (`load_snapshot`) checks, before anything is installed: that the
snapshot is of this consortium, the header chain (block 0 is this
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
from pathlib import Path
from typing import IO, Any

from sharechain.codec import decode, encode
from sharechain.errors import EncodingError
from sharechain.ledger.blocks import (
    GENESIS_PREV_HASH,
    HEADER_FIELDS,
    BlockHeader,
    computed_tx_root,
    decode_block,
    decode_header,
    encode_block,
    make_block,
)
from sharechain.ledger.execution import next_state_root
from sharechain.ledger.schema import union_query
from sharechain.ledger.store import Store
from sharechain.storage.snapshot_format import (
    BASE_META,
    CHUNK,
    MAGIC,
    MANIFEST_BYTES,
    ROW_ORDER,
    ROW_TYPES,
    TABLES,
    SnapshotInfo,
    SnapshotRefusedError,
    frame,
    frame_value,
    manifest_frame,
    open_snapshot,
    read_frame,
    read_manifest,
)

__all__ = [
    "BASE_META",
    "MAGIC",
    "TABLES",
    "SnapshotInfo",
    "SnapshotRefusedError",
    "check_loaded",
    "load_snapshot",
    "read_manifest",
    "snapshot_base",
    "write_snapshot",
]


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
        f.write(bytes(MANIFEST_BYTES))  # written at the end, once the counts are known

        def put(value: Any) -> None:
            framed = frame(value)
            digest.update(framed)
            f.write(framed)

        # One block in memory at a time (a block may be megabytes), CHUNK headers a frame.
        headers: list[list[bytes]] = []
        for (data,) in db.execute(
            "SELECT data FROM blocks WHERE height<? ORDER BY height", (height,)
        ):
            headers.append(_header_parts(data))
            if len(headers) == CHUNK:
                put(["headers", headers])
                headers = []
        if headers:
            put(["headers", headers])
        put(["block", base])
        for table, columns in TABLES.items():
            n = 0
            query = union_query(table, ", ".join(columns), tail=f"ORDER BY {ROW_ORDER[table]}")
            cursor = db.execute(query)
            # SQLite gives BLOBs as bytes and TEXT as str: the rows are encoded as read
            # (a tuple encodes as the array a list would).
            while rows := cursor.fetchmany(CHUNK):
                put(["rows", table, rows])
                n += len(rows)
            counts.append((table, n))
        put(["end"])
        info = SnapshotInfo(
            genesis_hash, height, block_hash, state_root, digest.digest(), tuple(counts)
        )
        f.seek(len(MAGIC))
        f.write(manifest_frame(info))
        f.flush()
    tmp.replace(out)
    return info


_TXS_KEY, _HEADER_KEY = encode("txs"), encode("header")
_HEADER_FIELDS = len(HEADER_FIELDS)
_SIGNATURE_TAIL = encode("signature") + b"\x58\x40"  # a 64-byte Ed25519 signature ends the block


def _header_parts(data: bytes) -> list[bytes]:
    """`[header CBOR, signature]` of a stored block, its transactions skipped, not decoded.

    A stored block is canonical (`encode_block`): a map whose keys come in the
    order `txs`, `header`, `results`, `signature`, so the header follows the
    transaction list and the signature closes the block. Only the lengths of
    the transactions are read. A block of another shape is decoded whole.
    """
    try:
        if data[0] != 0xA4 or data[1:5] != _TXS_KEY:
            raise EncodingError("not a stored block's layout")
        count, i = _argument(data, 5, 4)
        for _ in range(count):
            size, i = _argument(data, i, 2)
            i += size
        if data[i : i + len(_HEADER_KEY)] != _HEADER_KEY:
            raise EncodingError("no header after the transactions")
        start = i + len(_HEADER_KEY)
        n, i = _argument(data, start, 5)
        for _ in range(2 * n):  # the header's fields: text keys, ints, hashes, a text
            i = _skip_scalar(data, i)
        if n != _HEADER_FIELDS or data[-64 - len(_SIGNATURE_TAIL) : -64] != _SIGNATURE_TAIL:
            raise EncodingError("not a stored block's header and signature")
        # The header is not decoded: a loading node checks every header's fields and
        # canonical form (`_Loader._header`), and the chain of their hashes.
        raw, signature = data[start:i], data[-64:]
    except (EncodingError, IndexError):
        block = decode_block(data, check_canonical=False)
        return [block.header.encoded(), block.signature]
    return [raw, signature]


def _argument(data: bytes, i: int, major: int) -> tuple[int, int]:
    """The argument of the CBOR head at `i` (of major type `major`), and where it ends."""
    first = data[i]
    if first >> 5 != major:
        raise EncodingError(f"CBOR major type {first >> 5} where {major} was expected")
    info = first & 0x1F
    if info < 24:
        return info, i + 1
    if info > 27:
        raise EncodingError("an indefinite or reserved CBOR length")
    width = 1 << (info - 24)
    return int.from_bytes(data[i + 1 : i + 1 + width], "big"), i + 1 + width


def _skip_scalar(data: bytes, i: int) -> int:
    """Where the integer, byte string or text at `i` ends."""
    major = data[i] >> 5
    if major not in (0, 1, 2, 3):
        raise EncodingError("a header field that is not a scalar")
    n, end = _argument(data, i, major)
    return end + n if major >= 2 else end


# -- reading --------------------------------------------------------------------


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
        types = ROW_TYPES[table]
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
    f, info = open_snapshot(path)
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
    while (raw := read_frame(f)) is not None:
        if ended:
            raise SnapshotRefusedError("format", "the snapshot has data after its end")
        digest.update(raw)
        item = frame_value(raw)
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
