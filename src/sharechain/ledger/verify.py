"""Independent verification of a whole chain: replay every block from genesis.

`verify_ledger` is the one full check: `chain verify`, a node's start and
the tests use it. It re-executes every stored block into a fresh scratch
store (`replay_chain`), checking hash links, orderer signatures, Merkle
roots, every transaction signature, validation code and `state_delta_hash`
and each stored block hash and state root, and then that the stored world
state, transaction index and history index equal the replayed ones, so a
row edited in the SQLite file is caught. A store sealed for the embedded
mode (its seal key beside it) must also carry a seal whose state digest,
recomputed here from every row, is the one it claims (`sharechain.ledger.seal`):
a digest that drifted from its rows is reported. `chain export` walks the same
replay (`replay_chain`) to recover each block's writes, so an export never
passes a block that `verify_ledger` would refuse.

The quick check made whenever a store is opened is `sharechain.ledger.seal`.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sharechain.codec import encode
from sharechain.errors import ChainError, ConfigError, EncodingError
from sharechain.ledger.blocks import Block
from sharechain.ledger.chain import Ledger
from sharechain.ledger.contract import ContractRegistry
from sharechain.ledger.schema import union_query
from sharechain.ledger.seal import read_seal, seal_key, state_digest
from sharechain.ledger.store import Head, Store

__all__ = ["BlockSource", "Replayed", "VerifyReport", "replay_chain", "verify_ledger"]


class BlockSource(Protocol):
    """What a replay reads: a store, or a node's chain read over the API."""

    def head(self) -> Head | None: ...
    def iter_blocks(self, start: int = 0) -> Iterator[tuple[int, bytes]]: ...


