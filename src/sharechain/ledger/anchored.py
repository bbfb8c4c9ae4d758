"""Anchored proofs: a transaction of chain A was on A by the time of a block of chain B.

Consortium B follows consortium A (`sharechain.contracts.anchors`) and records
A's quorum checkpoints in its own chain. Two proof bundles then make one
proof a verifier checks offline:

- `bundle_a`: a proof bundle of A (the subject: any transaction of A, e.g. a
  dataset version) under a checkpoint `C` of A;
- `anchor_b`: a proof bundle of B whose subject is the `anchor.record`
  transaction that put `C` into B's chain.

Each bundle verifies on its own (docs/proofs.md section 4), `C` (origin, size,
root: the signed text, not the signature lines) must be the checkpoint B
recorded, and then B's block time bounds when the transaction was in A's
history: the root fixes every block it covers, and nobody could write it
before those blocks existed. That argument needs the recorded text only, not
B's acceptance of the record (its code, which `anchor_b` proves too): A's
quorum signatures come from `bundle_a`.

This module also builds the payloads of the `anchor.*` transactions from A's
store (the contract refuses anything they get wrong).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sharechain.crypto.signed_note import parse_note
from sharechain.errors import EncodingError, IntegrityError
from sharechain.ledger.blocks import decode_block
from sharechain.ledger.bundles import (
    BundleError,
    bundle_headers,
    bundle_txs,
    evidence_doc,
    membership_ids,
    verify_bundle,
)
from sharechain.ledger.checkpoints import (
    Checkpoint,
    block_hashes,
    history_consistency,
    origin_for,
    parse_checkpoint,
)
from sharechain.ledger.store import Store

__all__ = [
    "ANCHOR_RECORD",
    "AnchorError",
    "Anchored",
    "follow_payload",
    "keys_payload",
    "record_payload",
    "verify_anchored",
]

ANCHOR_RECORD = "anchor.record"
"""As `sharechain.contracts.anchors` names it (the ledger may not import contracts)."""


class AnchorError(IntegrityError):
    """An anchored proof does not show what it claims; the message says why."""


@dataclass(frozen=True, slots=True)
class Anchored:
    """What a verified pair of bundles shows."""

    origin: str
    """Chain A (`sharechain/<genesis hash hex>`)."""
    tx_id: bytes
    """The transaction of A the first bundle proves."""
    height: int
    """Its block height in A."""
    size: int
    """Tree size of A's checkpoint that B recorded."""
    anchor_origin: str
    """Chain B."""
    anchor_tx_id: bytes
    """B's `anchor.record` transaction."""
    anchor_height: int
    """Its block height in B."""
    anchor_time: int
    """B's block time (ms): the transaction was on A by then."""


def _checkpoint(doc: Mapping[str, Any], which: str) -> Checkpoint:
    try:
        return parse_checkpoint(parse_note(doc["checkpoint"]).text)
    except (EncodingError, IntegrityError, KeyError, TypeError) as exc:
        raise AnchorError(f"{which}: no readable checkpoint ({exc})") from None


def verify_anchored(bundle_a: Mapping[str, Any], anchor_b: Mapping[str, Any]) -> Anchored:
    """Raise `AnchorError` (with the reason) unless the pair proves `bundle_a`'s subject
    was on its chain by the time of `anchor_b`'s block."""
    for doc, which in ((bundle_a, "bundle of A"), (anchor_b, "anchor bundle of B")):
        try:
            verify_bundle(doc)
        except BundleError as exc:
            raise AnchorError(f"{which}: {exc}") from None
    cp_a, cp_b = _checkpoint(bundle_a, "bundle of A"), _checkpoint(anchor_b, "anchor bundle")
    subject_a = bundle_txs(bundle_a, bundle_headers(bundle_a, cp_a))[0]
    headers_b = bundle_headers(anchor_b, cp_b)
    record = bundle_txs(anchor_b, headers_b)[0]
    if record.stx.tx.type != ANCHOR_RECORD:
        raise AnchorError(
            f"the anchor bundle proves a {record.stx.tx.type} transaction, not an {ANCHOR_RECORD}"
        )
    note = record.stx.tx.payload.get("checkpoint")
    try:
        anchored = parse_checkpoint(parse_note(note if isinstance(note, str) else "").text)
    except (EncodingError, IntegrityError) as exc:
        raise AnchorError(f"the anchor records no readable checkpoint: {exc}") from None
    if anchored.origin != cp_a.origin:
        raise AnchorError(
            f"the anchor records a checkpoint of {anchored.origin}; the bundle is of {cp_a.origin}"
        )
    if (anchored.size, anchored.root) != (cp_a.size, cp_a.root):
        raise AnchorError(
            f"the bundle of A is under a checkpoint of size {cp_a.size}, not the one of size "
            f"{anchored.size} that B recorded; build it under the recorded checkpoint"
        )
    return Anchored(
        origin=cp_a.origin,
        tx_id=subject_a.stx.id,
        height=subject_a.height,
        size=anchored.size,
        anchor_origin=cp_b.origin,
        anchor_tx_id=record.stx.id,
        anchor_height=record.height,
        anchor_time=headers_b[record.height].timestamp,
    )


def _genesis_tx(store: Store) -> bytes:
    return decode_block(store.block_bytes(0) or b"", check_canonical=False).tx_ids[0]


def _json(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def follow_payload(store: Store) -> dict[str, Any]:
    """`anchor.follow` payload: block 0 of this store's chain and its genesis transaction."""
    genesis_tx = _genesis_tx(store)
    return {"evidence": _json(evidence_doc(store, [genesis_tx], block_hashes(store, 1)))}


def keys_payload(store: Store, size: int, after: tuple[int, int]) -> dict[str, Any] | None:
    """`anchor.keys` payload: the membership transactions (rotations, admissions and
    removals by vote) past `after` under the recorded checkpoint of `size`; None when
    there are none."""
    hashes = block_hashes(store, size)
    ids = membership_ids(store, size, after)
    if not ids:
        return None
    return {
        "origin": origin_for(hashes[0]),
        "size": size,
        "evidence": _json(evidence_doc(store, ids, hashes)),
    }


def record_payload(
    store: Store, note: str, previous_size: int, after: tuple[int, int]
) -> dict[str, Any]:
    """`anchor.record` payload for the signed checkpoint `note` of this store's chain:
    the consistency proof from `previous_size` and the membership transactions past
    `after` it covers."""
    cp = parse_checkpoint(parse_note(note).text)
    hashes = block_hashes(store, cp.size)
    payload: dict[str, Any] = {
        "origin": cp.origin,
        "checkpoint": note,
        "proof": history_consistency(hashes, previous_size),
    }
    ids = membership_ids(store, cp.size, after)
    if ids:
        payload["evidence"] = _json(evidence_doc(store, ids, hashes))
    return payload
