"""Merkle trees and inclusion proofs of RFC 6962 / RFC 9162.

The Merkle Tree Hash (RFC 9162 section 2.1.1) of a list of leaves: a leaf is
`SHA-256(0x00 || data)` and an interior node `SHA-256(0x01 || left || right)`,
the left subtree always holding the largest power of two smaller than the number
of leaves. An inclusion proof is the audit path of section 2.1.3, so any standard
verifier can check it. Two trees use it: a block's `tx_root` over its transaction
ids (`sharechain.ledger.blocks`, proved by `sharechain.ledger.proofs`) and a sealed
stream's segment root over its segments' digests (`sharechain.crypto.segment_tree`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sharechain.errors import IntegrityError

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

Hash = bytes
"""A 32-byte SHA-256 digest."""

EMPTY_ROOT: Hash = hashlib.sha256(b"").digest()
"""The root of the empty tree (RFC 9162: the hash of the empty string)."""

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> Hash:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: Hash, right: Hash) -> Hash:
    return _sha256(b"\x01" + left + right).digest()


def _root_of_hashes(level: list[Hash]) -> Hash:
    # Pairing left to right and promoting an odd last node unchanged yields
    # exactly the RFC 6962 shape (largest power of two on the left).
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def merkle_root(leaves: Sequence[bytes]) -> Hash:
    """The Merkle Tree Hash of `leaves` (each is leaf data, e.g. a tx id)."""
    if not leaves:
        return EMPTY_ROOT
    return _root_of_hashes([leaf_hash(x) for x in leaves])


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[Hash]:
    """The audit path for leaf `index` (RFC 9162 section 2.1.3.1), bottom first."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf index {index} outside a tree of {len(leaves)} leaves")
    level = [leaf_hash(x) for x in leaves]
    path: list[Hash] = []
    i = index
    while len(level) > 1:
        sibling = i ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        nxt = [node_hash(level[j], level[j + 1]) for j in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        i //= 2
    return path


def root_from_proof(leaf: bytes, index: int, tree_size: int, path: Sequence[Hash]) -> Hash:
    """Recompute the root from an audit path (RFC 9162 section 2.1.3.2)."""
    if not 0 <= index < tree_size:
        raise IntegrityError(f"leaf index {index} outside a tree of {tree_size} leaves")
    fn, sn = index, tree_size - 1
    r = leaf_hash(leaf)
    for p in path:
        if len(p) != 32:
            raise IntegrityError("audit path element is not 32 bytes")
        if sn == 0:
            raise IntegrityError("audit path is longer than the tree allows")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise IntegrityError("audit path is shorter than the tree requires")
    return r


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, path: Sequence[Hash], root: Hash
) -> None:
    """Raise `IntegrityError` unless `path` proves `leaf` at `index` under `root`."""
    if root_from_proof(leaf, index, tree_size, path) != root:
        raise IntegrityError("inclusion proof does not lead to the expected root")
