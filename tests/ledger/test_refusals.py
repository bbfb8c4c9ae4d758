"""Refusals: a node's signed word that it refuses a member's block, and its peers' kept."""

from __future__ import annotations

import hashlib

import pytest

from sharechain.crypto.signing import SigningKey
from sharechain.errors import EncodingError, InvalidSignatureError
from sharechain.ledger.refusals import (
    KEEP,
    Refusal,
    RefusalBook,
    sign_refusal,
    verify_refusal,
)

A = SigningKey.from_seed(b"a" * 32)
B = SigningKey.from_seed(b"b" * 32)


def _hash(n: int) -> bytes:
    return hashlib.sha256(n.to_bytes(8, "big")).digest()


def test_a_refusal_verifies_under_its_key_only_and_for_what_it_says() -> None:
    refusal = sign_refusal("bank-b", B, 7, _hash(7))
    verify_refusal(refusal, B.public_key)
    with pytest.raises(InvalidSignatureError):
        verify_refusal(refusal, A.public_key)
    for changed in (
        Refusal("hospital-a", 7, _hash(7), refusal.signature),
        Refusal("bank-b", 8, _hash(7), refusal.signature),
        Refusal("bank-b", 7, _hash(8), refusal.signature),
    ):
        with pytest.raises(InvalidSignatureError):
            verify_refusal(changed, B.public_key)
    assert Refusal.from_json(refusal.to_json()) == refusal


@pytest.mark.parametrize(
    "value",
    [
        {"org": "bank-b", "height": -1, "block_hash": "00" * 32, "signature": "00" * 64},
        {"org": "bank-b", "height": 1, "block_hash": "00" * 31, "signature": "00" * 64},
        {"org": "bank-b", "height": 1, "block_hash": "zz" * 32, "signature": "00" * 64},
        {"org": "bank-b", "height": 1},
        "not a map",
    ],
)
def test_a_malformed_refusal_is_refused_with_a_clear_error(value: object) -> None:
    with pytest.raises(EncodingError, match="malformed refusal"):
        Refusal.from_json(value)


def test_a_node_serves_its_latest_refusals_each_once() -> None:
    book = RefusalBook("hospital-a", lambda: A)
    first = book.refuse(3, _hash(3))
    assert book.refuse(3, _hash(3)) == first  # not signed or served twice
    for h in range(4, 4 + KEEP):
        book.refuse(h, _hash(h))
    own = book.own()
    assert len(own) == KEEP and first not in own
    for refusal in own:
        verify_refusal(refusal, A.public_key)


def test_a_peer_s_refusals_count_only_when_its_own_and_signed_by_its_key() -> None:
    book = RefusalBook("hospital-a", lambda: A)
    good = sign_refusal("bank-b", B, 5, _hash(5))
    forged = sign_refusal("bank-b", A, 6, _hash(6))  # signed with another org's key
    for_another = sign_refusal("regulator", B, 7, _hash(7))  # speaks for another org
    values = [good.to_json(), forged.to_json(), for_another.to_json(), {"junk": 1}, 3]
    assert book.receive("bank-b", values, B.public_key) == 1
    assert book.refusing(["bank-b", "regulator"], 5, _hash(5)) == ["bank-b"]
    assert book.refusing(["bank-b"], 5, _hash(6)) == []  # another block at that height
    assert book.refusing(["bank-b"], 6, _hash(6)) == []
    assert book.refusing(["regulator"], 7, _hash(7)) == []
    # Served again at the next poll: filed already, nothing new.
    assert book.receive("bank-b", values, B.public_key) == 0
    # An unknown organisation (no key) and this node's own name prove nothing.
    assert book.receive("bank-b", [good.to_json()], None) == 0
    own_name = sign_refusal("hospital-a", A, 9, _hash(9))
    assert book.receive("hospital-a", [own_name.to_json()], A.public_key) == 0
