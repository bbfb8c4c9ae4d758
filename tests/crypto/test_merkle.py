"""RFC 6962 Merkle trees: published roots, an independent reference, and proof tampering."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharechain.crypto import merkle
from sharechain.crypto.merkle import (
    EMPTY_ROOT,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    path_from_levels,
    root_from_proof,
    tree_levels,
    verify_inclusion,
)
from sharechain.errors import IntegrityError

VEC = json.loads((Path(__file__).parent.parent / "vectors" / "rfc6962_tree.json").read_text())
LEAVES = [bytes.fromhex(x) for x in VEC["leaves"]]


# -- the reference: RFC 6962 section 2.1, transcribed literally --------------


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return _sha(b"")
    if n == 1:
        return _sha(b"\x00" + d[0])
    k = _k(n)
    return _sha(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


# -- published values ----------------------------------------------------------


def test_empty_root() -> None:
    assert merkle_root([]) == EMPTY_ROOT == bytes.fromhex(VEC["empty_root"])


@pytest.mark.parametrize("size", range(1, 9))
def test_published_roots(size: int) -> None:
    assert merkle_root(LEAVES[:size]).hex() == VEC["roots"][size - 1]
    assert ref_mth(LEAVES[:size]).hex() == VEC["roots"][size - 1]


@pytest.mark.parametrize(
    "case", VEC["inclusion_proofs"], ids=lambda c: f"{c['leaf_index']}-of-{c['tree_size']}"
)
def test_published_inclusion_proofs(case: dict[str, object]) -> None:
    index, size = int(case["leaf_index"]), int(case["tree_size"])  # type: ignore[call-overload]
    path = [bytes.fromhex(p) for p in case["path"]]  # type: ignore[attr-defined]
    assert inclusion_proof(LEAVES[:size], index) == path
    verify_inclusion(LEAVES[index], index, size, path, bytes.fromhex(VEC["roots"][size - 1]))


def test_leaf_and_node_domain_separation() -> None:
    assert leaf_hash(b"x") == _sha(b"\x00x")
    assert node_hash(b"a" * 32, b"b" * 32) == _sha(b"\x01" + b"a" * 32 + b"b" * 32)
    # A leaf can never pass for an interior node with the same bytes.
    assert leaf_hash(b"a" * 32 + b"b" * 32) != node_hash(b"a" * 32, b"b" * 32)


# -- the implementation equals the reference -------------------------------------


def test_matches_reference_for_every_index_up_to_40_leaves() -> None:
    for n in range(1, 41):
        leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
        root = merkle_root(leaves)
        assert root == ref_mth(leaves)
        for m in range(n):
            path = inclusion_proof(leaves, m)
            assert path == ref_path(m, leaves)
            assert root_from_proof(leaves[m], m, n, path) == root


def test_paths_drawn_from_a_tree_built_once_match_the_reference() -> None:
    for n in (*range(1, 41), 1000, 2001):
        leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
        levels = tree_levels(leaves)
        assert levels[-1] == [ref_mth(leaves)]
        for m in range(n) if n <= 40 else (0, 1, n // 2, n - 2, n - 1):
            assert path_from_levels(levels, m) == ref_path(m, leaves)
        with pytest.raises(IndexError):
            path_from_levels(levels, n)
    with pytest.raises(IndexError):
        path_from_levels(tree_levels([]), 0)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=40), min_size=1, max_size=70), st.data())
def test_every_proof_verifies(leaves: list[bytes], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(leaves) - 1))
    root = merkle_root(leaves)
    assert root == ref_mth(leaves)
    path = inclusion_proof(leaves, index)
    verify_inclusion(leaves[index], index, len(leaves), path, root)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(min_size=32, max_size=32), min_size=2, max_size=70, unique=True), st.data()
)
def test_any_altered_proof_fails(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    index = data.draw(st.integers(0, n - 1))
    root = merkle_root(leaves)
    path = inclusion_proof(leaves, index)
    leaf = leaves[index]
    how = data.draw(
        # Not tree_size alone: RFC 9162 binds the size only through the root's shape, so
        # some other sizes walk the same path (index 0 of 5 and of 6 leaves); the
        # verifier must take tree_size from the block (its transaction count).
        st.sampled_from(["leaf", "index", "path-byte", "drop", "extend", "root", "swap"])
    )
    if how == "leaf":
        leaf = leaves[(index + 1) % n]
    elif how == "index":
        index = data.draw(st.integers(0, n - 1).filter(lambda i: i != index))
    elif how == "path-byte":
        i = data.draw(st.integers(0, len(path) - 1))
        b = data.draw(st.integers(0, 31))
        p = bytearray(path[i])
        p[b] ^= data.draw(st.integers(1, 255))
        path = [*path[:i], bytes(p), *path[i + 1 :]]
    elif how == "drop":
        path = path[:-1]
    elif how == "extend":
        path = [*path, bytes(32)]
    elif how == "root":
        root = bytes([root[0] ^ 1]) + root[1:]
    elif how == "swap":
        same = len(path) < 2 or path[0] == path[1]
        path = path[1:] if same else [path[1], path[0], *path[2:]]
    with pytest.raises(IntegrityError):
        verify_inclusion(leaf, index, n, path, root)


@pytest.mark.parametrize(("n", "index", "size"), [(5, 4, 6), (8, 7, 9), (3, 1, 2), (6, 0, 12)])
def test_wrong_tree_size_that_changes_the_path_shape_fails(n: int, index: int, size: int) -> None:
    leaves = [bytes([i]) * 32 for i in range(n)]
    path = inclusion_proof(leaves, index)
    with pytest.raises(IntegrityError):
        verify_inclusion(leaves[index], index, size, path, merkle_root(leaves))


@pytest.mark.parametrize(("index", "size"), [(-1, 4), (4, 4), (0, 0)])
def test_index_outside_tree(index: int, size: int) -> None:
    with pytest.raises(IntegrityError, match="outside"):
        root_from_proof(b"x", index, size, [])
    if size:
        with pytest.raises(IndexError):
            inclusion_proof([b"x"] * size, index)


def test_path_element_of_wrong_length() -> None:
    leaves = [b"a", b"b"]
    path = inclusion_proof(leaves, 0)
    with pytest.raises(IntegrityError, match="32 bytes"):
        verify_inclusion(b"a", 0, 2, [path[0][:31]], merkle_root(leaves))


def test_the_ledger_and_the_data_plane_share_one_tree() -> None:
    from sharechain.crypto import segment_tree

    digests = [hashlib.sha256(bytes([i])).digest() for i in range(5)]
    assert segment_tree.merkle_root(digests) == merkle_root(digests)
    builder = segment_tree.TreeBuilder()
    for d in digests:
        builder.push(d)
    assert builder.root() == merkle_root(digests)


# -- the C path (`_sha256x.merkle_root`) against the reference -------------------

_C = pytest.importorskip("sharechain.crypto._sha256x")
needs_sha = pytest.mark.skipif(not _C.ACCELERATED, reason="the CPU has no SHA instructions")


@needs_sha
@given(st.lists(st.binary(min_size=0, max_size=200), min_size=1, max_size=300))
@settings(max_examples=150)
def test_c_root_equals_the_reference(leaves: list[bytes]) -> None:
    assert _C.merkle_root(leaves) == ref_mth(leaves) == merkle_root(tuple(leaves))


@needs_sha
def test_c_root_at_block_boundaries_and_large_trees() -> None:
    # Leaf data lengths around SHA-256's 55/56/64-byte padding edges, odd and even
    # levels all the way up, and a block-sized tree.
    edges = [b"\xab" * n for n in (0, 1, 54, 55, 56, 57, 63, 64, 65, 119, 120, 128)]
    for size in (1, 2, 3, 5, 12, 13, 31, 33, 2_000, 2_001):
        leaves = [edges[i % len(edges)] + i.to_bytes(4, "big") for i in range(size)]
        assert _C.merkle_root(leaves) == ref_mth(leaves), size


@needs_sha
def test_bytes_like_leaves_take_the_python_path_with_the_same_root() -> None:
    leaves = [bytes([i]) * 40 for i in range(9)]
    mixed: list[bytes] = [*leaves[:4], bytearray(leaves[4]), *leaves[5:]]  # type: ignore[list-item]
    with pytest.raises(TypeError, match="leaf 4 is bytearray, not bytes"):
        _C.merkle_root(mixed)
    assert merkle_root(mixed) == merkle_root(leaves) == ref_mth(leaves)
    with pytest.raises(ValueError, match="no leaves"):
        _C.merkle_root([])


def test_a_list_another_thread_empties_meanwhile_is_hashed_as_it_was() -> None:
    """The C root hashes without the interpreter lock; it used to read the leaves through
    the list it was given, which another thread could empty meanwhile (the leaves freed
    under it: a wrong root, or a crash). It hashes a tuple of its own now."""
    if merkle._C_ROOT is None:
        pytest.skip("no SHA instructions here: the Python root reads the list under the lock")
    leaves = [os.urandom(2048) for _ in range(4096)]
    expected = merkle._python_root(leaves)
    for _ in range(20):
        shared = list(leaves)
        start = threading.Event()

        def empty(target: list[bytes] = shared, start: threading.Event = start) -> None:
            start.wait()
            target.clear()
            target.extend(os.urandom(2048) for _ in range(64))  # reuse the freed memory

        thread = threading.Thread(target=empty)
        thread.start()
        start.set()
        try:
            got = merkle._C_ROOT(shared)
        except ValueError:  # emptied before the call began: no leaves
            got = None
        finally:
            thread.join()
        assert got in (expected, merkle._python_root(shared), None)
