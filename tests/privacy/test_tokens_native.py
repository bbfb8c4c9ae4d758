"""The C tokeniser (`sharechain.crypto._tokens`) against hashlib and hmac, byte for byte.

Random values (empty ones, nulls, multibyte text, values across BLAKE2b's
128-byte and SHA-256's 64-byte block edges), sliced arrays, large_string
offsets, random keys of every allowed length: the extension, the hashlib path
(`native=False`) and the reference functions must give the same tokens.
(Damaged buffers: tests/security/test_mask_token_buffers.py.)
"""

from __future__ import annotations

import hashlib
import hmac
import random

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharechain.privacy.tokens import tokenize_array

_tokens = pytest.importorskip("sharechain.crypto._tokens", reason="built without a compiler")

ALGORITHMS = ("blake2b", "hmac-sha256")


def reference(key: bytes, value: str | None, algorithm: str) -> str | None:
    if value is None:
        return None
    data = value.encode()
    if algorithm == "blake2b":
        return hashlib.blake2b(data, key=key, digest_size=16).hexdigest()
    return hmac.digest(key, data, "sha256")[:16].hex()


values = st.lists(st.one_of(st.none(), st.text(max_size=300)), max_size=60)
keys = st.binary(min_size=1, max_size=64)


@settings(max_examples=60, deadline=None)
@given(key=keys, items=values, algorithm=st.sampled_from(ALGORITHMS), cut=st.integers(0, 5))
def test_native_tokens_are_the_reference(
    key: bytes, items: list[str | None], algorithm: str, cut: int
) -> None:
    array = pa.array(items, pa.string()).slice(min(cut, len(items)))
    expected = [reference(key, v, algorithm) for v in items[min(cut, len(items)) :]]
    assert tokenize_array(key, array, algorithm, native=True).to_pylist() == expected
    assert tokenize_array(key, array, algorithm, native=False).to_pylist() == expected
    wide = pa.array(items, pa.large_string()).slice(min(cut, len(items)))
    assert tokenize_array(key, wide, algorithm, native=True).to_pylist() == expected


def test_block_edges_and_multibyte_text() -> None:
    rng = random.Random(15)
    key = rng.randbytes(32)
    items: list[str | None] = ["", None, "é", "日本語", "🙂" * 40]
    items += ["x" * n for n in (55, 56, 63, 64, 65, 119, 120, 127, 128, 129, 255, 256, 257, 1000)]
    items += [
        "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(80)))
        for _ in range(300)
    ]
    for algorithm in ALGORITHMS:
        expected = [reference(key, v, algorithm) for v in items]
        assert tokenize_array(key, pa.array(items), algorithm, native=True).to_pylist() == expected
        # a repeating column goes through a dictionary: same tokens
        repeated = pa.array(items * 30)
        assert tokenize_array(key, repeated, algorithm).to_pylist() == expected * 30


def test_all_null_and_empty_columns() -> None:
    key = bytes(range(32))
    assert tokenize_array(key, pa.array([None, None], pa.string())).to_pylist() == [None, None]
    assert tokenize_array(key, pa.array([], pa.string())).to_pylist() == []
    assert (
        _tokens.hex_tokens(key, "blake2b", pa.array([0], pa.int32()).buffers()[1], b"", False)
        == b""
    )


def test_a_long_key_falls_back_to_hashlib_with_the_same_tokens() -> None:
    key = bytes(range(100))  # HMAC hashes a key longer than a block first (RFC 2104)
    items = ["a", "bc"]
    expected = [reference(key, v, "hmac-sha256") for v in items]
    assert tokenize_array(key, pa.array(items), "hmac-sha256", native=True).to_pylist() == expected
