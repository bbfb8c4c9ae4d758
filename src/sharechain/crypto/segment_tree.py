"""The Merkle tree over a sealed stream's segments (RFC 6962 / RFC 9162 section 2.1).

A sealed stream's segment root commits to the SHA-256 of every ciphertext segment
(tag included) in order, so one segment can be proved to belong to a registered
payload with an audit path of ``log2(segments)`` digests, without the rest of the
stream and without the key. Leaves are ``SHA-256(0x00 || segment digest)`` and
interior nodes ``SHA-256(0x01 || left || right)``, as for the ledger's transactions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sharechain.errors import IntegrityError

__all__ = ["Digest", "TreeBuilder", "inclusion_proof", "merkle_root", "verify_inclusion"]

Digest = bytes
"""A 32-byte SHA-256 digest."""


def _leaf(segment_digest: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + segment_digest).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class TreeBuilder:
    """Builds an RFC 6962 root leaf by leaf, keeping only O(log n) perfect subtrees."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []

    def push(self, segment_digest: bytes) -> None:
        size, node = 1, _leaf(segment_digest)
        while self._stack and self._stack[-1][0] == size:
            left_size, left = self._stack.pop()
            size, node = left_size + size, _node(left, node)
        self._stack.append((size, node))

    def root(self) -> bytes:
        if not self._stack:
            return hashlib.sha256(b"").digest()
        # The RFC 6962 tree splits at the largest power of two: folding the perfect
        # subtrees from the right reproduces exactly that shape.
        node = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            node = _node(left, node)
        return node


def merkle_root(segment_digests: Sequence[Digest]) -> Digest:
    """RFC 6962 root over the given segment digests (SHA-256 of each ciphertext segment)."""
    builder = TreeBuilder()
    for digest in segment_digests:
        builder.push(digest)
    return builder.root()


def inclusion_proof(segment_digests: Sequence[Digest], index: int) -> tuple[Digest, ...]:
    """The RFC 9162 audit path of segment ``index``, nearest sibling first."""
    if not 0 <= index < len(segment_digests):
        raise IntegrityError(f"segment {index} is not in a stream of {len(segment_digests)}")
    path: list[bytes] = []
    leaves = segment_digests
    while len(leaves) > 1:
        split = 1 << ((len(leaves) - 1).bit_length() - 1)
        if index < split:
            path.append(merkle_root(leaves[split:]))
            leaves = leaves[:split]
        else:
            path.append(merkle_root(leaves[:split]))
            leaves = leaves[split:]
            index -= split
    return tuple(reversed(path))


def verify_inclusion(
    segment: bytes, index: int, count: int, proof: Sequence[Digest], root: Digest
) -> None:
    """Check that ciphertext ``segment`` is segment ``index`` of ``count`` under ``root``.

    Follows RFC 9162 section 2.1.3.2; raises `IntegrityError` when the proof fails.
    """
    if not 0 <= index < count:
        raise IntegrityError(f"segment {index} cannot be in a stream of {count} segments")
    fn, sn = index, count - 1
    node = _leaf(hashlib.sha256(segment).digest())
    for sibling in proof:
        if sn == 0:
            raise IntegrityError(f"inclusion proof of segment {index} is too long")
        if fn & 1 or fn == sn:
            node = _node(sibling, node)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            node = _node(node, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0 or node != root:
        raise IntegrityError(f"segment {index} does not match the segment root")
