"""The ledger's orchestrator: execute, validate and commit blocks.

`execute_block` is the state transition: it runs each transaction of a block
through the validation pipeline (encoding, known and active sender, current
key, signature, replay, contract) and returns the validation results and state
writes. The orderer uses it to build a block (`Ledger.build_block`); every
peer uses it again to check a block it receives (`Ledger.validate_block`),
which must reproduce the block's results and `state_delta_hash` exactly.
`verify_chain` replays the whole chain from genesis into a fresh store.
"""

from __future__ import annotations

import gc
import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sharechain.codec import encode
from sharechain.crypto.merkle import merkle_root
from sharechain.crypto.signing import SigningKey, key_id, verify, verify_many
from sharechain.errors import ChainError, ConfigError, EncodingError, InvalidSignatureError
from sharechain.ledger import validation as v
from sharechain.ledger.blocks import (
    BLOCK_DOMAIN,
    GENESIS_PREV_HASH,
    VALID,
    Block,
    BlockHeader,
    TxResult,
    delta_hash,
    encode_block,
    make_block,
    sign_header,
)
from sharechain.ledger.contract import BlockContext, ContractRegistry, Reject
from sharechain.ledger.genesis import GENESIS_TYPE, apply_genesis
from sharechain.ledger.identities import Organisation, org_from_value, org_key
from sharechain.ledger.state import BlockState, RecentValues, TxState
from sharechain.ledger.store import Head, Store
from sharechain.ledger.transactions import SignedTransaction, decode_transaction

__all__ = [
    "Execution",
    "Ledger",
    "VerifyReport",
    "execute_block",
    "next_state_root",
    "verify_chain",
]


@dataclass(frozen=True, slots=True)
class Execution:
    """The outcome of running a block's transactions against state."""

    results: tuple[TxResult, ...]
    """Validation result per transaction."""
    writes: dict[str, bytes | None]
    """Encoded state writes (None deletes)."""
    history: list[tuple[str, int, bytes]]
    """History-index rows: (key, tx index, tx id)."""
    tx_rows: list[tuple[bytes, int, str, str, str]]
    """Transaction-index rows: (id, index, type, sender, code)."""
    delta_hash: bytes
    """`state_delta_hash` of these results and writes."""
    parsed: tuple[SignedTransaction | None, ...]
    """Decoded transactions (None where the envelope did not decode)."""
    after: dict[str, Any] = field(default_factory=dict)
    """Every key the block read or wrote, decoded, as of its end (None: absent);
    the ledger keeps them for the next block (`RecentValues`)."""


def next_state_root(prev_root: bytes, state_delta_hash: bytes) -> bytes:
    """The running state root: `SHA-256(prev_root || state_delta_hash)`."""
    return hashlib.sha256(prev_root + state_delta_hash).digest()


def _parse(raw: bytes, tx_id: bytes | None = None) -> SignedTransaction | None:
    try:
        return decode_transaction(raw, tx_id=tx_id)
    except EncodingError:
        return None


Presigned = tuple[bytes, bool] | None
"""A signature checked ahead of execution: (public key used, verified?), or None."""


