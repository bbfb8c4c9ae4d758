"""The store's seal: a check, on every open, that the SQLite file is the chain's.

Replaying the whole chain (`sharechain.ledger.verify`) catches anything but
takes minutes on a large store; a store used without any check lets an
edited row (a grant, an organisation's key) be believed. The seal sits in
between. The store's `meta` table holds the head (height, hash, state root),
a digest of the whole world state and the number of rows of the transaction
and history indexes, authenticated with HMAC-SHA256 under a key kept outside
the SQLite file (`ledger.seal-key` next to `ledger.db`).

The state digest is an incremental MAC of the set of rows: with `F` the
PRF HMAC-SHA256 under a key derived from the seal key,

    digest = sum of F(table || key || value) over every row of `state` and `state_idx`, mod 2^256

the additive construction of Bellare, Guérin and Rogaway ("XOR MACs: new
methods for message authentication using finite pseudorandom functions",
CRYPTO 1995) and Bellare and Micciancio ("A new paradigm for collision-free
hashing: incrementality at reduced cost", EUROCRYPT 1997, AdHash, here keyed).
A block changes it without reading the rest of the state: for each row it
writes, subtract F of the value it replaces and add F of the new one. The
store calls `StateSealer` inside the block's own SQLite transaction, so the
seal always names the head it was committed with; a crash leaves both at h
or both at h+1.

Opening the store (`check_sealed`) checks, before anything is read from it:

- the seal's tag, and that it names the stored head;
- the state digest, recomputed from every row (one HMAC per row: an edited,
  inserted or deleted row shows here and nowhere cheaper, since nothing
  short of reading a row tells whether it was edited), and the row counts;
- the last `RECENT` blocks (hash, link, state root) and the head's signature.

`verify_ledger` (`chain verify`) recomputes the digest too, after replaying
the chain, so a digest that drifted from its rows is reported. What the seal
does not cover, `verify_ledger` does: edits to the history or transaction
index that keep the number of rows, and blocks older than the last
`RECENT`; nor does it notice the whole file replaced by an older sealed copy.
A store without a seal (written before seals, or by a node) is verified in
full once and then sealed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from sharechain.codec import decode, encode
from sharechain.crypto.signing import verify
from sharechain.errors import ChainError, ConfigError, EncodingError, InvalidSignatureError
from sharechain.ledger.blocks import BLOCK_DOMAIN, decode_block
from sharechain.ledger.execution import next_state_root
from sharechain.ledger.identities import org_from_value, org_key
from sharechain.ledger.schema import union_query
from sharechain.ledger.store import BlockChange, Store

__all__ = [
    "RECENT",
    "Seal",
    "StateSealer",
    "check_sealed",
    "read_seal",
    "reseal",
    "seal_key",
    "seal_key_path",
    "state_digest",
]

RECENT = 16
"""How many of the newest blocks an open re-checks (links, hashes, state roots)."""

_META = "seal"
_VERSION = 2
_DOMAIN = b"sharechain/store-seal/v2"
_DIGEST_DOMAIN = b"sharechain/state-digest/v1"
_MODULUS = 1 << 256
_TABLES = ("state", "state_idx")


@dataclass(frozen=True, slots=True)
class Seal:
    """What the seal vouches for: the head and a digest of everything derived from it."""

    height: int
    """Height of the head block."""
    head_hash: bytes
    """Its hash."""
    state_root: bytes
    """The running state root after it."""
    state_digest: bytes
    """The keyed sum over every row of `state` and `state_idx` (32 bytes, little-endian)."""
    tx_rows: int
    """Rows of the transaction index."""
    history_rows: int
    """Rows of the history index."""

    def encoded(self) -> bytes:
        return encode(
            [
                _VERSION,
                self.height,
                self.head_hash,
                self.state_root,
                self.state_digest,
                self.tx_rows,
                self.history_rows,
            ]
        )


def seal_key_path(store: Store) -> Path:
    """Where the seal key of `store` lives: beside the database, `<name>.seal-key`."""
    return Path(store.path).with_suffix(".seal-key")


def seal_key(store: Store, *, rng: Callable[[int], bytes] | None = None) -> bytes | None:
    """The seal key of `store`; with `rng`, created (32 random bytes) if there is none yet."""
    if store.path == ":memory:":
        return None
    path = seal_key_path(store)
    if rng is not None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            key = rng(32)
            try:
                os.write(fd, key)
                os.fsync(fd)
            finally:
                os.close(fd)
            return key
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(key) != 32:
        raise ConfigError(
            f"{path} is damaged (not 32 bytes); remove it, and the next command "
            "verifies the whole chain and seals the store again"
        )
    return key


RowKey = str | bytes
"""A state key: as the store holds it (text), or as its UTF-8 bytes."""

HmacSum = Callable[[bytes, bytes, Iterable[tuple[RowKey, bytes]]], bytes]
"""``hmac_sum(key, prefix, rows)``: the sum mod 2^256, 32 bytes little-endian, of
HMAC-SHA256(key, prefix || u32be(len(k)) || k || v) read little-endian over the rows."""

try:
    from sharechain.crypto import _sha256x
except ImportError:  # built without a C compiler
    _FAST: HmacSum | None = None
else:
    # An extension built before `hmac_sum` existed (an old build) still loads.
    _FAST = getattr(_sha256x, "hmac_sum", None) if _sha256x.ACCELERATED else None


class _RowMac:
    """F(table || key || value) summed over rows: HMAC-SHA256 under the digest key.

    The sum runs in the C extension where it is built (`hmac_sum`: two rows at a
    time with the SHA instructions, the cursor read in C); `python_sum` is the
    reference it is tested against and the fallback without it. Opening a store
    of 1M state rows costs 2.1 s of CPU in Python, 0.7 s with the extension, most
    of it SQLite reading the rows (`make bench`: `open_1m_s`).
    """

    def __init__(self, key: bytes) -> None:
        self._key = hmac.digest(key, _DIGEST_DOMAIN, "sha256")
        # Copying a keyed context skips the key schedule per row (20% faster).
        self._keyed = hmac.new(self._key, None, hashlib.sha256)

    def python_sum(self, table: str, rows: Iterable[tuple[RowKey, bytes]]) -> int:
        # The table name (no NUL in it) and the key's length make the encoding injective.
        prefix, keyed, total = table.encode() + b"\x00", self._keyed, 0
        for key, value in rows:
            k = key.encode() if isinstance(key, str) else key
            h = keyed.copy()
            h.update(b"".join((prefix, len(k).to_bytes(4, "big"), k, value)))
            total += int.from_bytes(h.digest(), "little")
        return total % _MODULUS

    def total(self, table: str, rows: Iterable[tuple[RowKey, bytes]]) -> int:
        """The sum mod 2^256 of F over `rows`, (key, value) pairs of `table`."""
        if _FAST is None:
            return self.python_sum(table, rows)
        return int.from_bytes(_FAST(self._key, table.encode() + b"\x00", rows), "little")


def state_digest(store: Store, key: bytes) -> bytes:
    """The state digest of `store` recomputed from every row (caller keeps writers out)."""
    mac = _RowMac(key)
    total = 0
    with store._lock:  # one consistent read of our own store
        for table in _TABLES:
            # Rowid (storage) order: a sum needs no sorting, and it reads each page
            # once. Keys come as their UTF-8 bytes (what F hashes) and the cursor
            # goes to the sum as it is: no text decoded, no row handled in Python.
            # A row of other SQLite types is an edit, even with the same bytes
            # (a key stored as a blob is one no lookup finds: a row deleted in
            # effect), and the sum refuses it: a key comes as NULL, a value as
            # the str, int or float that it is.
            cursor = store._db.execute(
                "SELECT CASE typeof(key) WHEN 'text' THEN CAST(key AS BLOB) END, value "
                f"FROM {table}"
            )
            try:
                total += mac.total(table, cursor)
            except TypeError:
                raise _refused(
                    store, f"a row of its {table} table is not a text key with a bytes value"
                ) from None
    return (total % _MODULUS).to_bytes(32, "little")


def _counts(store: Store) -> tuple[int, int]:
    with store._lock:
        txs, history = store._db.execute(
            "SELECT (SELECT COUNT(*) FROM txs) + (SELECT COUNT(*) FROM txs_recent), "
            "(SELECT COUNT(*) FROM history) + (SELECT COUNT(*) FROM history_recent)"
        ).fetchone()
    return int(txs), int(history)


def _tag(seal: Seal, key: bytes) -> bytes:
    return hmac.new(key, _DOMAIN + seal.encoded(), hashlib.sha256).digest()


def _write(store: Store, seal: Seal, key: bytes) -> None:
    store.set_meta(_META, encode([seal.encoded(), _tag(seal, key)]))


def reseal(store: Store, key: bytes) -> Seal:
    """Seal `store` at its head from scratch (after a full verification; writers kept out)."""
    head = store.head()
    if head is None:
        raise ChainError("the store holds no block to seal", None)
    seal = Seal(head.height, head.hash, head.state_root, state_digest(store, key), *_counts(store))
    _write(store, seal, key)
    return seal


class StateSealer:
    """The store's `sealer`: moves the seal to each new block, inside its transaction."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._mac = _RowMac(key)

    def __call__(self, store: Store, change: BlockChange) -> None:
        head = change.head
        prev = read_seal(store, self._key)
        if prev is None and head.height == 0:
            prev = Seal(-1, b"", b"", bytes(32), 0, 0)
        elif prev is None or prev.height != head.height - 1:
            # Only a checked store is written through a sealer; one whose seal
            # is missing or behind was changed by another writer since.
            raise _refused(store, "its seal does not name the block before the one committed")
        mac, total = self._mac, int.from_bytes(prev.state_digest, "little")
        for table in {row[0] for row in change.rows}:
            rows = [row[1:] for row in change.rows if row[0] == table]
            total -= mac.total(table, [(key, old) for key, old, _ in rows if old is not None])
            total += mac.total(table, [(key, new) for key, _, new in rows if new is not None])
        seal = Seal(
            head.height,
            head.hash,
            head.state_root,
            (total % _MODULUS).to_bytes(32, "little"),
            prev.tx_rows + change.tx_rows,
            prev.history_rows + change.history_rows,
        )
        _write(store, seal, self._key)


