"""Tests of t-of-n key splitting: field arithmetic, round trips, and every rejected share set."""

from __future__ import annotations

import os
import random
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharechain.crypto import shamir
from sharechain.crypto.shamir import SHARE_SIZE, Share, combine, split
from sharechain.errors import (
    ConfigError,
    EncodingError,
    InsufficientSharesError,
    IntegrityError,
)

KEY = bytes(range(32))


def slow_mul(a: int, b: int) -> int:
    """GF(2^8) multiplication by shift-and-add, reduced by x^8 + x^4 + x^3 + x + 1."""
    product = 0
    while b:
        if b & 1:
            product ^= a
        a <<= 1
        if a & 0x100:
            a ^= 0x11B
        b >>= 1
    return product


def test_field_multiplication_matches_fips197() -> None:
    assert shamir._mul(0x57, 0x83) == 0xC1  # FIPS-197 section 4.2
    assert shamir._mul(0x57, 0x13) == 0xFE  # FIPS-197 section 4.2.1
    rnd = random.Random(1)
    for _ in range(2000):
        a, b = rnd.randrange(256), rnd.randrange(256)
        assert shamir._mul(a, b) == slow_mul(a, b)
        if b:
            assert shamir._div(shamir._mul(a, b), b) == a


def test_every_threshold_subset_rebuilds_the_key() -> None:
    shares = split(KEY, 3, 5)
    for subset in combinations(shares, 3):
        assert combine(subset) == KEY
    assert combine(shares) == KEY  # extra shares are checked and accepted


def test_one_of_n_and_n_of_n() -> None:
    assert combine(split(KEY, 1, 3)[1:2]) == KEY
    assert combine(split(KEY, 4, 4)) == KEY


def test_split_is_driven_by_the_injected_rng() -> None:
    stream = random.Random(7)
    first = split(KEY, 3, 4, rng=lambda n: bytes(stream.randrange(256) for _ in range(n)))
    stream = random.Random(7)
    second = split(KEY, 3, 4, rng=lambda n: bytes(stream.randrange(256) for _ in range(n)))
    assert first == second
    assert split(KEY, 3, 4) != split(KEY, 3, 4)


def test_fewer_than_threshold_shares_say_nothing_about_the_key() -> None:
    # With t-1 shares fixed, every candidate key byte is consistent with some t-th share:
    # the t-1 shares are the same whatever the key when the randomness is chosen to match.
    t = 2
    other_key = bytes(32)
    shares_a = split(KEY, t, 3, rng=lambda n: bytes(n))  # polynomial a(x) = KEY
    # Choose coefficients so that share 1 of other_key equals share 1 of KEY.
    coeff = bytes(a ^ b for a, b in zip(shares_a[0].value, other_key, strict=True))
    shares_b = split(other_key, t, 3, rng=lambda n: coeff)
    assert shares_a[0].value == shares_b[0].value


def test_share_encoding_round_trip() -> None:
    share = split(KEY, 2, 3)[1]
    encoded = share.encode()
    assert len(encoded) == SHARE_SIZE == 67
    assert encoded[:3] == bytes([1, 2, 2])
    assert Share.decode(encoded) == share
    assert "value" not in repr(share)


@pytest.mark.parametrize(
    "data",
    [b"", bytes(66), bytes(68), bytes([2, 1, 2]) + bytes(64), bytes([1, 0, 2]) + bytes(64)],
)
def test_bad_share_encodings_are_rejected(data: bytes) -> None:
    with pytest.raises(EncodingError):
        Share.decode(data)


@settings(max_examples=40, deadline=None)
@given(
    key=st.binary(min_size=32, max_size=32),
    count=st.integers(1, 12),
    data=st.data(),
)
def test_round_trip_property(key: bytes, count: int, data: st.DataObject) -> None:
    threshold = data.draw(st.integers(1, count))
    shares = split(key, threshold, count)
    chosen = data.draw(st.permutations(shares))[: data.draw(st.integers(threshold, count))]
    assert combine(chosen) == key


