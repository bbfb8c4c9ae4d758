"""Merkle trees and inclusion proofs of RFC 6962 / RFC 9162.

The Merkle Tree Hash (RFC 9162 section 2.1.1) of a list of leaves: a leaf is
`SHA-256(0x00 || data)` and an interior node `SHA-256(0x01 || left || right)`,
the left subtree always holding the largest power of two smaller than the number
of leaves. An inclusion proof is the audit path of section 2.1.3, so any standard
verifier can check it; a consistency proof (section 2.1.4) shows that a tree of
`m` leaves is a prefix of a tree of `n` leaves, so a verifier holding an old root
learns that the new one only appended. Three trees use them: a block's `tx_root`
over its transaction ids (`sharechain.ledger.blocks`, proved by
`sharechain.ledger.proofs`), a sealed stream's segment root over its segments'
digests (`sharechain.crypto.segment_tree`), and the history tree over block
hashes (`sharechain.ledger.checkpoints`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from sharechain.errors import IntegrityError

__all__ = [
    "EMPTY_ROOT",
    "Hash",
    "Subtree",
    "consistency_path",
    "consistency_proof",
    "inclusion_path",
    "inclusion_proof",
    "leaf_hash",
    "merkle_root",
    "node_hash",
    "path_from_levels",
    "root_from_proof",
    "tree_levels",
    "verify_consistency",
    "verify_inclusion",
]

Hash = bytes
"""A 32-byte SHA-256 digest."""

EMPTY_ROOT: Hash = hashlib.sha256(b"").digest()
"""The root of the empty tree (RFC 9162: the hash of the empty string)."""

_sha256 = hashlib.sha256

try:
    from sharechain.crypto import _sha256x

    _C_ROOT = _sha256x.merkle_root if _sha256x.ACCELERATED else None
except ImportError:  # built without a C compiler: the Python path alone
    _C_ROOT = None


def leaf_hash(data: bytes) -> Hash:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: Hash, right: Hash) -> Hash:
    return _sha256(b"\x01" + left + right).digest()


def _root_of_hashes(level: list[Hash]) -> Hash:
    # Pairing left to right and promoting an odd last node unchanged yields
    # exactly the RFC 6962 shape (largest power of two on the left). The
    # hashes are `node_hash` and `leaf_hash` written inline: a block's two
    # trees take four of them per transaction.
    sha256 = _sha256
    while len(level) > 1:
        even = len(level) & ~1
        pairs = zip(level[0:even:2], level[1:even:2], strict=True)
        nxt = [sha256(b"\x01" + a + b).digest() for a, b in pairs]
        if even < len(level):
            nxt.append(level[-1])
        level = nxt
    return level[0]


def merkle_root(leaves: Sequence[bytes]) -> Hash:
    """The Merkle Tree Hash of `leaves` (each is leaf data, e.g. a tx id).

    A list or tuple of `bytes` is hashed by the C extension where the CPU has SHA
    instructions (`_sha256x.merkle_root`, two hashes at a time: 4x faster on a
    block's transaction ids); anything else, or without them, by the Python
    below, which the tests hold it to."""
    if not leaves:
        return EMPTY_ROOT
    if _C_ROOT is not None and type(leaves) in (list, tuple):
        try:
            return _C_ROOT(leaves)
        except TypeError:  # a leaf that is bytes-like but not bytes
            pass
    return _python_root(leaves)


def _python_root(leaves: Sequence[bytes]) -> Hash:
    sha256 = _sha256
    return _root_of_hashes([sha256(b"\x00" + x).digest() for x in leaves])


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[Hash]:
    """The audit path for leaf `index` (RFC 9162 section 2.1.3.1), bottom first."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf index {index} outside a tree of {len(leaves)} leaves")
    return path_from_levels(tree_levels(leaves), index)


def tree_levels(leaves: Sequence[bytes]) -> list[list[Hash]]:
    """Every level of the tree over `leaves`, their hashes first and the root last: built
    once, it gives any leaf's audit path by lookups (`path_from_levels`) where
    `inclusion_proof` hashes the whole tree for each (2.6 ms for 2,000 leaves)."""
    level = [leaf_hash(x) for x in leaves]
    levels = [level]
    while len(level) > 1:
        nxt = [node_hash(level[j], level[j + 1]) for j in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])  # the odd one out goes up as it is
        levels.append(nxt)
        level = nxt
    return levels


