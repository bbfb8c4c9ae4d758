"""The ledger's orchestrator: build, validate and commit blocks.

A `Ledger` is a peer's chain: its store and the contracts it runs. The
orderer builds the next block with `build_block` (executing it, since the
header commits to the outcome, and signing it with its current key); every
peer checks a block it receives with `validate_block` (links, time, orderer
signature, the Merkle roots of its transactions and of their results, then
re-execution, which must reproduce the block's results and `state_delta_hash`
exactly) and commits it with `commit`. The
state transition itself is `sharechain.ledger.execution`; verifying a whole
chain is `sharechain.ledger.verify`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from sharechain.crypto.merkle import merkle_root
from sharechain.crypto.signing import SigningKey, verify
from sharechain.errors import ChainError, ConfigError, InvalidSignatureError
from sharechain.ledger.blocks import (
    BLOCK_DOMAIN,
    GENESIS_PREV_HASH,
    Block,
    BlockHeader,
    encode_block,
    make_block,
    results_root,
    sign_header,
)
from sharechain.ledger.blocktime import BlockClock
from sharechain.ledger.contract import BlockContext, ContractRegistry
from sharechain.ledger.execution import (
    Execution,
    Prepared,
    Presigned,
    collector_paused,
    execute_block,
    next_state_root,
    parse_tx,
)
from sharechain.ledger.identities import Organisation, org_from_value, org_key
from sharechain.ledger.state import BlockState, RecentValues
from sharechain.ledger.store import Head, Store
from sharechain.ledger.transactions import SignedTransaction

__all__ = ["Execution", "Ledger", "execute_block", "next_state_root"]


class Ledger:
    """A peer's chain: its store and the contracts it runs."""

    def __init__(
        self, store: Store, registry: ContractRegistry, *, clock: BlockClock | None = None
    ) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        """Bounds the time of blocks received live (None: replaying, no bound)."""
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
            head.height + 1,
            head.hash,
            merkle_root(ids),
            results_root(ids, ex.results),
            ex.delta_hash,
            ts,
            orderer,
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
        roots: tuple[bytes, bytes] | None = None,
        prepared: Prepared | None = None,
    ) -> Execution:
        """Check `block` extends this chain and re-execute it; raises `ChainError`.

        `presigned`, `parsed`, `roots` (the Merkle roots of `block.tx_ids`
        and of its ids and results, `merkle_root` and `results_root`) and
        `prepared` (its first reads of the store, `prepare_after`) are work a
        caller did ahead on this very block (`ledger/pipeline.py`); None:
        done here."""
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
        if self.clock is not None:
            self.clock.check(h)
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
        if roots is None:
            roots = merkle_root(block.tx_ids), results_root(block.tx_ids, block.results)
        if roots[0] != h.tx_root:
            raise ChainError(f"block {h.height}: tx_root does not match its transactions", h.height)
        if roots[1] != h.results_root:
            raise ChainError(f"block {h.height}: results_root does not match its results", h.height)
        if parsed is None:  # with the ids the block has computed already
            parsed = [parse_tx(raw, i) for raw, i in zip(block.txs, block.tx_ids, strict=True)]
        ex = execute_block(
            self.store,
            self.registry,
            block.txs,
            BlockContext(h.height, h.timestamp, h.orderer),
            parsed=parsed,
            presigned=presigned,
            recent=self._recent.at(head.height),
            prepared=prepared,
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
        with collector_paused():
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
    if results_root(block.tx_ids, block.results) != h.results_root:
        raise ChainError("genesis block: results_root does not match its result", 0)
    ex = execute_block(store, registry, block.txs, BlockContext(0, h.timestamp, ""))
    if ex.delta_hash != h.state_delta_hash or ex.results != block.results:
        raise ChainError("genesis block: re-execution gives a different state_delta_hash", 0)
    return ex


def __getattr__(name: str) -> Any:
    # `verify_chain` and `VerifyReport` moved to `sharechain.ledger.verify`,
    # which builds on this module; old imports still find them here.
    if name in ("verify_chain", "VerifyReport"):
        from sharechain.ledger import verify as _verify

        return getattr(_verify, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
