"""The Merkle tree over a sealed stream's segments (RFC 6962 / RFC 9162 section 2.1).

A sealed stream's segment root commits to the SHA-256 of every ciphertext segment
(tag included) in order, so one segment can be proved to belong to a registered
payload with an audit path of ``log2(segments)`` digests, without the rest of the
stream and without the key. The tree is the ledger's (`sharechain.crypto.merkle`):
leaves ``SHA-256(0x00 || segment digest)``, interior nodes
``SHA-256(0x01 || left || right)``; `TreeBuilder` adds leaves as sealing produces them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sharechain.crypto import merkle
from sharechain.crypto.merkle import EMPTY_ROOT, leaf_hash, node_hash
from sharechain.errors import IntegrityError

__all__ = ["Digest", "TreeBuilder", "inclusion_proof", "merkle_root", "verify_inclusion"]

Digest = bytes
"""A 32-byte SHA-256 digest."""


class TreeBuilder:
    """Builds an RFC 6962 root leaf by leaf, keeping only O(log n) perfect subtrees."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []

    def push(self, segment_digest: bytes) -> None:
        size, node = 1, leaf_hash(segment_digest)
        while self._stack and self._stack[-1][0] == size:
            left_size, left = self._stack.pop()
            size, node = left_size + size, node_hash(left, node)
        self._stack.append((size, node))

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        # The RFC 6962 tree splits at the largest power of two: folding the perfect
        # subtrees from the right reproduces exactly that shape.
        node = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            node = node_hash(left, node)
        return node


def merkle_root(segment_digests: Sequence[Digest]) -> Digest:
    """RFC 6962 root over the given segment digests (SHA-256 of each ciphertext segment)."""
    return merkle.merkle_root(segment_digests)


def inclusion_proof(segment_digests: Sequence[Digest], index: int) -> tuple[Digest, ...]:
    """The RFC 9162 audit path of segment ``index``, nearest sibling first."""
    if not 0 <= index < len(segment_digests):
        raise IntegrityError(f"segment {index} is not in a stream of {len(segment_digests)}")
    return tuple(merkle.inclusion_proof(segment_digests, index))


def verify_inclusion(
    segment: bytes, index: int, count: int, proof: Sequence[Digest], root: Digest
) -> None:
    """Check that ciphertext ``segment`` is segment ``index`` of ``count`` under ``root``.

    Follows RFC 9162 section 2.1.3.2; raises `IntegrityError` when the proof fails.
    """
    if not 0 <= index < count:
        raise IntegrityError(f"segment {index} cannot be in a stream of {count} segments")
    try:
        got = merkle.root_from_proof(hashlib.sha256(segment).digest(), index, count, proof)
    except IntegrityError as exc:
        raise IntegrityError(f"inclusion proof of segment {index}: {exc}") from None
    if got != root:
        raise IntegrityError(f"segment {index} does not match the segment root")
