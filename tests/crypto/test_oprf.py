"""Tests of the RFC 9497 OPRF (ristretto255-SHA512, mode 0x00) against the RFC's vectors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from sharechain.crypto import oprf
from sharechain.crypto import ristretto as r255
from sharechain.errors import ConfigError, EncodingError

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "rfc9497_ristretto255_oprf.json").read_text()
)
KEY = r255.decode_scalar(bytes.fromhex(VECTORS["skSm"]))


def test_context_string() -> None:
    assert oprf.CONTEXT_STRING == b"OPRFV1-\x00-ristretto255-SHA512"


def test_derive_key_pair_matches_rfc() -> None:
    key, public = oprf.derive_key_pair(
        bytes.fromhex(VECTORS["Seed"]), bytes.fromhex(VECTORS["KeyInfo"])
    )
    assert r255.encode_scalar(key).hex() == VECTORS["skSm"]
    assert public == r255.base_mul(key)


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["Input"][:8])
def test_protocol_matches_rfc_byte_for_byte(vector: dict[str, str]) -> None:
    data = bytes.fromhex(vector["Input"])
    blind = r255.decode_scalar(bytes.fromhex(vector["Blind"]))
    _, blinded = oprf.blind(data, blind_scalar=blind)
    assert blinded.hex() == vector["BlindedElement"]
    evaluated = oprf.blind_evaluate(KEY, blinded)
    assert evaluated.hex() == vector["EvaluationElement"]
    assert oprf.finalize(data, blind, evaluated).hex() == vector["Output"]
    assert oprf.evaluate(KEY, data).hex() == vector["Output"]


@pytest.mark.parametrize(
    "vector", VECTORS["expand_message_xmd_sha512"]["vectors"], ids=lambda v: v["msg"]
)
def test_expand_message_xmd_matches_rfc9380(vector: dict[str, Any]) -> None:
    dst = VECTORS["expand_message_xmd_sha512"]["DST"].encode()
    out = r255.expand_message_xmd(vector["msg"].encode(), dst, vector["len_in_bytes"])
    assert out.hex() == vector["uniform_bytes"]


def test_batches_equal_single_calls_with_and_without_threads() -> None:
    items = [os.urandom(8) for _ in range(600)]
    key = oprf.generate_key()
    for workers in (1, 2):
        pairs = oprf.blind_batch(items, workers=workers)
        evaluated = oprf.blind_evaluate_batch(key, [p for _, p in pairs], workers)
        outputs = oprf.finalize_batch(items, [b for b, _ in pairs], evaluated, workers)
        assert outputs == oprf.evaluate_batch(key, items, workers)
        assert outputs == [oprf.evaluate(key, x) for x in items]


def test_server_refuses_identity_and_invalid_points() -> None:
    with pytest.raises(r255.InvalidPointError, match="identity"):
        oprf.blind_evaluate(KEY, r255.IDENTITY)
    with pytest.raises(r255.InvalidPointError, match="not a valid"):
        oprf.blind_evaluate(KEY, b"\xff" * 32)
    with pytest.raises(r255.InvalidPointError, match="identity"):
        oprf.finalize(b"x", 5, r255.IDENTITY)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ConfigError, match="32"):
        oprf.derive_key_pair(b"short", b"")
    with pytest.raises(ConfigError, match="at most"):
        oprf.blind(b"x" * 70000)
    with pytest.raises(EncodingError, match="every blinded element"):
        oprf.finalize_batch([b"a", b"b"], [1, 2], [r255.GENERATOR])


def test_a_fresh_key_changes_every_output() -> None:
    assert oprf.evaluate(oprf.generate_key(), b"x") != oprf.evaluate(oprf.generate_key(), b"x")
