"""Tests of the ristretto255 wrapper: point checks, scalar encoding, group laws, hashing."""

from __future__ import annotations

import hashlib

import pytest

from sharechain.crypto import ristretto as r255
from sharechain.errors import EncodingError

# RFC 9496 appendix A.1: the encodings of 0*B, 1*B and 2*B.
RFC9496_MULTIPLES = (
    "0000000000000000000000000000000000000000000000000000000000000000",
    "e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76",
    "6a493210f7499cd17fecb510ae0cea23a110e8d5b901f8acadd3095c73a3b919",
)
# RFC 9496 appendix A.2: encodings every implementation must refuse.
RFC9496_BAD = (
    # non-canonical field encoding
    "00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    # negative field element
    "0100000000000000000000000000000000000000000000000000000000000000",
    # not square
    "26948d35ca62e643e26a83177332e6b6afeb9d08e4268b650f1f5bbd8d81d371",
)


def test_generator_and_multiples_match_rfc9496() -> None:
    assert r255.GENERATOR.hex() == RFC9496_MULTIPLES[1]
    assert r255.base_mul(2).hex() == RFC9496_MULTIPLES[2]
    assert r255.add(r255.GENERATOR, r255.GENERATOR).hex() == RFC9496_MULTIPLES[2]
    assert r255.mul(2, r255.GENERATOR).hex() == RFC9496_MULTIPLES[2]


@pytest.mark.parametrize("bad", RFC9496_BAD)
def test_invalid_encodings_are_refused(bad: str) -> None:
    with pytest.raises(r255.InvalidPointError, match="not a valid ristretto255"):
        r255.decode_point(bytes.fromhex(bad))


def test_identity_and_wrong_length_are_refused() -> None:
    with pytest.raises(r255.InvalidPointError, match="identity"):
        r255.decode_point(r255.IDENTITY, "blinded element")
    with pytest.raises(r255.InvalidPointError, match="32 bytes"):
        r255.decode_point(r255.GENERATOR[:31])
    assert r255.decode_point(r255.GENERATOR) == r255.GENERATOR


def test_group_laws() -> None:
    a, b = r255.random_scalar(), r255.random_scalar()
    pa, pb = r255.base_mul(a), r255.base_mul(b)
    assert r255.add(pa, pb) == r255.base_mul((a + b) % r255.ORDER)
    assert r255.sub(pa, pb) == r255.base_mul((a - b) % r255.ORDER)
    assert r255.mul(b, pa) == r255.base_mul(a * b % r255.ORDER)
    assert r255.add(pa, r255.neg(pa)) == r255.IDENTITY
    assert r255.mul(0, pa) == r255.IDENTITY == r255.base_mul(0)
    assert r255.mul(r255.ORDER - 1, pa) == r255.neg(pa)


def test_scalar_encoding_round_trip_and_refusals() -> None:
    s = r255.random_scalar()
    assert r255.decode_scalar(r255.encode_scalar(s)) == s
    with pytest.raises(EncodingError, match="not reduced"):
        r255.decode_scalar(r255.ORDER.to_bytes(32, "little"))
    with pytest.raises(EncodingError, match="32 bytes"):
        r255.decode_scalar(b"\x01" * 31)


def test_random_scalar_uses_the_injected_rng_and_skips_zero() -> None:
    draws = iter([bytes(64), b"\x07" + bytes(63)])
    assert r255.random_scalar(lambda n: next(draws)) == 7


def test_hash_to_group_is_deterministic_and_domain_separated() -> None:
    p = r255.hash_to_group(b"msg", b"dst-one")
    assert p == r255.hash_to_group(b"msg", b"dst-one")
    assert p != r255.hash_to_group(b"msg", b"dst-two")
    assert r255.decode_point(p) == p


def test_expand_message_xmd_long_outputs_and_long_tags() -> None:
    out = r255.expand_message_xmd(b"m", b"tag", 200)
    # The length is hashed in, so a longer output is not an extension of a shorter one.
    assert len(out) == 200 and out[:64] != r255.expand_message_xmd(b"m", b"tag", 64)
    long_tag = b"t" * 300
    hashed = hashlib.sha512(b"H2C-OVERSIZE-DST-" + long_tag).digest()
    assert r255.expand_message_xmd(b"m", long_tag, 32) == r255.expand_message_xmd(b"m", hashed, 32)
