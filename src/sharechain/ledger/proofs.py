"""Inclusion proofs of transactions, checkable by any RFC 9162 verifier.

A `TxProof` says: transaction `tx_id` is leaf `leaf_index` of a tree of
`tree_size` leaves whose root is `tx_root`, the `tx_root` of the block header
given in full, whose hash is `header_hash`. A verifier recomputes the root
from the audit path and compares it with the header's `tx_root`, then checks
the header hash (and, against a trusted chain of headers, the block itself).
With its `result_path` the proof also shows the transaction's validation
code: leaf `CBOR([tx_id, code, reason])` at the same index of the header's
`results_root`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sharechain.codec import encode
from sharechain.crypto.merkle import inclusion_proof, verify_inclusion
from sharechain.errors import IntegrityError, NotFoundError
from sharechain.ledger.blocks import BlockHeader, TxResult, decode_block, result_leaf
from sharechain.ledger.store import Store

__all__ = ["TxProof", "prove_tx", "verify_tx_proof"]


@dataclass(frozen=True, slots=True)
class TxProof:
    """Evidence that a transaction is in a block of the chain."""

    tx_id: bytes
    """The transaction id (the Merkle leaf data)."""
    height: int
    """Height of the block holding it."""
    leaf_index: int
    """Its position in the block."""
    tree_size: int
    """Number of transactions in the block."""
    audit_path: tuple[bytes, ...]
    """RFC 9162 audit path, bottom first."""
    header: BlockHeader
    """The block header whose `tx_root` the path leads to."""
    code: str
    """The transaction's validation code."""
    reason: str = ""
    """Why it was refused; empty when valid."""
    result_path: tuple[bytes, ...] | None = None
    """RFC 9162 audit path of `CBOR([tx_id, code, reason])` to the header's
    `results_root`, bottom first; None when the proof does not prove the code."""

    @property
    def header_hash(self) -> bytes:
        return self.header.hash()

    def to_json(self) -> dict[str, Any]:
        h = self.header
        return {
            "tx_id": self.tx_id.hex(),
            "height": self.height,
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "audit_path": [p.hex() for p in self.audit_path],
            "tx_root": h.tx_root.hex(),
            "code": self.code,
            "reason": self.reason,
            "result_path": None
            if self.result_path is None
            else [p.hex() for p in self.result_path],
            "header": {
                "height": h.height,
                "prev_hash": h.prev_hash.hex(),
                "tx_root": h.tx_root.hex(),
                "results_root": h.results_root.hex(),
                "state_delta_hash": h.state_delta_hash.hex(),
                "timestamp": h.timestamp,
                "orderer": h.orderer,
            },
            "header_cbor": encode(h.to_map()).hex(),
            "header_hash": self.header_hash.hex(),
        }


def prove_tx(store: Store, tx_id: bytes) -> TxProof:
    """Build the inclusion proof of `tx_id` from the local store."""
    loc = store.tx_location(tx_id)
    if loc is None:
        raise NotFoundError(f"transaction {tx_id.hex()} is not on this chain")
    data = store.block_bytes(loc.height)
    if data is None:
        raise NotFoundError(f"block {loc.height} is missing from the store")
    block = decode_block(data, check_canonical=False)
    path = inclusion_proof(block.tx_ids, loc.index)
    leaves = [result_leaf(t, r) for t, r in zip(block.tx_ids, block.results, strict=True)]
    result = block.results[loc.index]
    return TxProof(
        tx_id,
        loc.height,
        loc.index,
        len(block.tx_ids),
        tuple(path),
        block.header,
        result.code,
        result.reason,
        tuple(inclusion_proof(leaves, loc.index)),
    )


def verify_tx_proof(proof: TxProof, trusted_header_hash: bytes | None = None) -> None:
    """Raise `IntegrityError` unless the proof holds (and matches a trusted header).

    With a `result_path`, the code and reason are proved too.
    """
    verify_inclusion(
        proof.tx_id, proof.leaf_index, proof.tree_size, proof.audit_path, proof.header.tx_root
    )
    if proof.result_path is not None:
        leaf = result_leaf(proof.tx_id, TxResult(proof.code, proof.reason))
        try:
            verify_inclusion(
                leaf,
                proof.leaf_index,
                proof.tree_size,
                proof.result_path,
                proof.header.results_root,
            )
        except IntegrityError as exc:
            raise IntegrityError(
                f"the validation code {proof.code!r} is not the block's result: {exc}"
            ) from None
    if trusted_header_hash is not None and proof.header_hash != trusted_header_hash:
        raise IntegrityError("the proof's block header is not the trusted one")
    if hashlib.sha256(proof.header.encoded()).digest() != proof.header_hash:
        raise IntegrityError("header hash mismatch")