@dataclass(frozen=True, slots=True)
class Replayed:
    """One block as the replay committed it."""

    block: Block
    """The block, decoded and verified."""
    writes: Mapping[str, bytes | None]
    """Its state writes, encoded (None deletes); stores do not keep them per block."""
    state_root: bytes
    """The running state root after it."""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of verifying a chain from genesis."""

    ok: bool
    """True when every block verified and the stored state matches the replay."""
    height: int
    """Height of the last block that verified (-1 if none)."""
    transactions: int
    """Number of transactions verified."""
    bad_height: int | None = None
    """First height that failed, if any."""
    reason: str = ""
    """Why it failed."""
    state_root: bytes = b""
    """State root after the last verified block."""


def replay_chain(
    source: BlockSource,
    replay: Ledger,
    *,
    genesis_hash: bytes | None = None,
    stored_meta: Callable[[int], Head | None] | None = None,
) -> Iterator[Replayed]:
    """Validate and commit every block of `source` into `replay` (a fresh ledger), in order.

    Yields each block once committed. Raises `ChainError` naming the height
    (or `EncodingError`) at the first block that is missing, misplaced or
    does not verify; with `stored_meta`, also where the stored hash or state
    root differs from the replay's.
    """
    # The pipeline module builds on the chain module; import it here, not at the top.
    from sharechain.ledger.pipeline import commit_stream, start_workers

    head = source.head()
    if head is not None and head.height >= 16:  # long enough to repay starting workers
        start_workers()

    def stored_blocks() -> Iterator[bytes]:
        expected = 0
        for height, data in source.iter_blocks():
            if height != expected:
                raise ChainError(f"block {expected} is missing", expected)
            expected = height + 1
            yield data

    for block, ex in commit_stream(replay, stored_blocks()):
        height = block.height
        if height == 0 and genesis_hash is not None and block.hash() != genesis_hash:
            raise ChainError("genesis block is not the consortium's genesis", 0)
        meta = replay.store.block_meta(height)
        assert meta is not None  # just committed
        if stored_meta is not None and stored_meta(height) != meta:
            raise ChainError(f"block {height}: stored hash or state root is wrong", height)
        yield Replayed(block, ex.writes, meta.state_root)
    if head is not None and replay.height != head.height:
        raise ChainError(f"blocks after {replay.height} are missing", replay.height + 1)


def verify_ledger(
    store: Store,
    registry: ContractRegistry,
    *,
    genesis_hash: bytes | None = None,
    progress: Callable[[int, int], None] | None = None,
    scratch: Path | str = ":memory:",
) -> VerifyReport:
    """Verify `store` fully: replay every block, then compare every stored row.

    Never raises for a broken chain or a damaged file: the report says
    where and why (`ok` False, `bad_height`, `reason`).
    """
    try:
        # Page-level damage (a bad cell, a NULL in a NOT NULL column) would make
        # rows read back as the wrong types; find it before trusting any row.
        check = store.integrity_check()
        head = store.head()
    except sqlite3.DatabaseError as exc:
        return _damaged(exc, -1, 0)
    if check != "ok":
        return VerifyReport(
            False,
            -1,
            0,
            None,
            f"the database file is damaged (SQLite quick_check: {check.splitlines()[-1]}); "
            "restore it or re-sync from peers",
        )
    replay = Ledger(Store(scratch, durable=False), registry)
    total = -1 if head is None else head.height
    count = 0
    try:
        for done in replay_chain(
            store, replay, genesis_hash=genesis_hash, stored_meta=store.block_meta
        ):
            count += len(done.block.txs)
            if progress is not None:
                progress(done.block.height, total)
        _compare_indexes(store, replay.store)
        _check_seal(store)
    except sqlite3.DatabaseError as exc:
        return _damaged(exc, replay.height, count)
    except EncodingError as exc:
        last = replay.height
        return VerifyReport(
            False, last, count, last + 1, f"block {last + 1} does not decode: {exc}"
        )
    except ChainError as exc:
        last = replay.height
        # A block stored at the wrong place names its own height; the first bad
        # height is the first one that did not verify.
        bad = last + 1 if exc.height is None else min(exc.height, last + 1)
        return VerifyReport(False, last, count, bad, str(exc))
    finally:
        rhead = replay.store.head()
        replay.store.close()
    return VerifyReport(
        True,
        -1 if rhead is None else rhead.height,
        count,
        state_root=rhead.state_root if rhead else b"",
    )


verify_chain = verify_ledger
"""The name `verify_ledger` had before it moved here (kept for existing callers)."""


def _damaged(exc: sqlite3.DatabaseError, last: int, count: int) -> VerifyReport:
    # A damaged database file must give a report, not a traceback: the damage
    # may sit where no block row shows it (the schema, an index, a text column).
    return VerifyReport(
        False,
        last,
        count,
        last + 1,
        f"the database file is damaged ({exc}); restore it or re-sync from peers",
    )


def _digest_rows(store: Store, query: str) -> bytes:
    h = hashlib.sha256()
    with store._lock:  # a consistent read of our own store
        for row in store._db.execute(query):
            h.update(encode(list(row)))
    return h.digest()


def _compare_indexes(store: Store, replay: Store) -> None:
    for name, query in (
        ("world state", "SELECT key, value FROM state ORDER BY key"),
        ("index keys", "SELECT key, value FROM state_idx ORDER BY key"),
        (
            "transaction index",
            union_query("txs", "id, height, idx, type, sender, code", tail="ORDER BY 1"),
        ),
        (
            "history index",
            union_query("history", "key, height, idx, tx_id", tail="ORDER BY 1, 2, 3"),
        ),
    ):
        if _digest_rows(store, query) != _digest_rows(replay, query):
            raise ChainError(f"the stored {name} differs from the replayed chain", None)


def _check_seal(store: Store) -> None:
    """The seal's state digest against one recomputed from the (verified) rows."""
    try:
        key = seal_key(store)
    except ConfigError as exc:  # a damaged key file: report it, do not raise
        raise ChainError(str(exc), None) from None
    if key is None:
        return  # a node's store: never sealed
    seal = read_seal(store, key)  # raises if forged
    head = store.head()
    if seal is None or head is None or seal.height != head.height:
        return  # unsealed, or sealed before a node committed: the next open reseals it
    if state_digest(store, key) != seal.state_digest:
        raise ChainError(
            "the state digest in the store's seal differs from its rows (the seal drifted); "
            "the next open refuses the store: run `sharechain node repair`",
            None,
        )