def read_seal(store: Store, key: bytes) -> Seal | None:
    """The recorded seal; None when there is none or it is of the first version (made
    before the digest was incremental: verify in full and reseal). Raises `ChainError`
    if it is forged."""
    raw = store.meta(_META)
    if raw is None:
        return None
    try:
        body, tag = decode(raw)
        fields = decode(body)
        if isinstance(fields, list) and len(fields) == 6 and _v1_authentic(body, tag, key):
            return None
        if not isinstance(fields, list) or fields[:1] != [_VERSION]:
            raise ValueError("unknown seal version")
        seal = Seal(*fields[1:])
    except (EncodingError, TypeError, ValueError):
        raise _refused(store, "its seal is malformed") from None
    if not isinstance(tag, bytes) or not hmac.compare_digest(tag, _tag(seal, key)):
        raise _refused(store, "its seal does not verify under this data directory's seal key")
    return seal


def _v1_authentic(body: bytes, tag: object, key: bytes) -> bool:
    want = hmac.new(key, b"sharechain/store-seal/v1" + body, hashlib.sha256).digest()
    return isinstance(tag, bytes) and hmac.compare_digest(tag, want)


def check_sealed(store: Store, seal: Seal, key: bytes) -> None:
    """Check `store` against its (authentic) `seal` and its newest blocks; raises `ChainError`."""
    head = store.head()
    if head is None or (head.height, head.hash, head.state_root) != (
        seal.height,
        seal.head_hash,
        seal.state_root,
    ):
        raise _refused(store, "its head block is not the one it was sealed at")
    if state_digest(store, key) != seal.state_digest:
        raise _refused(store, "its world state differs from the state its chain produced")
    if _counts(store) != (seal.tx_rows, seal.history_rows):
        raise _refused(store, "rows were added to or removed from its transaction or history index")
    _check_recent(store, head.height)  # reads the orderer's key from the state just checked