def presign(state: BlockState, txs: Sequence[SignedTransaction | None]) -> list[Presigned]:
    """Verify, in parallel over all cores, each signature made with the sender's
    key as of block start.

    The rare transaction signed with a key rotated in this very block (or by an
    organisation admitted in it) is left as None and checked on its own during
    execution. Done before execution: worker threads verifying while this
    thread runs contracts would fight it for the GIL between C calls.
    """
    keys: dict[str, tuple[bytes, bytes] | None] = {}  # sender -> (key, key id)
    checks: list[tuple[bytes, bytes, bytes]] = []
    where: list[int] = []
    for i, stx in enumerate(txs):
        if stx is None:
            continue
        sender = stx.tx.sender
        if sender not in keys:
            value = state.get(org_key(sender))
            public = None if value is None else org_from_value(value).sign_key
            keys[sender] = None if public is None else (public, key_id(public))
        known = keys[sender]
        if known is not None and known[1] == stx.key_id:
            where.append(i)
            checks.append((known[0], stx.signature, stx.signed_message))
    out: list[Presigned] = [None] * len(txs)
    for i, check, ok in zip(where, checks, verify_many(checks), strict=True):
        out[i] = (check[0], ok)
    return out


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a block executes or commits.

    A block allocates a few hundred thousand containers that live until it
    commits; the collector would run hundreds of times meanwhile and walk
    them again each time (about a tenth of the CPU per transaction).
    Reference counting still frees what the block drops; any cycle waits for
    the collector, which resumes afterwards (and stays off if it was off).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def execute_block(
    store: Store,
    registry: ContractRegistry,
    raw_txs: Sequence[bytes],
    ctx: BlockContext,
    parsed: Sequence[SignedTransaction | None] | None = None,
    presigned: Sequence[Presigned] | None = None,
    recent: dict[str, Any] | None = None,
) -> Execution:
    """Run the validation pipeline and the contracts over `raw_txs`.

    `presigned` carries signature checks already done (see `presign`); a
    check made with a key that is no longer the sender's is done again.
    `recent` holds decoded values of the store as it is now (`RecentValues`).
    """
    with _collector_paused():
        return _execute(store, registry, raw_txs, ctx, parsed, presigned, recent)


def _execute(
    store: Store,
    registry: ContractRegistry,
    raw_txs: Sequence[bytes],
    ctx: BlockContext,
    parsed: Sequence[SignedTransaction | None] | None,
    presigned: Sequence[Presigned] | None,
    recent: dict[str, Any] | None,
) -> Execution:
    txs = list(parsed) if parsed is not None else [_parse(r) for r in raw_txs]
    state = BlockState(store, recent)

    if ctx.height == 0:
        return _execute_genesis(state, raw_txs, txs)

    sigs = list(presigned) if presigned is not None else presign(state, txs)
    known = store.known_txs([s.id for s in txs if s is not None])

    results: list[TxResult] = []
    history: list[tuple[str, int, bytes]] = []
    tx_rows: list[tuple[bytes, int, str, str, str]] = []
    seen: set[bytes] = set()
    handlers = registry.handlers
    unindexed = registry.unindexed
    orgs: _Senders = {}
    for i, stx in enumerate(txs):
        if stx is None:
            result = TxResult(v.BAD_ENCODING, v.CODES[v.BAD_ENCODING])
            tx_rows.append((hashlib.sha256(raw_txs[i]).digest(), i, "", "", result.code))
            results.append(result)
            continue
        result = _check_and_apply(
            state,
            handlers,
            orgs,
            stx,
            BlockContext(ctx.height, ctx.timestamp, ctx.orderer, i),
            sigs[i],
            stx.id in known or stx.id in seen,
            history,
            unindexed,
        )
        seen.add(stx.id)
        results.append(result)
        tx_rows.append((stx.id, i, stx.tx.type, stx.tx.sender, result.code))

    writes = state.encoded_writes()
    return Execution(
        tuple(results),
        writes,
        history,
        tx_rows,
        delta_hash(results, writes),
        tuple(txs),
        state.after(),
    )


_Sender = tuple[Organisation, bytes]
"""A sender's record and the id of its current key."""


_Senders = dict[str, tuple[str, _Sender | None]]
"""Senders seen in a block: sender -> (its state key, its record or None)."""


def _sender(state: BlockState, orgs: _Senders, sender: str) -> _Sender | None:
    # Organisation records change rarely; re-read one only after a transaction
    # of this block wrote it (key rotation, removal).
    seen = orgs.get(sender)
    if seen is None or seen[0] in state.writes:
        key = org_key(sender) if seen is None else seen[0]
        value = state.get(key)
        org = None if value is None else org_from_value(value)
        seen = orgs[sender] = (key, None if org is None else (org, org.sign_key_id))
    return seen[1]


