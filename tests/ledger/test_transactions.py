"""Signed transaction envelopes: ids, signatures, and strict decoding."""

from __future__ import annotations

import hashlib

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from sharechain.crypto.signing import SigningKey
from sharechain.errors import EncodingError
from sharechain.ledger.transactions import (
    TX_DOMAIN,
    decode_transaction,
    sign_transaction,
    split_envelope,
)

KEY = SigningKey.from_seed(bytes(range(32)))


def _tx(payload: dict[str, object] | None = None) -> bytes:
    return sign_transaction(
        KEY,
        "notary.record",
        "hospital-a",
        payload if payload is not None else {"digest": bytes(32), "note": "x"},
        now=lambda: 1.5,
        rng=lambda n: b"\x01" * n,
    ).raw


def _envelope(body: object, key_id: object = None, sig: object = None) -> bytes:
    body_bytes = cbor2.dumps(body, canonical=True) if not isinstance(body, bytes) else body
    return cbor2.dumps(
        [
            1,
            body_bytes,
            KEY.key_id if key_id is None else key_id,
            sig or KEY.sign(TX_DOMAIN, body_bytes),
        ],
        canonical=True,
    )


GOOD_BODY = {
    "type": "notary.record",
    "sender": "hospital-a",
    "nonce": b"\x01" * 16,
    "created_at": 1500,
    "payload": {},
}


def test_sign_and_decode() -> None:
    raw = _tx()
    stx = decode_transaction(raw)
    assert stx.id == hashlib.sha256(raw).digest()
    assert stx.tx.type == "notary.record" and stx.tx.sender == "hospital-a"
    assert stx.tx.created_at == 1500 and stx.tx.nonce == b"\x01" * 16
    assert stx.key_id == KEY.key_id
    assert cbor2.loads(raw) == [1, stx.body, KEY.key_id, stx.signature]
    # The signature is plain Ed25519 over TX_DOMAIN || body (checked independently).
    Ed25519PublicKey.from_public_bytes(KEY.public_key).verify(stx.signature, TX_DOMAIN + stx.body)
    assert cbor2.loads(stx.body) == {**GOOD_BODY, "payload": {"digest": bytes(32), "note": "x"}}


def test_decode_with_the_id_already_computed() -> None:
    raw = _tx()
    stx = decode_transaction(raw, tx_id=hashlib.sha256(raw).digest())
    assert stx == decode_transaction(raw)


def test_nonce_makes_ids_unique() -> None:
    a = sign_transaction(KEY, "t", "hospital-a", {}, now=lambda: 1.0, rng=lambda n: b"\x01" * n)
    b = sign_transaction(KEY, "t", "hospital-a", {}, now=lambda: 1.0, rng=lambda n: b"\x02" * n)
    assert a.id != b.id


@pytest.mark.parametrize(
    "raw",
    [
        cbor2.dumps([1, b"x", b"k"], canonical=True),
        cbor2.dumps([2, cbor2.dumps(GOOD_BODY, canonical=True), b"k", b"s"], canonical=True),
        cbor2.dumps({"v": 1}, canonical=True),
        cbor2.dumps([1, "text body", b"k", b"s"], canonical=True),
        b"\x84\x01\x40\x40",  # truncated
        b"",
    ],
    ids=["short", "version", "map", "text-body", "truncated", "empty"],
)
def test_malformed_envelopes(raw: bytes) -> None:
    with pytest.raises(EncodingError):
        decode_transaction(raw)


def test_non_canonical_envelope_is_rejected() -> None:
    raw = _tx()
    # Re-encode the first array element 1 as a two-byte integer: same value, new bytes.
    assert raw[1] == 0x01
    with pytest.raises(EncodingError, match="canonical"):
        decode_transaction(raw[:1] + b"\x18\x01" + raw[2:])


