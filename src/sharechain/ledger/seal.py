"""The store's seal: a quick check, on every open, that the SQLite file is the chain's.

Replaying the whole chain (`sharechain.ledger.verify`) catches anything but
takes minutes on a large store; a store used without any check lets an
edited row (a grant, an organisation's key) be believed. The seal sits in
between. After each commit the store's writer records, in the store's
`meta` table, the head (height, hash, state root), a digest of the whole
world state (every row of `state` and `state_idx`, in key order) and the
number of rows of the transaction and history indexes, authenticated with
HMAC-SHA256 under a key kept outside the SQLite file. Opening the store
(`check_sealed`) checks, before anything is read from it:

- the last `RECENT` blocks: each decodes, hashes to its stored hash, links
  to its parent and carries the stored running state root;
- the head block's signature under its orderer's key;
- the seal's tag, and that it names the stored head;
- the state digest, recomputed (about 1 µs per state row), and the counts.

So an attacker who can edit the SQLite file but not read the seal key can
change no state row, add or drop no index row and rewrite no recent block
unnoticed. What the seal does not cover, `verify_ledger` does: edits to the
history or transaction index that keep the number of rows, and blocks older
than the last `RECENT`. A store without a seal (written before seals, or by
a process that died between a commit and its seal) is verified in full once
and then sealed.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from sharechain.codec import decode, encode
from sharechain.crypto.signing import verify
from sharechain.errors import ChainError, EncodingError, InvalidSignatureError
from sharechain.ledger.blocks import BLOCK_DOMAIN, decode_block
from sharechain.ledger.execution import next_state_root
from sharechain.ledger.identities import org_from_value, org_key
from sharechain.ledger.store import Store

__all__ = ["RECENT", "Seal", "check_sealed", "read_seal", "seal_store", "sealed_state"]

RECENT = 16
"""How many of the newest blocks an open re-checks (links, hashes, state roots)."""

_META = "seal"
_DOMAIN = b"sharechain/store-seal/v1"


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
    """SHA-256 over every (key, value) row of `state` and `state_idx`, in key order."""
    tx_rows: int
    """Rows of the transaction index."""
    history_rows: int
    """Rows of the history index."""

    def encoded(self) -> bytes:
        return encode(
            [
                self.height,
                self.head_hash,
                self.state_root,
                self.state_digest,
                self.tx_rows,
                self.history_rows,
            ]
        )


def sealed_state(store: Store) -> Seal:
    """The seal of `store` as it is now (caller keeps writers out meanwhile)."""
    head = store.head()
    if head is None:
        raise ChainError("the store holds no block to seal", None)
    digest = hashlib.sha256()
    with store._lock:  # one consistent read of our own store
        db = store._db
        for table in ("state", "state_idx"):
            cursor = db.execute(f"SELECT key, value FROM {table} ORDER BY key")
            while rows := cursor.fetchmany(4096):
                digest.update(encode([[k, bytes(v)] for k, v in rows]))
        txs = int(db.execute("SELECT COUNT(*) FROM txs").fetchone()[0])
        history = int(db.execute("SELECT COUNT(*) FROM history").fetchone()[0])
    return Seal(head.height, head.hash, head.state_root, digest.digest(), txs, history)


def _tag(seal: Seal, key: bytes) -> bytes:
    return hmac.new(key, _DOMAIN + seal.encoded(), hashlib.sha256).digest()


def seal_store(store: Store, key: bytes) -> Seal:
    """Record the seal of `store` at its head (after a commit, writers kept out)."""
    seal = sealed_state(store)
    store.set_meta(_META, encode([seal.encoded(), _tag(seal, key)]))
    return seal


def read_seal(store: Store, key: bytes) -> Seal | None:
    """The recorded seal; None when there is none. Raises `ChainError` if it is forged."""
    raw = store.meta(_META)
    if raw is None:
        return None
    try:
        body, tag = decode(raw)
        fields = decode(body)
        seal = Seal(*fields)
    except (EncodingError, TypeError, ValueError):
        raise _refused(store, "its seal is malformed") from None
    if not isinstance(tag, bytes) or not hmac.compare_digest(tag, _tag(seal, key)):
        raise _refused(store, "its seal does not verify under this data directory's seal key")
    return seal


def check_sealed(store: Store, seal: Seal) -> None:
    """Check `store` against its (authentic) `seal` and its newest blocks; raises `ChainError`."""
    head = store.head()
    if head is None or (head.height, head.hash, head.state_root) != (
        seal.height,
        seal.head_hash,
        seal.state_root,
    ):
        raise _refused(store, "its head block is not the one it was sealed at")
    now = sealed_state(store)
    if now.state_digest != seal.state_digest:
        raise _refused(store, "its world state differs from the state its chain produced")
    if (now.tx_rows, now.history_rows) != (seal.tx_rows, seal.history_rows):
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
        row = store._db.execute(
            "SELECT 1 FROM history WHERE key=? AND height=? LIMIT 1", (key, height)
        ).fetchone()
    return row is not None


def _refused(store: Store, what: str) -> ChainError:
    return ChainError(
        f"the ledger database {store.path} does not match its chain: {what}. It may have "
        "been edited outside sharechain; nothing was read from it. Run `sharechain chain "
        "verify` to see where it breaks, then `sharechain node repair --data-dir DIR` to move "
        "it aside and re-sync from the peers (or restore it from a backup)",
        None,
    )