def _admit(
    state: BlockState,
    orgs: _Senders,
    stx: SignedTransaction,
    presig: Presigned,
    replayed: bool,
) -> TxResult | None:
    """The ledger's own checks, before any contract runs; None when all pass."""
    found = _sender(state, orgs, stx.tx.sender)
    if found is None:
        return TxResult(v.UNKNOWN_SENDER, f"no organisation {stx.tx.sender!r} on the chain")
    org, current_key_id = found
    if not org.active:
        return TxResult(v.SENDER_REMOVED, f"{org.id} was removed from the consortium")
    if stx.key_id != current_key_id:
        return TxResult(
            v.STALE_KEY, f"signed with key {stx.key_id.hex()[:16]}, not {org.id}'s current key"
        )
    if presig is not None and presig[0] == org.sign_key:
        sig_ok = presig[1]
    else:
        try:
            verify(org.sign_key, stx.signature, b"", stx.signed_message)
            sig_ok = True
        except InvalidSignatureError:
            sig_ok = False
    if not sig_ok:
        return TxResult(v.BAD_SIGNATURE, v.CODES[v.BAD_SIGNATURE])
    if replayed:
        return TxResult(v.REPLAY, f"transaction {stx.id.hex()} is already on the chain")
    return None


def _check_and_apply(
    state: BlockState,
    handlers: Any,
    orgs: _Senders,
    stx: SignedTransaction,
    ctx: BlockContext,
    presig: Presigned,
    replayed: bool,
    history: list[tuple[str, int, bytes]],
    unindexed: tuple[str, ...],
) -> TxResult:
    """Admit and run one transaction; appends its history rows, less the `unindexed` keys."""
    refused = _admit(state, orgs, stx, presig, replayed)
    handler = handlers.get(stx.tx.type)
    if refused is None and (handler is None or stx.tx.type == GENESIS_TYPE):
        refused = TxResult(v.UNKNOWN_TYPE, f"no contract handles transaction type {stx.tx.type!r}")
    if refused is not None:
        # No contract ran, so nothing touched a key; file the refusal under the
        # sender it claims to be, so the organisation's audit trail shows it.
        keys: Iterable[str] = (org_key(stx.tx.sender),)
    else:
        tx_state = TxState(state)
        try:
            handler(tx_state, stx, ctx)
        except Reject as rej:
            keys, refused = dict.fromkeys(tx_state.touched), TxResult(rej.code, rej.reason)
        except (KeyError, TypeError, ValueError, EncodingError) as exc:
            keys = (org_key(stx.tx.sender),)
            refused = TxResult(v.BAD_PAYLOAD, f"{type(exc).__name__}: {exc}")
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            # Anything else a contract raises, including BaseException subclasses
            # of native extensions (a CEL evaluator's panic), refuses this
            # transaction only: the block, the builder and the node go on.
            keys = (org_key(stx.tx.sender),)
            refused = TxResult(v.CONTRACT_ERROR, f"{type(exc).__name__}: {str(exc)[:200]}")
        else:
            keys = tx_state.commit()
    index, tx_id = ctx.index, stx.id
    history.extend([(k, index, tx_id) for k in keys if not k.startswith(unindexed)])
    return VALID if refused is None else refused


def _execute_genesis(
    state: BlockState, raw_txs: Sequence[bytes], txs: Sequence[SignedTransaction | None]
) -> Execution:
    if len(txs) != 1 or txs[0] is None or txs[0].tx.type != GENESIS_TYPE:
        raise ChainError("the genesis block must hold exactly one genesis transaction", 0)
    stx = txs[0]
    tx_state = TxState(state)
    apply_genesis(tx_state, stx.tx.payload)
    keys = tx_state.commit()
    results = (VALID,)
    writes = state.encoded_writes()
    return Execution(
        results,
        writes,
        [(k, 0, stx.id) for k in keys],
        [(stx.id, 0, GENESIS_TYPE, stx.tx.sender, v.VALID)],
        delta_hash(results, writes),
        (stx,),
    )