def path_from_levels(levels: Sequence[Sequence[Hash]], index: int) -> list[Hash]:
    """The audit path for leaf `index` of the tree `tree_levels` built, bottom first."""
    if not levels or not 0 <= index < len(levels[0]):
        size = len(levels[0]) if levels else 0
        raise IndexError(f"leaf index {index} outside a tree of {size} leaves")
    path: list[Hash] = []
    i = index
    for level in levels[:-1]:
        sibling = i ^ 1
        if sibling < len(level):
            path.append(level[sibling])
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


def _subtree_root(hashes: Sequence[Hash], lo: int, hi: int) -> Hash:
    """MTH of the leaves whose hashes are `hashes[lo:hi]` (hi > lo)."""
    return _root_of_hashes(list(hashes[lo:hi]))


def _largest_split(n: int) -> int:
    """The largest power of two smaller than `n` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[Hash]:
    """The proof that the first `old_size` leaves form a prefix of `leaves`.

    RFC 9162 section 2.1.4.1: `PROOF(m, D[n]) = SUBPROOF(m, D[n], true)`; empty
    when `old_size` is 0 or equals `len(leaves)` (nothing to prove).
    """
    n = len(leaves)
    if not 0 <= old_size <= n:
        raise IndexError(f"old tree size {old_size} outside 0..{n}")
    if old_size in (0, n):
        return []
    hashes = [leaf_hash(x) for x in leaves]
    return consistency_path(n, old_size, lambda lo, hi: _subtree_root(hashes, lo, hi))


Subtree = Callable[[int, int], Hash]
"""The root of the subtree over leaves `lo .. hi - 1` (`subtree(lo, hi)`), for the proof
walks below: from the leaves (`consistency_proof`), or from a tree's stored nodes
(`ledger.checkpoints.HistoryTree`), which answers in O(log n) instead of O(n)."""


def consistency_path(n: int, old_size: int, subtree: Subtree) -> list[Hash]:
    """RFC 9162's consistency proof from `old_size` to `n` leaves (0 < old_size < n),
    each node taken from `subtree`."""
    proof: list[Hash] = []
    # SUBPROOF unrolled: walk down from the whole tree; the nodes are collected
    # top first and the RFC lists them bottom first, hence the reversal.
    lo, hi, m, complete = 0, n, old_size, True
    while m != hi - lo:
        k = _largest_split(hi - lo)
        if m <= k:
            proof.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            proof.append(subtree(lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        proof.append(subtree(lo, hi))
    proof.reverse()
    return proof


def inclusion_path(n: int, index: int, subtree: Subtree) -> list[Hash]:
    """RFC 9162's audit path of leaf `index` in a tree of `n` leaves (0 <= index < n),
    bottom first, each node taken from `subtree` (section 2.1.3.1, unrolled)."""
    path: list[Hash] = []
    lo, hi = 0, n
    while hi - lo > 1:
        k = _largest_split(hi - lo)
        if index < lo + k:
            path.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            path.append(subtree(lo, lo + k))
            lo += k
    path.reverse()
    return path


def verify_consistency(
    old_size: int, new_size: int, old_root: Hash, new_root: Hash, proof: Sequence[Hash]
) -> None:
    """Raise `IntegrityError` unless `proof` links `old_root` (of `old_size` leaves)
    to `new_root` (of `new_size` leaves): RFC 9162 section 2.1.4.2."""
    if not 0 <= old_size <= new_size:
        raise IntegrityError(f"tree size went from {old_size} to {new_size}: a log never shrinks")
    if any(len(p) != 32 for p in proof):
        raise IntegrityError("consistency proof element is not 32 bytes")
    if old_size == 0 or old_size == new_size:
        if proof:
            raise IntegrityError("consistency proof must be empty for these sizes")
        if old_size == 0 and old_root != EMPTY_ROOT:
            raise IntegrityError("the root of an empty tree is SHA-256 of the empty string")
        if old_size == new_size and old_root != new_root:
            raise IntegrityError("two trees of the same size have different roots")
        return
    path = list(proof)
    if not path:
        raise IntegrityError("consistency proof is empty")
    if old_size & (old_size - 1) == 0:  # an exact power of two: its root is a node of both
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise IntegrityError("consistency proof is longer than the trees allow")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise IntegrityError("consistency proof is shorter than the trees require")
    if fr != old_root:
        raise IntegrityError("consistency proof does not lead to the old root")
    if sr != new_root:
        raise IntegrityError("consistency proof does not lead to the new root")
