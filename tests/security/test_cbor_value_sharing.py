"""Attack: a member submits a transaction of a few hundred bytes whose CBOR, through
value sharing (tags 28/29) or string references (tags 25/256), stands for a
structure exponentially larger, so that a node decoding it (and re-encoding it to
check canonical form) spends hours of CPU on one envelope, before any signature
check.

Defence: every decode in `sharechain.codec` (and the transaction body's) refuses
those tags; nothing sharechain writes uses them. Such a transaction is refused
as badly encoded, in microseconds, and the node goes on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from api_helpers import Consortium, InProcess, serve

from sharechain import codec
from sharechain.errors import EncodingError
from sharechain.ledger import validation as v
from sharechain.ledger.transactions import TX_DOMAIN, decode_transaction, sign_transaction

LEVELS = 64
"""Doublings: 2^64 leaves once expanded (never, if the defence holds)."""


def _bomb(levels: int) -> list[Any]:
    x: list[Any] = ["leaf"]
    for _ in range(levels):
        x = [x, x]
    return x


def _shared_body(levels: int) -> bytes:
    body = {
        "created_at": 1_750_000_000_000,
        "nonce": bytes(16),
        "payload": {"digest": bytes(32), "note": "", "extra": _bomb(levels)},
        "sender": "bank-b",
        "type": "notary.record",
    }
    return cbor2.dumps(body, value_sharing=True)


def _string_refs() -> bytes:
    return cbor2.dumps(["a long repeated text " * 4] * 50, string_referencing=True)


@pytest.mark.parametrize(
    "data",
    [cbor2.dumps(_bomb(LEVELS), value_sharing=True), _string_refs()],
    ids=["value-sharing", "string-references"],
)
def test_every_decode_refuses_sharing_tags(data: bytes) -> None:
    assert len(data) < 2000
    for decode in (codec.decode, lambda d: codec.decode(d, canonical=False)):
        with pytest.raises(EncodingError, match="value sharing and string references"):
            decode(data)
    for raw_decode in (codec.decode_trusted, codec.loads):
        with pytest.raises(cbor2.CBORDecodeError, match="tags 25, 28, 29, 256"):
            raw_decode(data)


def test_a_transaction_body_with_shared_values_is_refused_at_once() -> None:
    body = _shared_body(LEVELS)
    assert len(body) < 1000
    raw = codec.encode([1, body, bytes(32), bytes(64)])
    with pytest.raises(EncodingError, match="value sharing and string references"):
        decode_transaction(raw)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[InProcess]:
    with serve(Consortium.make(tmp_path), "hospital-a") as running:
        yield running


def test_a_node_commits_it_as_badly_encoded_and_goes_on(node: InProcess) -> None:
    signing = node.consortium.keys("bank-b").signing
    body = _shared_body(LEVELS)
    raw = codec.encode([1, body, signing.key_id, signing.sign(TX_DOMAIN, body)])
    honest = sign_transaction(
        signing, "notary.record", "bank-b", {"digest": bytes(range(32)), "note": "after"}
    )
    with node.client("bank-b") as client:
        (bomb,) = client.submit([raw])
        (after,) = client.submit([honest.raw])
    assert bomb.code == v.BAD_ENCODING
    assert after.code == v.VALID and after.height > bomb.height
