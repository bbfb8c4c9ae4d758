"""Merkle trees and inclusion proofs of the ledger (RFC 6962 / RFC 9162).

A block's `tx_root` is the Merkle Tree Hash of its transaction ids in block
order, and an inclusion proof is its RFC 9162 audit path, so any standard
verifier can check that a transaction (an approval, a key release, a read
receipt) is in a block. The tree itself is `sharechain.crypto.merkle`, shared
with the data plane's segment roots; this module is its home for the ledger.
"""

from sharechain.crypto.merkle import (
    EMPTY_ROOT,
    Hash,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    root_from_proof,
    verify_inclusion,
)

__all__ = [
    "EMPTY_ROOT",
    "Hash",
    "inclusion_proof",
    "leaf_hash",
    "merkle_root",
    "node_hash",
    "root_from_proof",
    "verify_inclusion",
]