def _check_recent(store: Store, height: int) -> None:
    """Hash links, stored hashes and state roots of the newest blocks; the head's signature."""
    low = max(0, height - RECENT + 1)
    prev = store.block_meta(low - 1) if low > 0 else None
    block = None
    for h in range(low, height + 1):
        meta, data = store.block_meta(h), store.block_bytes(h)
        if meta is None or data is None:
            raise _refused(store, f"block {h} is missing")
        try:
            block = decode_block(data, check_canonical=False)
        except EncodingError:
            raise _refused(store, f"block {h} does not decode") from None
        if block.height != h or block.hash() != meta.hash:
            raise _refused(store, f"block {h} does not hash to its stored hash")
        if prev is not None:
            if block.header.prev_hash != prev.hash:
                raise _refused(store, f"block {h} does not link to block {h - 1}")
            if next_state_root(prev.state_root, block.header.state_delta_hash) != meta.state_root:
                raise _refused(store, f"the stored state root of block {h} is wrong")
        prev = meta
    if block is None or block.height == 0:
        return  # the genesis block is checked against consortium.json
    orderer = block.header.orderer
    value = store.get(org_key(orderer))
    if value is None:
        raise _refused(store, f"the head block's orderer {orderer!r} is unknown")
    try:
        verify(
            org_from_value(decode(value)).sign_key,
            block.signature,
            BLOCK_DOMAIN,
            block.header.encoded(),
        )
    except InvalidSignatureError:
        # The head block may itself have rotated its orderer's key: the
        # signature is then under the key before it, which the sealed state no
        # longer holds (the seal vouches for that state and this head).
        if not _touched_at(store, org_key(orderer), height):
            raise _refused(store, "the head block's signature does not verify") from None


def _touched_at(store: Store, key: str, height: int) -> bool:
    with store._lock:
        query = union_query("history", "1", "key=?1 AND height=?2", "LIMIT 1")
        row = store._db.execute(query, (key, height)).fetchone()
    return row is not None


def _refused(store: Store, what: str) -> ChainError:
    return ChainError(
        f"the ledger database {store.path} does not match its chain: {what}. It may have "
        "been edited outside sharechain; nothing was read from it. Run `sharechain chain "
        "verify` to see where it breaks, then `sharechain node repair --data-dir DIR` to move "
        "it aside and re-sync from the peers (or restore it from a backup)",
        None,
    )
