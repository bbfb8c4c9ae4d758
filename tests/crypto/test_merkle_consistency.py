"""RFC 9162 consistency proofs: the RFC's recursive definition as the reference,
every (m, n) up to 64 cross-checked, and every way a proof can be wrong refused."""

from __future__ import annotations

import hashlib

import pytest

from sharechain.crypto.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    merkle_root,
    verify_consistency,
)
from sharechain.errors import IntegrityError

N = 64
LEAVES = [hashlib.sha256(i.to_bytes(2, "big")).digest() for i in range(N)]


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return _sha(b"")
    if len(d) == 1:
        return _sha(b"\x00" + d[0])
    k = _k(len(d))
    return _sha(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """RFC 9162 section 2.1.4.1, transcribed literally."""
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


PAIRS = [(m, n) for n in range(1, N + 1) for m in range(1, n + 1)]
ROOTS = [merkle_root(LEAVES[:n]) for n in range(N + 1)]


def test_roots_match_the_reference() -> None:
    assert all(ROOTS[n] == ref_mth(LEAVES[:n]) for n in range(N + 1))


def test_every_proof_up_to_64_is_the_rfc_proof_and_verifies() -> None:
    for m, n in PAIRS:
        proof = consistency_proof(LEAVES[:n], m)
        want = [] if m == n else ref_subproof(m, LEAVES[:n], True)
        assert proof == want, (m, n)
        verify_consistency(m, n, ROOTS[m], ROOTS[n], proof)


def test_the_rfc_example_shapes() -> None:
    # RFC 9162 section 2.1.5: PROOF(3, D[7]) = [c, d, g, l], PROOF(4, D[7]) = [l],
    # PROOF(6, D[7]) = [i, j, k].
    d = LEAVES[:7]
    leaf = [ref_mth([x]) for x in d]
    c, dd = leaf[2], leaf[3]
    g = ref_mth(d[0:2])
    i, j, k = ref_mth(d[4:6]), leaf[6], ref_mth(d[0:4])
    ll = ref_mth(d[4:7])
    assert consistency_proof(d, 3) == [c, dd, g, ll]
    assert consistency_proof(d, 4) == [ll]
    assert consistency_proof(d, 6) == [i, j, k]


def test_empty_old_tree() -> None:
    assert consistency_proof(LEAVES[:5], 0) == []
    verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [])
    with pytest.raises(IntegrityError, match="empty tree"):
        verify_consistency(0, 5, ROOTS[1], ROOTS[5], [])


def test_every_tampered_node_is_refused() -> None:
    for m, n in PAIRS:
        proof = consistency_proof(LEAVES[:n], m)
        for i in range(len(proof)):
            bad = list(proof)
            bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
            with pytest.raises(IntegrityError):
                verify_consistency(m, n, ROOTS[m], ROOTS[n], bad)


def test_wrong_roots_are_refused() -> None:
    for m, n in PAIRS:
        proof = consistency_proof(LEAVES[:n], m)
        if m != n:
            with pytest.raises(IntegrityError, match="root"):
                verify_consistency(m, n, ROOTS[m - 1], ROOTS[n], proof)
        with pytest.raises(IntegrityError):
            verify_consistency(m, n, ROOTS[m], ROOTS[n - 1], proof)


def test_wrong_sizes_are_refused() -> None:
    # As in RFC 9162, a proof binds the sizes only through its shape: sizes whose
    # proofs have the same length walk the same path (the signed checkpoints are
    # what bind the sizes to the roots). Every size that changes the shape fails.
    refused = 0
    for m, n in PAIRS:
        proof = consistency_proof(LEAVES[:n], m)
        for m2, n2 in ((m - 1, n), (m + 1, n), (m, n + 1), (m, n - 1)):
            if (m2, n2) == (m, n) or not 0 < m2 <= n2 <= N:
                continue
            if len(consistency_proof(LEAVES[:n2], m2)) == len(proof):
                continue
            refused += 1
            with pytest.raises(IntegrityError):
                verify_consistency(m2, n2, ROOTS[m], ROOTS[n], proof)
    assert refused > 1000


def test_a_shrinking_tree_is_refused() -> None:
    with pytest.raises(IntegrityError, match="never shrinks"):
        verify_consistency(5, 4, ROOTS[5], ROOTS[4], [])
    with pytest.raises(IndexError):
        consistency_proof(LEAVES[:4], 5)


def test_extra_missing_and_malformed_elements_are_refused() -> None:
    proof = consistency_proof(LEAVES[:7], 3)
    with pytest.raises(IntegrityError, match="longer"):
        verify_consistency(3, 7, ROOTS[3], ROOTS[7], [*proof, proof[0]])
    with pytest.raises(IntegrityError, match="shorter"):
        verify_consistency(3, 7, ROOTS[3], ROOTS[7], proof[:-1])
    with pytest.raises(IntegrityError, match="32 bytes"):
        verify_consistency(3, 7, ROOTS[3], ROOTS[7], [proof[0][:31], *proof[1:]])
    with pytest.raises(IntegrityError, match="empty"):
        verify_consistency(3, 7, ROOTS[3], ROOTS[7], [])
    with pytest.raises(IntegrityError, match="must be empty"):
        verify_consistency(7, 7, ROOTS[7], ROOTS[7], proof)
    with pytest.raises(IntegrityError, match="same size"):
        verify_consistency(7, 7, ROOTS[7], ROOTS[6], [])
