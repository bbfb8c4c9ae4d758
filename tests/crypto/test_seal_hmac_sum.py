"""The extension's keyed row sum (`_sha256x.hmac_sum`) against the `hmac` module.

`hmac_sum(key, prefix, rows)` is the store seal's state digest in C: the sum
mod 2^256 of HMAC-SHA256(key, prefix || u32be(len(k)) || k || v), each read
little-endian, over (k, v) rows. Everything here compares it with the same sum
written with `hmac` and Python integers.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

_sha256x = pytest.importorskip("sharechain.crypto._sha256x", reason="built without a compiler")
if not _sha256x.ACCELERATED or not hasattr(_sha256x, "hmac_sum"):
    pytest.skip(
        "the C hmac_sum needs the x86 SHA instructions, absent here; the store then sums "
        "in Python, which tests/ledger/test_seal_digest_paths.py checks",
        allow_module_level=True,
    )

hmac_sum = _sha256x.hmac_sum

Row = tuple[str | bytes, bytes]


def reference(key: bytes, prefix: bytes, rows: Iterable[Row]) -> bytes:
    total = 0
    for k, v in rows:
        kb = k.encode() if isinstance(k, str) else k
        message = prefix + len(kb).to_bytes(4, "big") + kb + v
        total += int.from_bytes(hmac.digest(key, message, "sha256"), "little")
    return (total % (1 << 256)).to_bytes(32, "little")


_rows = st.lists(
    st.tuples(st.one_of(st.binary(max_size=150), st.text(max_size=60)), st.binary(max_size=300)),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(key=st.binary(max_size=100), prefix=st.binary(max_size=80), rows=_rows)
def test_random_rows_sum_as_the_hmac_module_does(
    key: bytes, prefix: bytes, rows: list[Row]
) -> None:
    assert hmac_sum(key, prefix, rows) == reference(key, prefix, rows)


# Block boundaries of the inner hash, counting the 64-byte keyed block, the
# prefix "state\0" (6 bytes), the 4-byte length and a 5-byte key: both padding cases.
VALUE_SIZES = [0, 1, 40, 41, 48, 49, 104, 105, 112, 113, 1000, 1 << 20]


@pytest.mark.parametrize("size", VALUE_SIZES)
def test_values_across_block_boundaries_and_long_ones(size: int) -> None:
    rows: list[Row] = [("k/abc", bytes(range(256)) * (size // 256) + b"\x07" * (size % 256))]
    assert hmac_sum(b"k" * 32, b"state\x00", rows) == reference(b"k" * 32, b"state\x00", rows)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_rows_of_very_different_lengths_hashed_two_at_a_time(count: int) -> None:
    # Rows are hashed in pairs, interleaved over the blocks they share: a long row
    # beside a short one, either way round, and an odd row left over at the end.
    sizes = [70_000, 0, 3, 5_000, 64][:count]
    rows: list[Row] = [(f"k/{i}", bytes([i]) * size) for i, size in enumerate(sizes)]
    for ordered in (rows, rows[::-1]):
        assert hmac_sum(b"key", b"state\x00", ordered) == reference(b"key", b"state\x00", ordered)


@pytest.mark.parametrize("key_size", [0, 1, 32, 63, 64, 65, 200])
def test_hmac_keys_of_any_length_follow_rfc_2104(key_size: int) -> None:
    # Over 64 bytes the key is hashed first, as the `hmac` module does.
    key = bytes(range(key_size % 256)) + b"\xaa" * max(0, key_size - 256)
    rows: list[Row] = [("a", b"b"), ("", b""), ("x" * 70, b"y" * 70)]
    assert hmac_sum(key, b"p", rows) == reference(key, b"p", rows)


def test_non_ascii_keys_hash_as_their_utf8_bytes_whether_str_or_bytes() -> None:
    keys = ["dataset/é", "org/✓", "idx/日本/𝄞", "\x00"]
    text_rows: list[Row] = [(k, b"v") for k in keys]
    byte_rows: list[Row] = [(k.encode(), b"v") for k in keys]
    assert hmac_sum(b"key", b"t\x00", text_rows) == hmac_sum(b"key", b"t\x00", byte_rows)
    assert hmac_sum(b"key", b"t\x00", text_rows) == reference(b"key", b"t\x00", text_rows)


def test_no_rows_sum_to_zero_and_the_sum_is_order_free_and_wraps() -> None:
    assert hmac_sum(b"key", b"", []) == bytes(32)
    rows: list[Row] = [(b"%d" % i, b"v%d" % i) for i in range(300)]
    assert hmac_sum(b"key", b"", rows) == hmac_sum(b"key", b"", rows[::-1])
    # 300 random 256-bit terms overflow 2^256 many times over: the result is the sum mod 2^256.
    terms = [int.from_bytes(reference(b"key", b"", [r]), "little") for r in rows]
    assert sum(terms) >= 1 << 256
    assert int.from_bytes(hmac_sum(b"key", b"", rows), "little") == sum(terms) % (1 << 256)


def test_rows_from_any_iterable_and_buffer_types() -> None:
    def gen() -> Iterator[tuple[bytes, memoryview]]:
        yield b"a", memoryview(b"one")
        yield b"b", memoryview(bytearray(b"two"))

    want = reference(b"key", b"", [(b"a", b"one"), (b"b", b"two")])
    assert hmac_sum(b"key", b"", gen()) == want


def test_distinct_inputs_give_distinct_sums() -> None:
    # The key's length makes the split between key and value part of the input.
    assert hmac_sum(b"key", b"", [("ab", b"c")]) != hmac_sum(b"key", b"", [("a", b"bc")])
    assert hmac_sum(b"key", b"s\x00", [("a", b"")]) != hmac_sum(b"key", b"t\x00", [("a", b"")])
    assert hmac_sum(b"key", b"", [("a", b"")]) != hmac_sum(b"kez", b"", [("a", b"")])


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ([b"k", b"v"], "must be a \\(key, value\\) tuple"),  # a list, not a tuple
        ((b"k",), "must be a \\(key, value\\) tuple"),
        ((b"k", b"v", b"w"), "must be a \\(key, value\\) tuple"),
        ((b"k", "text value"), "bytes-like"),
        ((1, b"v"), "bytes-like"),
        ((b"k", None), "bytes-like"),
    ],
)
@pytest.mark.parametrize("position", [0, 1, 2])
def test_a_malformed_row_raises_type_error(row: object, error: str, position: int) -> None:
    # First or second of a pair, or after a whole pair.
    rows: list[object] = [(b"fine", b"row"), (b"also", b"fine")]
    rows.insert(position, row)
    with pytest.raises(TypeError, match=error):
        hmac_sum(b"key", b"", rows)


def test_an_error_inside_the_iterator_propagates() -> None:
    def failing() -> Iterator[Row]:
        yield b"a", b"b"
        raise LookupError("the database went away")

    with pytest.raises(LookupError, match="went away"):
        hmac_sum(b"key", b"", failing())
    with pytest.raises(TypeError):
        hmac_sum(b"key", b"", 42)  # not iterable


def test_a_lone_surrogate_in_a_key_is_refused_not_mangled() -> None:
    with pytest.raises(UnicodeEncodeError):
        hmac_sum(b"key", b"", [("\ud800", b"v")])
    with pytest.raises(UnicodeEncodeError):  # as the reference refuses it
        reference(b"key", b"", [("\ud800", b"v")])


def test_against_an_independent_hmac_construction() -> None:
    # RFC 2104 spelled out with hashlib, not through the hmac module.
    key = b"\x0b" * 20
    block = key.ljust(64, b"\x00")
    message = b"p" + (2).to_bytes(4, "big") + b"kk" + b"value"
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block) + message).digest()
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block) + inner).digest()
    assert hmac_sum(key, b"p", [(b"kk", b"value")]) == outer
