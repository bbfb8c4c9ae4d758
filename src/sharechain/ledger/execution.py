"""The state transition: run a block's transactions against world state.

`execute_block` takes each transaction through the validation pipeline
(encoding, known and active sender, current key, signature, replay,
validity window, contract) and returns the validation results and the state writes, with
`state_delta_hash` over both. The orderer runs it to build a block, every
peer runs it again to check one (`sharechain.ledger.chain.Ledger`). Signatures
made with the sender's key as of block start are checked ahead, in parallel
(`presign`).
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from sharechain.codec import decode_trusted
from sharechain.crypto.signing import key_id, verify, verify_many
from sharechain.errors import ChainError, EncodingError, InvalidSignatureError
from sharechain.ledger import validation as v
from sharechain.ledger.blocks import VALID, TxResult, delta_hash
from sharechain.ledger.contract import BlockContext, ContractRegistry, Reject
from sharechain.ledger.genesis import GENESIS_TYPE, GOVERNANCE_KEY, apply_genesis
from sharechain.ledger.identities import Organisation, org_from_value, org_key
from sharechain.ledger.state import BlockState, TxState
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import SignedTransaction, decode_transaction

__all__ = [
    "Execution",
    "Prepared",
    "Presigned",
    "Reads",
    "collector_paused",
    "execute_block",
    "next_state_root",
    "parse_tx",
    "presign",
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


@dataclass(frozen=True, slots=True)
class Prepared:
    """A block's reads of the store, done ahead (`prepare_after`): what `execute_block`
    would otherwise read first thing, as of the store with the block before it committed."""

    known: set[bytes]
    """Which of its transaction ids are committed already (replays)."""
    values: dict[str, Any]
    """Decoded committed values (None: absent) of keys its handlers name (`Reads`)."""


def next_state_root(prev_root: bytes, state_delta_hash: bytes) -> bytes:
    """The running state root: `SHA-256(prev_root || state_delta_hash)`."""
    return hashlib.sha256(prev_root + state_delta_hash).digest()


def parse_tx(raw: bytes, tx_id: bytes | None = None) -> SignedTransaction | None:
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


class Reads(Protocol):
    """A handler that names, ahead of running, state keys it will read.

    A block gathers them over all its transactions and loads them in one
    query per few hundred keys, not one query each (for a notary record, the
    record's key: a third of the cost of reading it alone). Only a hint: a
    key named and not read, or read and not named, changes no outcome.
    """

    def reads(self, stx: SignedTransaction) -> Iterable[str]: ...


def _preloaded(
    store: Store,
    handlers: Any,
    txs: Sequence[SignedTransaction | None],
    recent: dict[str, Any] | None,
) -> dict[str, Any]:
    """The committed values (decoded; None: absent) of the keys the block's handlers
    name (`Reads`) and `recent` does not hold, which `BlockState` then reads from there."""
    wanted = _named_reads(handlers, txs)
    keys = [k for k in wanted if k not in recent] if recent else list(wanted)
    return _load(store, keys)


def _load(store: Store, keys: list[str]) -> dict[str, Any]:
    if not keys:
        return {}
    found = store.get_many(keys)
    return {key: None if (raw := found.get(key)) is None else decode_trusted(raw) for key in keys}


def prepare_after(
    store: Store,
    registry: ContractRegistry,
    txs: Sequence[SignedTransaction | None],
    before_ids: Sequence[bytes],
    before_writes: Iterable[str],
) -> Prepared:
    """The reads `execute_block` starts with for a block of `txs`, done while the block
    before it (`before_ids`, writing `before_writes`) commits.

    The store may be read before or after that commit: a transaction of the block
    before counts as known either way, and no key it writes is loaded (the
    ledger's recent values hold it). Every other committed value is the same
    before and after. The block pipeline calls this from its parse-ahead thread
    while the COMMIT waits for the disk."""
    ids = [s.id for s in txs if s is not None]
    known = store.known_txs(ids)
    known.update(set(ids).intersection(before_ids))
    written = set(before_writes)
    keys = [k for k in _named_reads(registry.handlers, txs) if k not in written]
    return Prepared(known, _load(store, keys))


def _named_reads(handlers: Any, txs: Sequence[SignedTransaction | None]) -> dict[str, None]:
    """The keys the handlers of `txs` name ahead of running (`Reads`), in order, once each."""
    readers: dict[str, Any] = {}  # type -> its handler's `reads`, for the types that name keys
    for kind in {stx.tx.type for stx in txs if stx is not None}:
        reads = getattr(handlers.get(kind), "reads", None)
        if reads is not None:
            readers[kind] = reads
    if not readers:  # a block of types that name no keys (the data-sharing workflow)
        return {}
    wanted: dict[str, None] = {}
    for stx in txs:
        if stx is not None:
            reads = readers.get(stx.tx.type)
            if reads is not None:
                for key in reads(stx):
                    wanted[key] = None
    return wanted


@contextmanager
def collector_paused() -> Iterator[None]:
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
    prepared: Prepared | None = None,
) -> Execution:
    """Run the validation pipeline and the contracts over `raw_txs`.

    `presigned` carries signature checks already done (see `presign`); a
    check made with a key that is no longer the sender's is done again.
    `recent` holds decoded values of the store as it is now (`RecentValues`);
    `prepared`, the block's first reads done ahead (`prepare_after`), which it
    takes over.
    """
    with collector_paused():
        return _execute(store, registry, raw_txs, ctx, parsed, presigned, recent, prepared)


def _execute(
    store: Store,
    registry: ContractRegistry,
    raw_txs: Sequence[bytes],
    ctx: BlockContext,
    parsed: Sequence[SignedTransaction | None] | None,
    presigned: Sequence[Presigned] | None,
    recent: dict[str, Any] | None,
    prepared: Prepared | None,
) -> Execution:
    txs = list(parsed) if parsed is not None else [parse_tx(r) for r in raw_txs]
    if ctx.height == 0:
        return _execute_genesis(BlockState(store, recent), raw_txs, txs)
    handlers = registry.handlers
    # The store does not change while the block runs: values loaded now are
    # what each read would find, as `recent`'s are.
    if prepared is None:
        prepared = Prepared(
            store.known_txs([s.id for s in txs if s is not None]),
            _preloaded(store, handlers, txs, recent),
        )
    state = BlockState(store, recent, prepared.values)

    sigs = list(presigned) if presigned is not None else presign(state, txs)
    # Ids already committed, then those of this block's transactions as they run
    # (one set to ask, a copy of the answer read for it).
    seen = set(prepared.known)

    results: list[TxResult] = []
    history: list[tuple[str, int, bytes]] = []
    tx_rows: list[tuple[bytes, int, str, str, str]] = []
    unindexed = registry.unindexed
    orgs: _Senders = {}
    window = _Window(ctx.timestamp, _validity_ms(state.get(GOVERNANCE_KEY)))
    for i, stx in enumerate(txs):
        if stx is None:
            result = TxResult(v.BAD_ENCODING, v.CODES[v.BAD_ENCODING])
            tx_rows.append((hashlib.sha256(raw_txs[i]).digest(), i, "", "", result.code))
            results.append(result)
            continue
        tx_id, tx = stx.id, stx.tx
        result = _check_and_apply(
            state,
            handlers,
            orgs,
            stx,
            _tx_context(ctx, i),
            sigs[i],
            tx_id in seen,
            window,
            history,
            unindexed,
        )
        seen.add(tx_id)
        results.append(result)
        tx_rows.append((tx_id, i, tx.type, tx.sender, result.code))

    writes = state.encoded_writes()
    return Execution(
        tuple(results),
        writes,
        history,
        tx_rows,
        delta_hash(results, writes, in_key_order=True),
        tuple(txs),
        state.after(),
    )


_new = object.__new__
_CTX_HEIGHT, _CTX_TIME, _CTX_ORDERER, _CTX_INDEX = (
    getattr(BlockContext, name).__set__ for name in ("height", "timestamp", "orderer", "index")
)


def _tx_context(block: BlockContext, index: int) -> BlockContext:
    """`BlockContext(block.height, block.timestamp, block.orderer, index)`, its slots
    set directly: the frozen record's `__init__` costs three times as much, per
    transaction."""
    ctx: BlockContext = _new(BlockContext)
    _CTX_HEIGHT(ctx, block.height)
    _CTX_TIME(ctx, block.timestamp)
    _CTX_ORDERER(ctx, block.orderer)
    _CTX_INDEX(ctx, index)
    return ctx


def _validity_ms(governance: Any) -> int:
    """The consortium's transaction validity window (ms) from its governance settings."""
    value = governance.get(v.TX_VALIDITY_SETTING) if isinstance(governance, dict) else None
    # Genesis refuses a malformed setting (`apply_genesis`); one that is absent is the default.
    return value if type(value) is int and value > 0 else v.DEFAULT_TX_VALIDITY_MS


@dataclass(frozen=True, slots=True)
class _Window:
    """When a transaction of this block may have been signed (block time only)."""

    block_time: int
    """The block's timestamp (ms)."""
    validity: int
    """`tx_validity_ms` as of the block's start."""

    def refusal(self, created_at: int) -> TxResult | None:
        age = self.block_time - created_at
        if age > self.validity:
            return TxResult(
                v.TX_EXPIRED,
                f"signed {age} ms before the block's time, more than the consortium's "
                f"{v.TX_VALIDITY_SETTING} of {self.validity} ms; sign it again",
            )
        if -age > v.TX_FUTURE_SKEW_MS:
            return TxResult(
                v.TX_FROM_FUTURE,
                f"dated {-age} ms after the block's time (at most {v.TX_FUTURE_SKEW_MS} ms); "
                "check the sender's clock",
            )
        return None


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
    window: _Window,
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
    return window.refusal(stx.tx.created_at)


def _check_and_apply(
    state: BlockState,
    handlers: Any,
    orgs: _Senders,
    stx: SignedTransaction,
    ctx: BlockContext,
    presig: Presigned,
    replayed: bool,
    window: _Window,
    history: list[tuple[str, int, bytes]],
    unindexed: tuple[str, ...],
) -> TxResult:
    """Admit and run one transaction; appends its history rows, less the `unindexed` keys."""
    refused = _admit(state, orgs, stx, presig, replayed, window)
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
            # `tx_state.commit()`'s keys, made rows directly (no list of them to build
            # and walk again): those written, then the others touched
            tx_state.fold()
            writes = tx_state.writes
            index, tx_id = ctx.index, stx.id
            history += [(k, index, tx_id) for k in writes if not k.startswith(unindexed)]
            history += [
                (k, index, tx_id)
                for k in tx_state.touched
                if k not in writes and not k.startswith(unindexed)
            ]
            return VALID
    index, tx_id = ctx.index, stx.id
    history.extend([(k, index, tx_id) for k in keys if not k.startswith(unindexed)])
    return refused


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