class Ledger:
    """A peer's chain: its store and the contracts it runs."""

    def __init__(self, store: Store, registry: ContractRegistry) -> None:
        self.store = store
        self.registry = registry
        self._recent = RecentValues()

    @property
    def head(self) -> Head | None:
        return self.store.head()

    @property
    def height(self) -> int:
        head = self.store.head()
        return -1 if head is None else head.height

    def organisation(self, org: str) -> Organisation | None:
        value = BlockState(self.store).get(org_key(org))
        return None if value is None else org_from_value(value)

    def build_block(
        self, raw_txs: Sequence[bytes], *, orderer: str, key: SigningKey, timestamp: int
    ) -> tuple[Block, Execution]:
        """Order `raw_txs` into the next block, signed by `orderer`."""
        head = self.store.head()
        if head is None:
            raise ChainError("the chain has no genesis block; run `sharechain init` first")
        self.check_orderer_key(orderer, key)
        ts = max(timestamp, head.timestamp)
        ex = execute_block(
            self.store,
            self.registry,
            raw_txs,
            BlockContext(head.height + 1, ts, orderer),
            recent=self._recent.at(head.height),
        )
        ids = [hashlib.sha256(r).digest() for r in raw_txs]
        header = BlockHeader(
            head.height + 1, head.hash, merkle_root(ids), ex.delta_hash, ts, orderer
        )
        return make_block(header, sign_header(header, key), raw_txs, ex.results), ex

    def check_orderer_key(self, orderer: str, key: SigningKey) -> None:
        """Refuse to build with a key that is not `orderer`'s current one on the chain.

        Peers check a block's signature against the orderer's key as of the
        block's parent; a block signed otherwise would be committed here and
        then fail `chain verify` everywhere. Checked before anything is written.
        """
        org = self.organisation(orderer)
        if org is None or not org.active:
            raise ConfigError(
                f"no block was built: there is no active organisation {orderer!r} on the "
                "chain to order it; order with an active organisation's key"
            )
        if key.public_key != org.sign_key:
            raise ConfigError(
                f"no block was built: the key given for {orderer} (key id "
                f"{key.key_id.hex()[:16]}) is not {orderer}'s current key on the chain "
                f"({org.sign_key_id.hex()[:16]}), perhaps a key file restored from before "
                f"`org rotate-key`; use {orderer}'s current key file. Nothing was written"
            )

    def validate_block(
        self,
        block: Block,
        presigned: Sequence[Presigned] | None = None,
        parsed: Sequence[SignedTransaction | None] | None = None,
    ) -> Execution:
        """Check `block` extends this chain and re-execute it; raises `ChainError`."""
        h = block.header
        head = self.store.head()
        if head is None:
            if h.height != 0:
                raise ChainError(f"block {h.height} arrived before genesis", h.height)
            return _validate_genesis(self.store, self.registry, block)
        if h.height != head.height + 1:
            raise ChainError(
                f"block {h.height} does not follow height {head.height} (missing or reordered)",
                h.height,
            )
        if h.prev_hash != head.hash:
            raise ChainError(
                f"block {h.height}: prev_hash does not match block {head.height}", h.height
            )
        if h.timestamp < head.timestamp:
            raise ChainError(f"block {h.height}: timestamp goes backwards", h.height)
        orderer = self.organisation(h.orderer)
        if orderer is None or not orderer.active:
            raise ChainError(
                f"block {h.height}: orderer {h.orderer!r} is not an active organisation", h.height
            )
        try:
            verify(orderer.sign_key, block.signature, BLOCK_DOMAIN, h.encoded())
        except InvalidSignatureError:
            raise ChainError(
                f"block {h.height}: orderer signature does not verify", h.height
            ) from None
        if merkle_root(block.tx_ids) != h.tx_root:
            raise ChainError(f"block {h.height}: tx_root does not match its transactions", h.height)
        if parsed is None:  # with the ids the block has computed already
            parsed = [_parse(raw, i) for raw, i in zip(block.txs, block.tx_ids, strict=True)]
        ex = execute_block(
            self.store,
            self.registry,
            block.txs,
            BlockContext(h.height, h.timestamp, h.orderer),
            parsed=parsed,
            presigned=presigned,
            recent=self._recent.at(head.height),
        )
        if ex.results != block.results:
            first = next(
                i for i, (a, b) in enumerate(zip(ex.results, block.results, strict=True)) if a != b
            )
            raise ChainError(
                f"block {h.height}: transaction {first} re-executes to "
                f"{ex.results[first].code!r}, the block says {block.results[first].code!r}",
                h.height,
            )
        if ex.delta_hash != h.state_delta_hash:
            raise ChainError(
                f"block {h.height}: re-execution gives a different state_delta_hash", h.height
            )
        return ex

    def commit(
        self, block: Block, execution: Execution | None = None, data: bytes | None = None
    ) -> Execution:
        """Validate (unless the caller built the block) and commit atomically.

        Returns the execution committed. Validating here rather than calling
        `validate_block` first keeps validation and commit under one pause of the
        garbage collector, which then runs once the execution's objects are freed.
        """
        with _collector_paused():
            return self._commit(block, execution, data)

    def _commit(self, block: Block, execution: Execution | None, data: bytes | None) -> Execution:
        ex = execution if execution is not None else self.validate_block(block)
        head = self.store.head()
        prev_root = GENESIS_PREV_HASH if head is None else head.state_root
        self.store.commit_block(
            height=block.height,
            block_hash=block.hash(),
            state_root=next_state_root(prev_root, block.header.state_delta_hash),
            timestamp=block.header.timestamp,
            data=data if data is not None else encode_block(block),
            txs=ex.tx_rows,
            writes=ex.writes,
            history=ex.history,
        )
        self._recent.advance(block.height, ex.after)
        return ex


