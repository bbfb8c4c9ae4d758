"""Strict canonical CBOR for verifiers: a transaction body in a bundle or an export that
breaks a rule (floats, tags, indefinite lengths, trailing bytes, duplicate keys, long
integer forms) is refused, naming the rule, though the ledger's lenient decoder took it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ledger_kit import Kit

from sharechain.codec import encode
from sharechain.contracts import default_registry
from sharechain.crypto.signing import SigningKey
from sharechain.errors import ChainError
from sharechain.ledger.bundles import BundleError, build_bundle, verify_bundle
from sharechain.ledger.checkpoints import (
    block_hashes,
    checkpoint_of,
    cosign,
    origin_for,
    signed_checkpoint,
)
from sharechain.ledger.export import export_records, verify_export
from sharechain.ledger.export_seal import genesis_note, seal_line
from sharechain.ledger.strict_cbor import NonCanonicalError, strict_decode
from sharechain.ledger.transactions import TX_DOMAIN
from sharechain.ledger.verify import BlockSource

T = 1_750_000_000_100
DIGEST = bytes(range(32))


def _body(payload: bytes) -> bytes:
    """A notary.record body written by hand, `payload` spliced in as the payload map;
    keys in canonical order: type (4) < nonce (5) < sender (6) < payload (7) < created_at."""
    parts = [b"\xa5"]
    for k, v in (("type", "notary.record"), ("nonce", bytes(16)), ("sender", "hospital-a")):
        parts += [encode(k), encode(v)]
    parts += [encode("payload"), payload, encode("created_at"), encode(T)]
    return b"".join(parts)


def _payload(note: bytes) -> bytes:
    """`{"note": <note item>, "digest": DIGEST}` with the note item given as raw CBOR."""
    return b"\xa2" + encode("note") + note + encode("digest") + encode(DIGEST)


BAD = {
    "floating-point value": _body(_payload(b"\xfb" + bytes(8))),
    "tag": _body(_payload(b"\xc1\x00")),
    "indefinite length": _body(_payload(b"\x7f\x61a\xff")),
    "non-shortest form": _body(_payload(b"\x78\x01a")),
    "duplicate map key": _body(
        b"\xa3"
        + encode("note")
        + encode("")
        + encode("note")
        + encode("x")
        + encode("digest")
        + encode(DIGEST)
    ),
    "map keys out of order": _body(
        b"\xa2" + encode("digest") + encode(DIGEST) + encode("note") + encode("")
    ),
    "trailing bytes": _body(_payload(encode(""))) + b"\x00",
}


def test_canonical_bodies_decode_and_each_rule_is_named() -> None:
    good = _body(_payload(encode("")))
    assert strict_decode(good)["payload"] == {"note": "", "digest": DIGEST}
    assert strict_decode(encode({"a": [1, -300, b"x", None, True, 2**64 - 1]})) is not None
    for rule, body in BAD.items():
        with pytest.raises(NonCanonicalError, match=rule) as caught:
            strict_decode(body)
        assert caught.value.rule == rule
    for data, rule in (
        (b"\x19\x00\x10", "non-shortest form"),
        (b"\x9f\xff", "indefinite length"),
        (b"\xf7", "simple value"),
        (b"\x62\xff\xfe", "invalid UTF-8"),
        (b"\x82\x01", "truncated"),
        (b"\x81" * 40 + b"\x00", "nesting too deep"),
        (b"\xa1\x80\x00", "map key type"),
        (b"\x1c", "reserved head"),
    ):
        with pytest.raises(NonCanonicalError, match=rule):
            strict_decode(data)


def _signed(kit: Kit, body: bytes) -> bytes:
    key: SigningKey = kit.keys["hospital-a"].signing
    return encode([1, body, key.key_id, key.sign(TX_DOMAIN, body)])


def test_a_bundle_with_a_non_canonical_body_is_refused_naming_the_rule(tmp_path: Path) -> None:
    kit = Kit(tmp_path / "l.db", default_registry())
    try:
        raws = [_signed(kit, body) for body in BAD.values()]
        block = kit.add(raws)
        hashes = block_hashes(kit.store)
        cp = checkpoint_of(hashes, origin_for(hashes[0]))
        note = signed_checkpoint(
            cp, [cosign(cp, o, kit.keys[o].signing) for o in ("hospital-a", "regulator")]
        )
        for rule, tx_id in zip(BAD, block.tx_ids, strict=True):
            with pytest.raises(
                BundleError, match=f"txs\\[0\\] .* body: not canonical CBOR: {rule}"
            ):
                verify_bundle(build_bundle(kit.store, tx_id, note))
    finally:
        kit.store.close()


def test_the_chain_refuses_a_non_canonical_body_and_its_export_still_verifies(
    tmp_path: Path,
) -> None:
    registry = default_registry()
    kit = Kit(tmp_path / "l.db", registry)
    try:
        kit.add([kit.record("hospital-a", b"fine").raw])
        # A duplicate key in the payload: the ledger refuses it (`bad_encoding`), so a
        # member cannot make the chain's export unverifiable with a body of two readings.
        odd = _signed(kit, BAD["duplicate map key"])
        kit.add([odd])
        signers = {o: k.signing for o, k in kit.keys.items()}
        genesis = genesis_note(block_hashes(kit.store, 1)[0], signers)
        source: BlockSource = kit.store
        lines = [
            json.dumps(r)
            for r in export_records(source, registry, seal=lambda s: seal_line(s, signers, genesis))
        ]
        line = json.loads(lines[2])
        assert line["txs"][0]["code"] == "bad_encoding"
        assert verify_export(lines, registry).blocks == 3
        # An export that claims the refused transaction was applied is refused.
        line["txs"][0]["code"], line["txs"][0]["reason"] = "valid", ""
        forged = [*lines[:2], json.dumps(line), *lines[3:]]
        with pytest.raises(ChainError, match="block 2: results_root does not match its results"):
            verify_export(forged, registry)
    finally:
        kit.store.close()