# --- negatives ---------------------------------------------------------------------------------


def test_too_few_shares() -> None:
    shares = split(KEY, 3, 5)
    with pytest.raises(InsufficientSharesError, match="2 key shares given, 3 needed"):
        combine(shares[:2])
    with pytest.raises(InsufficientSharesError):
        combine([])


def test_duplicate_indexes() -> None:
    shares = split(KEY, 3, 5)
    with pytest.raises(IntegrityError, match="more than once"):
        combine([shares[0], shares[1], shares[1]])
    with pytest.raises(IntegrityError, match="more than once"):
        combine([shares[0], shares[1], shares[2], shares[0]])


def tampered(share: Share, byte: int = 0) -> Share:
    value = bytearray(share.value)
    value[byte] ^= 0x01
    return Share(share.index, share.threshold, share.check, bytes(value))


def test_tampered_share_at_threshold_is_detected() -> None:
    shares = split(KEY, 3, 5)
    for position in range(3):
        chosen = list(shares[:3])
        chosen[position] = tampered(chosen[position], byte=position * 7)
        with pytest.raises(IntegrityError, match="check value"):
            combine(chosen)


def test_tampered_share_beyond_threshold_is_named() -> None:
    shares = split(KEY, 3, 5)
    chosen = [shares[0], tampered(shares[1], 31), shares[2], shares[3]]
    with pytest.raises(IntegrityError, match=r"key shares \[2\] do not fit"):
        combine(chosen)
    # Dropping the named share gives the key back.
    assert combine([shares[0], shares[2], shares[3]]) == KEY


def test_tampered_check_value_is_detected() -> None:
    shares = split(KEY, 2, 3)
    forged = Share(shares[1].index, 2, bytes(32), shares[1].value)
    with pytest.raises(IntegrityError, match="different splits"):
        combine([shares[0], forged])
    all_forged = [Share(s.index, 2, bytes(32), s.value) for s in shares]
    with pytest.raises(IntegrityError, match="check value"):
        combine(all_forged)


def test_shares_of_different_splits_are_rejected() -> None:
    ours = split(KEY, 2, 3)
    theirs = split(os.urandom(32), 2, 3)
    with pytest.raises(IntegrityError, match="different splits"):
        combine([ours[0], theirs[1]])
    other_threshold = split(KEY, 3, 3)
    with pytest.raises(IntegrityError, match="different splits"):
        combine([ours[0], other_threshold[1], other_threshold[2]])


def test_lowered_threshold_is_detected() -> None:
    # Claiming a smaller threshold changes what the check value commits to.
    shares = split(KEY, 3, 3)
    lowered = [Share(s.index, 2, s.check, s.value) for s in shares[:2]]
    with pytest.raises(IntegrityError):
        combine(lowered)


def test_malformed_share_is_rejected() -> None:
    shares = split(KEY, 2, 3)
    short = Share(shares[1].index, 2, shares[1].check, shares[1].value[:31])
    with pytest.raises(IntegrityError, match="malformed"):
        combine([shares[0], short])
    zero = Share(0, 2, shares[1].check, shares[1].value)
    with pytest.raises(IntegrityError, match="malformed"):
        combine([shares[0], zero])


@pytest.mark.parametrize(
    ("secret", "threshold", "count"),
    [(bytes(31), 2, 3), (bytes(33), 2, 3), (KEY, 0, 3), (KEY, 4, 3), (KEY, 2, 256)],
)
def test_bad_split_parameters(secret: bytes, threshold: int, count: int) -> None:
    with pytest.raises(ConfigError):
        split(secret, threshold, count)


def test_short_rng_is_config_error() -> None:
    with pytest.raises(ConfigError):
        split(KEY, 3, 5, rng=lambda n: bytes(n - 1))
