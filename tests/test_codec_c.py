"""The C writer of deterministic CBOR (`sharechain._cborx`) against the Python one and cbor2.

`codec.encode` writes plain values with the C writer when it is built and with
`codec._plain_python` otherwise; both must give the same bytes as each other and as
`cbor2.dumps(value, canonical=True)` (the reference), say "not plain" (None) for exactly
the same values, and fail the same way. The strategies here are tests/test_codec.py's
widened with what only the C writer could get wrong: every head-size boundary, subclasses,
multibyte and unencodable text, maps larger than its insertion sort and its inline buffers.
"""

from __future__ import annotations

import contextlib
import enum
import tracemalloc
from collections.abc import Callable
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharechain import codec
from sharechain.errors import EncodingError

_cborx = pytest.importorskip("sharechain._cborx", reason="the C writer is not built")
_c: Callable[[Any], bytes | None] = _cborx.encode
_py = codec._plain_python


def _reference(value: Any) -> bytes:
    return bytes(cbor2.dumps(value, canonical=True))


def _outcome(writer: Callable[[Any], bytes | None], value: Any) -> tuple[str, Any]:
    """What `writer` does with `value`: its bytes, "not plain", or its error."""
    try:
        data = writer(value)
    except Exception as exc:
        return ("error", (type(exc), str(exc)))
    return ("not plain", None) if data is None else ("bytes", data)


def _encode_with(writer: Callable[[Any], bytes | None]) -> Callable[[Any], bytes]:
    """`codec.encode` with the given writer for plain values."""

    def encode(value: Any) -> bytes:
        saved = codec._plain
        codec._plain = writer
        try:
            return codec.encode(value)
        finally:
            codec._plain = saved

    return encode


def test_encode_uses_the_c_writer_when_it_is_built() -> None:
    assert codec.ACCELERATED
    assert codec._plain is _cborx.encode
    assert _cborx.MAX_DEPTH == 1000


# Integers at both sides of every head size, texts/bytes/lists/maps at every length
# boundary a test can afford (2^32 items would not fit in memory).
_INTS = [
    0,
    1,
    23,
    24,
    255,
    256,
    65535,
    65536,
    2**32 - 1,
    2**32,
    2**63 - 1,
    2**63,
    2**64 - 1,
    -1,
    -24,
    -25,
    -256,
    -257,
    -65536,
    -65537,
    -(2**32),
    -(2**32) - 1,
    -(2**63),
    -(2**63) - 1,
    -(2**64),
]
_LENGTHS = [0, 1, 23, 24, 255, 256, 65535, 65536]


@pytest.mark.parametrize("n", _INTS)
def test_integers_at_head_boundaries(n: int) -> None:
    for value in (n, [n], {"k": n}):
        assert _c(value) == _py(value) == _reference(value)


@pytest.mark.parametrize("n", [2**64, 2**70, -(2**64) - 1, -(2**80)])
def test_bignums_are_not_plain(n: int) -> None:
    for value in (n, [n], {"k": n}):
        assert _c(value) is None
        assert _py(value) is None
    assert codec.encode(n) == _reference(n)  # tag 2 or 3, from cbor2


@pytest.mark.parametrize("n", _LENGTHS)
def test_lengths_at_head_boundaries(n: int) -> None:
    values = [
        "a" * n,
        "\u00e9" * (n // 2),  # two UTF-8 bytes each: the head counts bytes
        b"\x07" * n,
        [None] * n,
        (True,) * n,
        {f"k{i}": i for i in range(n)},
    ]
    for value in values:
        assert _c(value) == _py(value) == _reference(value), type(value)


def test_bool_is_simple_value_not_integer() -> None:
    assert _c(True) == b"\xf5"
    assert _c(False) == b"\xf4"
    assert _c(None) == b"\xf6"
    assert _c([True, 1, False, 0]) == bytes.fromhex("84f501f400")


def test_map_keys_in_canonical_order() -> None:
    # Shorter encodings first, then bytewise: "z" < "aa" < "\u00e9" (2 bytes, c3 a9) < "ab".
    value = {"ab": 1, "\u00e9": 2, "aa": 3, "z": 4, "": 5}
    assert _c(value) == _py(value) == _reference(value)
    assert list(cbor2.loads(_reference(value))) == ["", "z", "aa", "ab", "\u00e9"]


def test_large_and_nested_maps_grow_the_buffers() -> None:
    # More keys than the insertion sort handles and than the inline key array holds, at
    # every level, and an output far past the inline buffer.
    value = {f"key-{i:03}-{'x' * (i % 7)}": {f"{j}": [j] * 3 for j in range(40)} for i in range(50)}
    data = _c(value)
    assert data is not None
    assert len(data) > 10_000
    assert data == _py(value) == _reference(value)


class _Str(str):
    pass


class _Int(int):
    pass


class _Bytes(bytes):
    pass


class _Dict(dict[str, Any]):
    pass


class _List(list[Any]):
    pass


class _Tuple(tuple[Any, ...]):
    pass


class _Color(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        float("inf"),
        _Str("a"),
        _Int(3),
        _Bytes(b"x"),
        _Dict(a=1),
        _List([1]),
        _Tuple((1,)),
        _Color.RED,
        bytearray(b"x"),
        memoryview(b"x"),
        {1, 2},
        frozenset({1}),
        cbor2.CBORTag(1, 5),
        {1: "x"},
        {True: "x"},
        {b"k": 1},
        {"a": 1, 2: "b"},
        {_Str("a"): 1},
        {"a": [1, {"b": 2.0}]},
    ],
)
def test_values_outside_the_fast_path_are_not_plain(value: Any) -> None:
    assert _c(value) is None
    assert _c([value]) is None
    assert _c({"k": value}) is None
    assert codec.encode(value) == _reference(value)


