"""Canonical CBOR: fixed encodings, strict decoding, round trips."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharechain import codec
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


# `encode` takes a plain-mode fast path for the ledger's own value types; it
# must give exactly cbor2's canonical bytes for every value, those included.
_any_scalars = _scalars | st.floats(allow_nan=False) | st.integers(-(2**70), 2**70)
_any_keys = st.text(max_size=30) | st.integers(-5, 5) | st.binary(max_size=3)
_any_values = st.recursive(
    _any_scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=30), inner, max_size=6)
        | st.dictionaries(_any_keys, inner, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(_any_values)
def test_fast_path_equals_cbor2_canonical(value: Any) -> None:
    assert encode(value) == cbor2.dumps(value, canonical=True)


def test_fast_path_leaves_the_value_unchanged() -> None:
    inner = {"z": [1, {"b": 2, "a": 3}], "a": b"x"}
    value = {"long-key": inner, "k": (1, 2)}
    before = repr(value)
    assert encode(value).hex() == (  # keys at every level in canonical order
        "a2616b820102686c6f6e672d6b6579a261614178617a8201a2616103616202"
    )
    assert repr(value) == before  # keys re-ordered in a copy, never in place


@pytest.mark.parametrize(
    "value",
    [
        1.5,  # floats: shortest form only in canonical mode
        {"a": 1.0},
        {1: "x", "a": "y"},  # non-text keys
        {b"k": 1},
        frozenset({1, 2}),
        cbor2.CBORTag(1, 5),
    ],
)
def test_values_outside_the_fast_path_still_encode_canonically(value: Any) -> None:
    assert encode(value) == cbor2.dumps(value, canonical=True)


def test_remembered_texts_encode_the_same_and_stay_bounded() -> None:
    texts = [f"text-{i}" for i in range(codec._MAX_TEXTS + 10)]
    first = [encode({"k": [t]}) for t in texts]
    assert first[0].hex() == "a1616b8166746578742d30"
    assert [encode({"k": [t]}) for t in texts] == first  # now partly from the cache
    assert len(codec._texts) <= codec._MAX_TEXTS
    long = "\u00e9" * 200  # 400 bytes: a 2-byte length head, and not remembered
    assert encode({"a": long}) == cbor2.dumps({"a": long}, canonical=True)
    assert long not in codec._texts


def test_cycles_raise_encoding_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(EncodingError):
        encode(loop)


def _old_rule_accepts(data: bytes) -> bool:
    """The documented rule: decodes, and cbor2's canonical re-encoding is the same bytes."""
    try:
        return bool(cbor2.dumps(cbor2.loads(data), canonical=True) == data)
    except Exception:
        return False


@settings(max_examples=500, deadline=None)
@given(_any_values, st.data())
def test_decode_accepts_exactly_what_the_format_rule_accepts(
    value: Any, data: st.DataObject
) -> None:
    raw = bytearray(cbor2.dumps(value, canonical=data.draw(st.booleans())))
    for _ in range(data.draw(st.integers(0, 2))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        decode(bytes(raw))
        accepted = True
    except EncodingError:
        accepted = False
    assert accepted == _old_rule_accepts(bytes(raw))
