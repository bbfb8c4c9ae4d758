"""The JSON Lines export: one block a line, enough to re-check the chain elsewhere.

The ledger's own encoding (canonical CBOR) is what is hashed and signed; the
export is a view of it for other programs. Each line carries the exact bytes
that were hashed or signed (the header's CBOR, every transaction envelope) in
hex, the decoded fields for convenience, and the block's state writes, which
the store does not keep per block: exporting therefore replays the chain into
a scratch store (the replay of `verify_ledger`, checking every block) to recover them.
With the writes an independent program can recompute `state_delta_hash`, the
running state root, and follow key rotations to check every signature.

The last line is the seal (`sharechain.ledger.export_seal`): the founders'
signed genesis and a quorum checkpoint over exactly the exported blocks, so a
file cut short or extended fails. `verify_export` is sharechain's own check of
a file: it replays the blocks, requires every line to be exactly what the
export writes for them, and checks the seal against the rosters it rebuilt.

`docs/format.md` documents every field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sharechain.codec import decode
from sharechain.errors import ChainError, EncodingError
from sharechain.ledger.blocks import (
    Block,
    BlockHeader,
    TxResult,
    decode_header,
    encode_block,
    make_block,
)
from sharechain.ledger.chain import Ledger
from sharechain.ledger.checkpoints import block_hashes, store_roster
from sharechain.ledger.contract import ContractRegistry
from sharechain.ledger.export_seal import founders_roster, verify_seal
from sharechain.ledger.store import Head, Store
from sharechain.ledger.strict_cbor import strict_decode
from sharechain.ledger.transactions import decode_transaction
from sharechain.ledger.verify import BlockSource, replay_chain

__all__ = [
    "EXPORT_VERSION",
    "ExportSummary",
    "Sealer",
    "block_record",
    "export_records",
    "header_json",
    "verify_export",
]

Sealer = Callable[[Store], dict[str, Any]]
"""Makes the seal line, given the replayed store (the chain up to the last exported block)."""

EXPORT_VERSION = 1
"""Version of the export line format (field `v` of every line)."""


def header_json(header: BlockHeader) -> dict[str, Any]:
    """A block header as JSON: byte strings in lowercase hex, integers as numbers."""
    return {
        "height": header.height,
        "prev_hash": header.prev_hash.hex(),
        "tx_root": header.tx_root.hex(),
        "results_root": header.results_root.hex(),
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
    seal: Sealer,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield one export record per block of `store`, in height order, then the seal.

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
        yield seal(replay.store)
    except EncodingError as exc:
        bad = replay.height + 1
        raise ChainError(f"block {bad} does not decode: {exc}", bad) from None
    finally:
        replay.store.close()


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What a verified export holds."""

    blocks: int
    """Number of blocks (heights 0 .. blocks - 1)."""
    head: bytes
    """Hash of the last block."""
    state_root: bytes
    """Running state root after it."""


class _Lines:
    """Export lines read back as stored blocks, for `replay_chain`."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records

    def head(self) -> Head | None:
        # Only its height is read (to size the replay); the replay checks each line.
        return Head(len(self.records) - 1, b"", b"", 0)

    def iter_blocks(self, start: int = 0) -> Iterator[tuple[int, bytes]]:
        for n, rec in enumerate(self.records[start:], start):
            try:
                header = decode_header(decode(bytes.fromhex(rec["header_cbor"])))
                txs = [bytes.fromhex(t["envelope"]) for t in rec["txs"]]
                results = [TxResult(t["code"], t["reason"]) for t in rec["txs"]]
                block = make_block(header, bytes.fromhex(rec["signature"]), txs, results)
            except (KeyError, TypeError, ValueError, EncodingError) as exc:
                raise ChainError(f"line {n + 1} is not an export block line: {exc!r}", n) from None
            yield n, encode_block(block)


def _check_bodies(block: Block, n: int) -> None:
    """Every transaction body the export shows decoded must have one reading
    (`sharechain.ledger.strict_cbor`); a `bad_encoding` one decodes to nothing."""
    for i, (raw, r) in enumerate(zip(block.txs, block.results, strict=True)):
        if r.code == "bad_encoding":
            continue
        try:
            strict_decode(decode_transaction(raw).body)
        except EncodingError as exc:
            raise ChainError(f"line {n + 1}, transaction {i}: body: {exc}", n) from None


def verify_export(lines: Iterable[str], registry: ContractRegistry) -> ExportSummary:
    """Check an export file's lines; raise at the first that is wrong.

    Every block is replayed and verified (signatures, links, roots, state), each
    line must be exactly the record the export writes for its block, and the seal
    must be the founders' genesis and a quorum checkpoint over exactly these blocks.
    Raises `ChainError` (a bad block or line) or `CheckpointError` (a bad seal).
    """
    try:
        records = [json.loads(line) for line in lines if line.strip()]
    except ValueError as exc:
        raise ChainError(f"the export is not JSON Lines: {exc}", 0) from None
    if len(records) < 2 or not all(isinstance(r, dict) for r in records):
        raise ChainError("an export holds the genesis block line and a seal line at least", 0)
    *blocks, seal = records
    replay = Ledger(Store(":memory:", durable=False), registry)
    try:
        for done in replay_chain(_Lines(blocks), replay):
            n = done.block.height
            if block_record(done.block, done.writes, done.state_root) != blocks[n]:
                raise ChainError(f"line {n + 1} differs from what block {n} holds", n)
            _check_bodies(done.block, n)
        head = replay.store.head()
        if head is None or head.height != len(blocks) - 1:
            raise ChainError("the export's blocks do not replay to its last line", replay.height)
        genesis = decode_transaction(bytes.fromhex(blocks[0]["txs"][0]["envelope"])).tx
        founders = founders_roster(genesis.payload)
        verify_seal(seal, block_hashes(replay.store), founders, store_roster(replay.store))
        return ExportSummary(head.height + 1, head.hash, head.state_root)
    except EncodingError as exc:
        bad = replay.height + 1
        raise ChainError(f"block {bad} does not decode: {exc}", bad) from None
    finally:
        replay.store.close()