def _validate_genesis(store: Store, registry: ContractRegistry, block: Block) -> Execution:
    h = block.header
    if h.prev_hash != GENESIS_PREV_HASH or block.signature != b"" or h.orderer != "":
        raise ChainError("genesis block: prev_hash must be zero and it carries no signature", 0)
    if merkle_root(block.tx_ids) != h.tx_root:
        raise ChainError("genesis block: tx_root does not match its transaction", 0)
    ex = execute_block(store, registry, block.txs, BlockContext(0, h.timestamp, ""))
    if ex.delta_hash != h.state_delta_hash or ex.results != block.results:
        raise ChainError("genesis block: re-execution gives a different state_delta_hash", 0)
    return ex


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


def verify_chain(
    store: Store,
    registry: ContractRegistry,
    *,
    genesis_hash: bytes | None = None,
    progress: Callable[[int, int], None] | None = None,
    scratch: Path | str = ":memory:",
) -> VerifyReport:
    """Re-verify and re-execute every block of `store` into a fresh store.

    Checks hash links, orderer signatures, Merkle roots, every transaction
    signature, every validation code and `state_delta_hash`, the stored
    hashes and state roots, and finally that the stored world state and
    indexes equal the replayed ones (catching a tampered database row).
    """
    # The pipeline module builds on this one; import it here, not at the top.
    from sharechain.ledger.pipeline import commit_stream, start_workers

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
    if head is not None and head.height >= 16:  # long enough to repay starting workers
        start_workers()
    total = -1 if head is None else head.height
    count = 0

    def stored_blocks() -> Iterator[bytes]:
        expected = 0
        for height, data in store.iter_blocks():
            if height != expected:
                raise ChainError(f"block {expected} is missing", expected)
            expected = height + 1
            yield data

    try:
        for block in commit_stream(replay, stored_blocks()):
            height = block.height
            if height == 0 and genesis_hash is not None and block.hash() != genesis_hash:
                raise ChainError("genesis block is not the consortium's genesis", 0)
            if replay.store.block_meta(height) != store.block_meta(height):
                raise ChainError(f"block {height}: stored hash or state root is wrong", height)
            count += len(block.txs)
            if progress is not None:
                progress(height, total)
        if head is not None and replay.height != head.height:
            raise ChainError(f"blocks after {replay.height} are missing", replay.height + 1)
        _compare_indexes(store, replay.store)
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
        True, replay_height(rhead), count, state_root=rhead.state_root if rhead else b""
    )


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


def replay_height(head: Head | None) -> int:
    return -1 if head is None else head.height


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
        ("transaction index", "SELECT id, height, idx, type, sender, code FROM txs ORDER BY id"),
        ("history index", "SELECT key, height, idx, tx_id FROM history ORDER BY key, height, idx"),
    ):
        if _digest_rows(store, query) != _digest_rows(replay, query):
            raise ChainError(f"the stored {name} differs from the replayed chain", None)
