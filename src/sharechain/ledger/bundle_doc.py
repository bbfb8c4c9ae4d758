"""The proof bundle document: its type and limits, reading a file, making one from a store.

What a bundle holds and how it is verified is `sharechain.ledger.bundles`
(which re-exports the names here). Making one reads the store this node
keeps: the subject and its evidence (the genesis transaction and every valid
membership transaction before the checkpoint), each with its inclusion and
validation-result proofs, and the headers they point into with their paths
in the history tree. Reading a file refuses what is too large or nested too
deep before the JSON parser sees it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sharechain.crypto.merkle import Hash, inclusion_proof
from sharechain.crypto.signed_note import parse_note
from sharechain.errors import IntegrityError, NotFoundError
from sharechain.ledger.blocks import decode_block, result_leaf
from sharechain.ledger.checkpoints import block_hashes, history_inclusion, parse_checkpoint
from sharechain.ledger.roster_replay import MEMBERSHIP_TYPES
from sharechain.ledger.store import Store

__all__ = [
    "BUNDLE_TYPE",
    "MAX_BUNDLE_BYTES",
    "MAX_NESTING",
    "BundleError",
    "build_bundle",
    "evidence_doc",
    "load_bundle",
    "membership_ids",
]

BUNDLE_TYPE = "sharechain/proof-bundle/v1"
MAX_BUNDLE_BYTES = 1 << 20
MAX_NESTING = 8
"""A bundle is four levels deep (object, list, object, audit path); more is refused."""


class BundleError(IntegrityError):
    """A proof bundle is malformed or does not prove what it claims; the message says why."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _tx_entry(store: Store, tx_id: bytes) -> dict[str, Any]:
    loc = store.tx_location(tx_id)
    data = store.block_bytes(loc.height) if loc is not None else None
    if loc is None or data is None:
        raise NotFoundError(f"transaction {tx_id.hex()} is not on this chain")
    block = decode_block(data, check_canonical=False)
    result = block.results[loc.index]
    leaves = [result_leaf(t, r) for t, r in zip(block.tx_ids, block.results, strict=True)]
    return {
        "envelope": _b64(block.txs[loc.index]),
        "height": loc.height,
        "index": loc.index,
        "size": len(block.tx_ids),
        "path": [_b64(p) for p in inclusion_proof(block.tx_ids, loc.index)],
        "code": result.code,
        "reason": result.reason,
        "result_path": [_b64(p) for p in inclusion_proof(leaves, loc.index)],
    }


def build_bundle(
    store: Store,
    tx_id: bytes,
    checkpoint_note: str,
    *,
    lineage: Sequence[bytes] = (),
    about: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The bundle proving `tx_id` under `checkpoint_note` (a quorum checkpoint of this chain).

    `lineage`: earlier transactions the object needs, oldest first (proved alike);
    `about`: what the object is (`"object"`, checked by `sharechain.contracts.bundle_objects`).
    """
    cp = parse_checkpoint(parse_note(checkpoint_note).text)
    hashes = block_hashes(store, cp.size)
    genesis = decode_block(store.block_bytes(0) or b"", check_canonical=False)
    ids = [tx_id, genesis.tx_ids[0], *membership_ids(store, cp.size)]
    doc: dict[str, Any] = {"v": 1, "type": BUNDLE_TYPE, "checkpoint": checkpoint_note}
    doc |= evidence_doc(store, [*ids, *lineage], hashes)
    if lineage:
        doc["lineage"] = doc["txs"][len(ids) :]
        doc["txs"] = doc["txs"][: len(ids)]
    if about is not None:
        doc["object"] = dict(about)
    return doc


def membership_ids(store: Store, size: int, after: tuple[int, int] = (0, 0)) -> list[bytes]:
    """The valid membership transactions (rotations, proposals, votes) past position
    `after` and below height `size`, in chain order: the roster's evidence."""
    found = []
    for e in store.history_prefix("org/", limit=1_000_000):
        if not (after < (e.height, e.index) and e.height < size):
            continue
        loc = store.tx_location(e.tx_id)
        if loc and loc.type in MEMBERSHIP_TYPES and loc.code == "valid":
            found.append((e.height, e.index, e.tx_id))
    return [t for _, _, t in sorted(set(found))]


def evidence_doc(store: Store, tx_ids: Sequence[bytes], hashes: Sequence[Hash]) -> dict[str, Any]:
    """`{"blocks", "txs"}` of a bundle: the transactions `tx_ids` (in this order) with
    their inclusion proofs, under the history tree over `hashes`."""
    txs = [_tx_entry(store, t) for t in tx_ids]
    blocks = []
    for h in sorted({t["height"] for t in txs}):
        if h >= len(hashes):
            raise NotFoundError(f"the checkpoint covers {len(hashes)} blocks, not block {h}")
        header = decode_block(store.block_bytes(h) or b"", check_canonical=False).header
        path = history_inclusion(hashes, h)
        blocks.append({"header": _b64(header.encoded()), "path": [_b64(p) for p in path]})
    return {"blocks": blocks, "txs": txs}


def load_bundle(data: bytes) -> dict[str, Any]:
    """Parse a bundle file, refusing what is not a JSON object of a sane size."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"bundle is larger than {MAX_BUNDLE_BYTES} bytes")
    if _nesting(data) > MAX_NESTING:
        # Checked before parsing: deep nesting would exhaust the parser's recursion
        # limit, which depends on the caller's stack (contracts must be deterministic).
        raise BundleError(f"bundle nests arrays or objects deeper than {MAX_NESTING}")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"bundle is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BundleError("bundle must be a JSON object")
    return doc


def _nesting(data: bytes) -> int:
    """Deepest nesting of JSON arrays and objects in `data` (strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest
