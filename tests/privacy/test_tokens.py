"""Tokens: standard keyed hashes, keys per (dataset, grantee, epoch)."""

from __future__ import annotations

import hashlib
import hmac

import pyarrow as pa
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from sharechain import codec
from sharechain.privacy.tokens import derive_token_key, tokenize, tokenize_array

SECRET = bytes(range(32))
slugs = st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True)


def test_key_is_hkdf_of_the_documented_inputs() -> None:
    expected = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"sharechain/mask-token/v1",
        info=codec.encode(["ds1", "insurer", 3]),
    ).derive(SECRET)
    assert derive_token_key(SECRET, "ds1", "insurer", 3).key == expected


@given(dataset=slugs, grantee=slugs, other=slugs, epoch=st.integers(1, 1000), value=st.text())
def test_tokens_stable_within_a_release_and_different_across(
    dataset: str, grantee: str, other: str, epoch: int, value: str
) -> None:
    key = derive_token_key(SECRET, dataset, grantee, epoch).key
    again = derive_token_key(SECRET, dataset, grantee, epoch).key
    assert tokenize(key, value) == tokenize(again, value)
    next_epoch = derive_token_key(SECRET, dataset, grantee, epoch + 1).key
    assert tokenize(key, value) != tokenize(next_epoch, value)
    if other != grantee:
        someone_else = derive_token_key(SECRET, dataset, other, epoch).key
        assert tokenize(key, value) != tokenize(someone_else, value)


def test_tokens_are_the_standard_keyed_hashes() -> None:
    key = derive_token_key(SECRET, "ds", "g", 1).key
    values = pa.array(["Ada", "Ben", None, "Ada", ""])
    blake = tokenize_array(key, values).to_pylist()
    mac = tokenize_array(key, values, "hmac-sha256").to_pylist()
    for i, v in enumerate(["Ada", "Ben", None, "Ada", ""]):
        if v is None:
            assert blake[i] is None and mac[i] is None
            continue
        assert blake[i] == hashlib.blake2b(v.encode(), key=key, digest_size=16).hexdigest()
        assert mac[i] == hmac.digest(key, v.encode(), "sha256")[:16].hex()


def test_repeating_and_distinct_columns_agree() -> None:
    key = bytes(32)
    repeating = pa.array(["a", "b"] * 5000)
    distinct = pa.array([f"v{i}" for i in range(5000)] + ["a", "b"])
    assert tokenize_array(key, repeating)[:2] == tokenize_array(key, distinct)[-2:]


def test_numbers_are_tokenised_by_their_text() -> None:
    key = bytes(32)
    assert tokenize_array(key, pa.array([42]))[0].as_py() == tokenize(key, "42")


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        derive_token_key(b"short", "ds", "g", 1)
    assert "secret" in repr(derive_token_key(SECRET, "ds", "g", 1))
    assert SECRET.hex() not in repr(derive_token_key(SECRET, "ds", "g", 1))