def _nested(depth: int, kind: str) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_deep_nesting_falls_back_to_cbor2(kind: str) -> None:
    limit = _cborx.MAX_DEPTH
    within = _nested(limit, kind)
    assert _c(within) == _reference(within)
    beyond = _nested(limit + 1, kind)
    assert _c(beyond) is None
    assert _py(beyond) is None  # the Python writer runs out of recursion sooner
    assert codec.encode(beyond) == _reference(beyond)


def test_cycles_raise_encoding_error_with_either_writer() -> None:
    loop: list[Any] = []
    loop.append(loop)
    looped: dict[str, Any] = {}
    looped["self"] = [looped]
    for value in (loop, looped):
        with_c = _outcome(_encode_with(_c), value)
        assert with_c == _outcome(_encode_with(_py), value)
        assert with_c[0] == "error"
        assert with_c[1][0] is EncodingError
        assert "cyclic" in with_c[1][1]


@pytest.mark.parametrize(
    "value",
    [
        "\ud800",
        ["ok", "\udfff"],
        {"k": "a\ud800b"},
        {"\ud800": 1},
        {"b": 1, "\udc00": 2},
        {"a": "\ud800", "b": 1.5},  # the surrogate is met first: an error
        {"a": 1.5, "b": "\ud800"},  # the float is met first: cbor2's turn
        {"a": "\ud800", 1: 2},  # a key that is not text: cbor2's turn
        [1.5, "\ud800"],
    ],
)
def test_unencodable_text_fails_as_the_python_writer_does(value: Any) -> None:
    assert _outcome(_c, value) == _outcome(_py, value)
    with_c = _outcome(_encode_with(_c), value)
    assert with_c == _outcome(_encode_with(_py), value)
    assert with_c[0] == "error"
    assert with_c[1][0] is EncodingError
    assert "surrogates not allowed" in with_c[1][1]


_scalars = (
    st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.sampled_from(_INTS)
    | st.binary(max_size=40)
    | st.text(max_size=20)
    | st.booleans()
    | st.none()
)
_keys = st.text(max_size=12) | st.sampled_from(["a", "b", "aa", "\u00e9", "z" * 24, "é" * 12])
_plain_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(_keys, inner, max_size=20)
    ),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(_plain_values)
def test_plain_values_equal_python_and_cbor2(value: Any) -> None:
    data = _c(value)
    assert data is not None
    assert data == _py(value) == _reference(value)


_other_scalars = (
    _scalars
    | st.floats(allow_nan=False)
    | st.integers(-(2**70), 2**70)
    | st.text(st.characters(codec="utf-8") | st.sampled_from(["\ud800", "\udfff"]), max_size=4)
    | st.builds(_Str, st.text(max_size=3))
    | st.builds(_Int, st.integers(-5, 5))
    | st.builds(bytearray, st.binary(max_size=3))
)
_other_keys = _keys | st.integers(-5, 5) | st.binary(max_size=3)
_any_values = st.recursive(
    _other_scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(_keys, inner, max_size=6)
        | st.dictionaries(_other_keys, inner, max_size=4)
        # (subclass keys made after drawing: hypothesis cannot replay a drawn str subclass)
        | st.dictionaries(_keys, inner, max_size=3).map(
            lambda d: {_Str(k) if i == 0 else k: v for i, (k, v) in enumerate(d.items())}
        )
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(_any_values)
def test_any_value_the_same_outcome_as_the_python_writer(value: Any) -> None:
    with_c = _outcome(_encode_with(_c), value)
    assert with_c == _outcome(_encode_with(_py), value)
    if with_c[0] == "bytes":
        assert with_c[1] == _reference(value)
    # What the C writer takes, the Python one takes too, with the same bytes. (Not
    # the converse: a str subclass key whose key set the Python writer has planned
    # before passes as that str, for the bytes cbor2 writes for it too.)
    c = _outcome(_c, value)
    if c[0] != "not plain":
        assert c == _outcome(_py, value)


def test_no_memory_kept_after_many_values() -> None:
    # Every path that allocates: growth of both buffers, non-ASCII keys (each holds a
    # bytes object until its map is written), errors part-way through a map.
    values: list[Any] = [
        {f"\u00e9{i}": "x" * 2000 for i in range(40)},
        {"\u00e9": 1, "b": "\ud800"},
        {"\u00e9": 1, "\udc00": 2},
        {"\u00e9": [1.5]},
        [2**70],
        [-(2**70)],
    ]

    def run() -> None:
        for _ in range(200):
            for value in values:
                with contextlib.suppress(UnicodeEncodeError):
                    _c(value)

    run()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < 10_000