@pytest.mark.parametrize(
    "body",
    [
        {k: v for k, v in GOOD_BODY.items() if k != "nonce"},
        {**GOOD_BODY, "extra": 1},
        {**GOOD_BODY, "nonce": b"\x01" * 15},
        {**GOOD_BODY, "created_at": -1},
        {**GOOD_BODY, "created_at": True},
        {**GOOD_BODY, "payload": [1]},
        {**GOOD_BODY, "type": ""},
        {**GOOD_BODY, "sender": 7},
        [1, 2],
        b"\xff",  # body bytes that are not CBOR
    ],
    ids=[
        "no-nonce",
        "extra",
        "nonce",
        "negative",
        "bool",
        "payload",
        "type",
        "sender",
        "list",
        "junk",
    ],
)
def test_malformed_bodies(body: object) -> None:
    with pytest.raises(EncodingError):
        decode_transaction(_envelope(body))


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_flipped_byte_changes_id_or_fails_to_decode(data: st.DataObject) -> None:
    raw = bytearray(_tx())
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    try:
        stx = decode_transaction(bytes(raw))
    except EncodingError:
        return
    assert stx.id != hashlib.sha256(_tx()).digest()


def _general_decode(raw: bytes) -> tuple[bytes, bytes, bytes] | None:
    """The envelope as the general rule reads it: canonical CBOR [1, bstr, bstr, bstr]."""
    try:
        value = cbor2.loads(raw)
        if cbor2.dumps(value, canonical=True) != raw:
            return None
    except Exception:
        return None
    if (
        isinstance(value, list)
        and len(value) == 4
        and value[0] == 1
        and all(isinstance(x, bytes) for x in value[1:])
    ):
        return value[1], value[2], value[3]
    return None


def _decoded(raw: bytes) -> tuple[bytes, bytes, bytes] | None:
    try:
        stx = decode_transaction(raw)
    except EncodingError:
        return None
    return stx.body, stx.key_id, stx.signature


@pytest.mark.parametrize("size", [0, 23, 24, 255, 256, 65535, 65536])
def test_envelope_body_lengths_at_every_head_size(size: int) -> None:
    # The body byte string's length head changes size at 24, 256 and 65536.
    body = cbor2.dumps({**GOOD_BODY, "payload": {"pad": b"\x00" * size}}, canonical=True)
    raw = _envelope(body)
    stx = decode_transaction(raw)
    assert (stx.body, stx.key_id, stx.signature) == _general_decode(raw)
    assert split_envelope(raw) == (_general_decode(raw) if len(body) < 65536 else None)
    assert stx.id == hashlib.sha256(raw).digest()


@pytest.mark.parametrize(("key_len", "sig_len"), [(0, 0), (31, 64), (32, 63), (33, 64), (32, 65)])
def test_envelopes_with_odd_key_or_signature_lengths_still_decode(
    key_len: int, sig_len: int
) -> None:
    # Any byte strings decode (the ledger then says stale_key or bad_signature).
    raw = _envelope(GOOD_BODY, b"k" * key_len, b"s" * sig_len or None)
    stx = decode_transaction(raw)
    assert len(stx.key_id) == key_len
    assert (stx.body, stx.key_id, stx.signature) == _general_decode(raw)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_envelope_parsing_agrees_with_the_general_rule(data: st.DataObject) -> None:
    """Whatever bytes arrive: decoded iff the format's rule accepts them, to the same parts."""
    pad = data.draw(st.integers(0, 300))
    raw = bytearray(_envelope({**GOOD_BODY, "payload": {"p": b"\x00" * pad}}))
    for _ in range(data.draw(st.integers(0, 3))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))] + data.draw(st.binary(max_size=3))
    general = _general_decode(bytes(raw))
    # The in-place reading never accepts what the rule refuses, nor reads other parts.
    assert split_envelope(bytes(raw)) in (None, general)
    got = _decoded(bytes(raw))
    if general is None:
        assert got is None
    elif got is not None:  # a malformed body is refused after the envelope
        assert got == general
