"""Blocks and headers: encoding, hashing, the orderer signature and the delta hash."""

from __future__ import annotations

import hashlib
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharechain.crypto.merkle import merkle_root
from sharechain.crypto.signing import SigningKey, verify
from sharechain.errors import EncodingError, InvalidSignatureError
from sharechain.ledger.blocks import (
    BLOCK_DOMAIN,
    BlockHeader,
    TxResult,
    computed_tx_root,
    decode_block,
    decode_header,
    delta_hash,
    encode_block,
    make_block,
    sign_header,
)

KEY = SigningKey.from_seed(b"\x05" * 32)
HEADER = BlockHeader(
    3, b"\x01" * 32, b"\x02" * 32, b"\x04" * 32, b"\x03" * 32, 1_700_000_000_000, "hospital-a"
)


def test_header_hash_is_sha256_of_canonical_map() -> None:
    expected = cbor2.dumps(
        {
            "height": 3,
            "prev_hash": b"\x01" * 32,
            "tx_root": b"\x02" * 32,
            "results_root": b"\x04" * 32,
            "state_delta_hash": b"\x03" * 32,
            "timestamp": 1_700_000_000_000,
            "orderer": "hospital-a",
        },
        canonical=True,
    )
    assert HEADER.encoded() == expected
    assert HEADER.hash() == hashlib.sha256(expected).digest()


def test_orderer_signature_domain() -> None:
    sig = sign_header(HEADER, KEY)
    verify(KEY.public_key, sig, BLOCK_DOMAIN, HEADER.encoded())
    with pytest.raises(InvalidSignatureError):
        verify(KEY.public_key, sig, b"sharechain/tx/v1\x00", HEADER.encoded())


def test_block_round_trip() -> None:
    txs = [b"\x84tx-one", b"tx-two"]
    block = make_block(
        HEADER, sign_header(HEADER, KEY), txs, [TxResult("valid", ""), TxResult("replay", "seen")]
    )
    data = encode_block(block)
    back = decode_block(data)
    assert back == block
    assert back.tx_ids == tuple(hashlib.sha256(t).digest() for t in txs)
    assert computed_tx_root(back) == merkle_root(back.tx_ids)
    assert cbor2.loads(data)["results"] == [["valid", ""], ["replay", "seen"]]


def test_delta_hash_definition() -> None:
    results = [TxResult("valid", ""), TxResult("denied", "no")]
    writes = {"b": b"\x01", "a": None}
    expected = hashlib.sha256(
        cbor2.dumps(
            {"results": [["valid", ""], ["denied", "no"]], "writes": [["a", None], ["b", b"\x01"]]},
            canonical=True,
        )
    ).digest()
    assert delta_hash(results, writes) == expected
    assert (
        delta_hash(results, {"a": None, "b": b"\x01"}) == expected
    )  # insertion order is irrelevant
    assert delta_hash(results[:1], writes) != expected


def _block_map(**over: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "header": HEADER.to_map(),
        "signature": b"\x00" * 64,
        "txs": [b"t"],
        "results": [["valid", ""]],
    }
    m.update(over)
    return m


@pytest.mark.parametrize(
    "value",
    [
        _block_map(extra=1),
        _block_map(txs=["text"]),
        _block_map(results=[]),
        _block_map(results=[["valid"]]),
        _block_map(results=[["valid", 1]]),
        _block_map(results=[[1, ""]]),
        _block_map(results=[["valid", "", ""]]),
        _block_map(results=[{"valid": 1, "x": 2}]),  # unpacks to two texts, but not a list
        _block_map(results=["va"]),
        _block_map(txs=[b"t", 1], results=[["valid", ""], ["valid", ""]]),
        _block_map(signature="sig"),
        _block_map(header={**HEADER.to_map(), "prev_hash": b"\x01" * 31}),
        _block_map(header={**HEADER.to_map(), "height": -1}),
        _block_map(header={**HEADER.to_map(), "height": True}),
        _block_map(header={**HEADER.to_map(), "orderer": 5}),
        _block_map(header={**HEADER.to_map(), "extra": 1}),
        [1, 2],
    ],
)
def test_malformed_blocks(value: Any) -> None:
    with pytest.raises(EncodingError):
        decode_block(cbor2.dumps(value, canonical=True))


def test_non_canonical_block_is_rejected_unless_trusted() -> None:
    m = _block_map()
    data = cbor2.dumps(m, canonical=False)  # insertion order: header first
    assert data != cbor2.dumps(m, canonical=True)
    with pytest.raises(EncodingError, match="canonical"):
        decode_block(data)
    assert decode_block(data, check_canonical=False).header == HEADER


def test_decode_header_rejects_missing_fields() -> None:
    m = HEADER.to_map()
    del m["tx_root"]
    with pytest.raises(EncodingError, match="missing"):
        decode_header(m)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_decode_block_accepts_exactly_the_canonical_encodings(data: st.DataObject) -> None:
    # The canonical check re-encodes the parsed block in pieces; it must accept
    # what `cbor2.dumps(cbor2.loads(b), canonical=True) == b` accepts, no more.
    m = _block_map()
    m["txs"] = data.draw(st.lists(st.binary(max_size=300), max_size=4))
    m["results"] = [
        [data.draw(st.sampled_from(["valid", "replay", ""])), data.draw(st.text(max_size=30))]
        for _ in m["txs"]
    ]
    raw = bytearray(cbor2.dumps(m, canonical=data.draw(st.booleans())))
    for _ in range(data.draw(st.integers(0, 2))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        value = cbor2.loads(bytes(raw))
        canonical = cbor2.dumps(value, canonical=True) == bytes(raw)
    except Exception:
        canonical = False
    try:
        block = decode_block(bytes(raw))
    except EncodingError:
        return
    assert canonical
    assert encode_block(block) == bytes(raw)


_results = st.lists(
    st.tuples(st.sampled_from(["valid", "replay", "bad_payload"]), st.text(max_size=300)),
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(
    _results,
    st.dictionaries(st.text(max_size=300), st.none() | st.binary(max_size=300), max_size=8),
)
def test_delta_hash_is_the_canonical_cbor_of_the_documented_map(
    results: list[tuple[str, str]], writes: dict[str, bytes | None]
) -> None:
    expected = cbor2.dumps(
        {
            "results": [list(r) for r in results],
            "writes": [[k, writes[k]] for k in sorted(writes, key=lambda k: k.encode())],
        },
        canonical=True,
    )
    got = delta_hash([TxResult(c, r) for c, r in results], writes)
    assert got == hashlib.sha256(expected).digest()


@settings(max_examples=200, deadline=None)
@given(_results, st.binary(max_size=70), st.data())
def test_encode_block_is_the_canonical_cbor_of_the_documented_map(
    results: list[tuple[str, str]], signature: bytes, data: st.DataObject
) -> None:
    txs = [data.draw(st.binary(max_size=300)) for _ in results]
    block = make_block(HEADER, signature, txs, [TxResult(c, r) for c, r in results])
    expected = cbor2.dumps(
        {
            "header": HEADER.to_map(),
            "signature": signature,
            "txs": txs,
            "results": [list(r) for r in results],
        },
        canonical=True,
    )
    assert encode_block(block) == expected
    assert decode_block(expected) == block
