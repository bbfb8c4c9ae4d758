"""The JSON Lines export: one block a line, enough to re-check the chain elsewhere.

The ledger's own encoding (canonical CBOR) is what is hashed and signed; the
export is a view of it for other programs. Each line carries the exact bytes
that were hashed or signed (the header's CBOR, every transaction envelope) in
hex, the decoded fields for convenience, and the block's state writes, which
the store does not keep per block: exporting therefore replays the chain into
a scratch store (the replay of `verify_ledger`, checking every block) to recover them.
With the writes an independent program can recompute `state_delta_hash`, the
running state root, and follow key rotations to check every signature.

`docs/format.md` documents every field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sharechain.errors import ChainError, EncodingError
from sharechain.ledger.blocks import Block, BlockHeader
from sharechain.ledger.chain import Ledger
from sharechain.ledger.contract import ContractRegistry
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import decode_transaction
from sharechain.ledger.verify import BlockSource, replay_chain

__all__ = ["EXPORT_VERSION", "block_record", "export_records", "header_json"]

EXPORT_VERSION = 1
"""Version of the export line format (field `v` of every line)."""


def header_json(header: BlockHeader) -> dict[str, Any]:
    """A block header as JSON: byte strings in lowercase hex, integers as numbers."""
    return {
        "height": header.height,
        "prev_hash": header.prev_hash.hex(),
        "tx_root": header.tx_root.hex(),
        "state_delta_hash": header.state_delta_hash.hex(),
        "timestamp": header.timestamp,
        "orderer": header.orderer,
    }


def _tx_json(raw: bytes, tx_id: bytes, code: str, reason: str) -> dict[str, Any]:
    try:
        stx = decode_transaction(raw)
        type_, sender, key = stx.tx.type, stx.tx.sender, stx.key_id.hex()
    except EncodingError:
        # Kept in the block with code `bad_encoding`; nothing to decode.
        type_, sender, key = None, None, None
    return {
        "id": tx_id.hex(),
        "envelope": raw.hex(),
        "type": type_,
        "sender": sender,
        "key_id": key,
        "code": code,
        "reason": reason,
    }


def _hex_or_none(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def block_record(
    block: Block, writes: Mapping[str, bytes | None], state_root: bytes
) -> dict[str, Any]:
    """One export line for `block`, given its state writes and the running state root after it."""
    return {
        "v": EXPORT_VERSION,
        "height": block.height,
        "hash": block.hash().hex(),
        "header": header_json(block.header),
        "header_cbor": block.header.encoded().hex(),
        "signature": block.signature.hex(),
        "txs": [
            _tx_json(raw, tx_id, r.code, r.reason)
            for raw, tx_id, r in zip(block.txs, block.tx_ids, block.results, strict=True)
        ],
        "writes": [[k, _hex_or_none(writes[k])] for k in sorted(writes)],
        "state_root": state_root.hex(),
    }


def export_records(
    store: BlockSource,
    registry: ContractRegistry,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield one export record per block of `store`, in height order.

    Replays the chain into a scratch in-memory store (`replay_chain`, the
    replay `verify_ledger` makes) to recover each block's writes; raises
    `ChainError` (with the height) at the first block that does not verify,
    so a broken chain is never exported as if it were sound.
    """
    head = store.head()
    total = -1 if head is None else head.height
    replay = Ledger(Store(":memory:", durable=False), registry)
    try:
        for done in replay_chain(store, replay):
            yield block_record(done.block, done.writes, done.state_root)
            if progress is not None:
                progress(done.block.height, total)
    except EncodingError as exc:
        bad = replay.height + 1
        raise ChainError(f"block {bad} does not decode: {exc}", bad) from None
    finally:
        replay.store.close()
