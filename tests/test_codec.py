"""Canonical CBOR: fixed encodings, strict decoding, round trips."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharechain.codec import decode, decode_trusted, encode
from sharechain.errors import EncodingError


@pytest.mark.parametrize(
    ("value", "hex_"),
    [
        (0, "00"),
        (23, "17"),
        (24, "1818"),
        (255, "18ff"),
        (256, "190100"),
        (65536, "1a00010000"),
        (2**32, "1b0000000100000000"),
        (-1, "20"),
        (b"", "40"),
        (b"\x01\x02", "420102"),
        ("", "60"),
        ("a", "6161"),
        ([], "80"),
        ([1, [2, 3]], "8201820203"),
        ({}, "a0"),
        (True, "f5"),
        (None, "f6"),
        # Keys sorted by their encoding: shorter text first, then bytewise.
        ({"b": 1, "a": 2, "aa": 3}, "a361610261620162616103"),
    ],
)
def test_known_encodings(value: Any, hex_: str) -> None:
    assert encode(value).hex() == hex_
    assert decode(bytes.fromhex(hex_)) == value


@pytest.mark.parametrize(
    "hex_",
    [
        "1817",  # 23 in two bytes: not the shortest form
        "190017",
        "5f4101ff",  # indefinite-length byte string
        "9f01ff",  # indefinite-length array
        "a2616201616102",  # map keys out of order ("b" before "a")
        "a2616101616102",  # duplicate key
    ],
)
def test_non_canonical_is_rejected(hex_: str) -> None:
    with pytest.raises(EncodingError):
        decode(bytes.fromhex(hex_))
    # The trusted path (own store) does not re-check canonical form.
    decode_trusted(bytes.fromhex(hex_))


@pytest.mark.parametrize("data", [b"", b"\x18", b"\x42\x01", b"\xff", b"\x00\x00"])
def test_malformed_is_rejected(data: bytes) -> None:
    with pytest.raises(EncodingError):
        decode(data)


def test_unencodable_value_raises_encoding_error() -> None:
    with pytest.raises(EncodingError):
        encode(object())


def test_map_order_does_not_change_bytes() -> None:
    a = {"z": 1, "sender": "x", "payload": {"b": b"1", "a": [1, 2]}}
    b = {"payload": {"a": [1, 2], "b": b"1"}, "sender": "x", "z": 1}
    assert encode(a) == encode(b)


_scalars = (
    st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20)
    | st.booleans()
    | st.none()
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_round_trip(value: Any) -> None:
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data


@settings(max_examples=200, deadline=None)
@given(_values, st.data())
def test_any_single_byte_change_never_decodes_to_the_same_value(
    value: Any, data: st.DataObject
) -> None:
    raw = bytearray(encode(value))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    try:
        other = decode(bytes(raw))
    except EncodingError:
        return
    # If it still decodes canonically it is a different value (bytes identify values).
    assert encode(other) == bytes(raw) != encode(value)
