"""Attacks on proof bundles: a signed body with two readings (a duplicate key), and a
checkpoint cosigned by a member the consortium removed by vote, are both refused with
the reason. The first is also refused by the chain (`bad_encoding`), so no member can
put on the chain a transaction that a strict verifier would refuse; the second's key
once counted."""

from __future__ import annotations

from pathlib import Path

import pytest
from security_kit import Net, consortium

from sharechain.codec import encode
from sharechain.contracts import derive_id
from sharechain.ledger.bundles import BundleError, build_bundle, verify_bundle
from sharechain.ledger.checkpoints import (
    block_hashes,
    checkpoint_of,
    cosign,
    origin_for,
    signed_checkpoint,
)
from sharechain.ledger.transactions import TX_DOMAIN


def _note(net: Net, signers: tuple[str, ...]) -> str:
    hashes = block_hashes(net.store)
    cp = checkpoint_of(hashes, origin_for(hashes[0]))
    return signed_checkpoint(cp, [cosign(cp, o, net.emb.keys(o).signing) for o in signers])


def test_a_body_with_two_readings_is_refused_by_the_chain_and_by_verifiers(tmp_path: Path) -> None:
    with consortium(tmp_path) as net:
        key = net.emb.keys("hospital-a").signing
        t = net.clock.ms
        # {"note": "innocent", "note": "forged"}: the ledger keeps the last, a naive
        # reader might show the first.
        payload = (
            b"\xa3"
            + encode("note")
            + encode("innocent")
            + encode("note")
            + encode("forged")
            + encode("digest")
            + encode(bytes(32))
        )
        body = b"".join(
            [
                b"\xa5",
                encode("type"),
                encode("notary.record"),
                encode("nonce"),
                encode(bytes(16)),
                encode("sender"),
                encode("hospital-a"),
                encode("payload"),
                payload,
                encode("created_at"),
                encode(t),
            ]
        )
        raw = encode([1, body, key.key_id, key.sign(TX_DOMAIN, body)])
        (receipt,) = net.emb.submit_raw([raw], orderer="hospital-a")
        assert receipt.code == "bad_encoding"
        assert net.state(f"notary/{bytes(32).hex()}") is None
        doc = build_bundle(
            net.store, receipt.tx_id, _note(net, ("hospital-a", "hospital-b", "regulator"))
        )
        with pytest.raises(BundleError, match="not canonical CBOR: duplicate map key"):
            verify_bundle(doc)


def test_a_removed_members_cosignature_does_not_count(tmp_path: Path) -> None:
    with consortium(tmp_path) as net:
        proposed = net.ok("hospital-a", "org.propose", {"action": "remove", "org": "clinic-c"})
        pid = derive_id("proposal", proposed.tx_id)
        for admin in ("hospital-b", "regulator"):
            net.ok(admin, "org.vote", {"proposal": pid, "approve": True})
        assert net.state("org/clinic-c")["status"] == "removed"
        subject = net.ok("hospital-a", "notary.record", {"digest": bytes(32), "note": ""})
        # clinic-c with two honest members would have been 3 of 5 before the removal.
        note = _note(net, ("clinic-c", "hospital-a", "hospital-b"))
        with pytest.raises(BundleError, match="cosigned by clinic-c, removed from the consortium"):
            verify_bundle(build_bundle(net.store, subject.tx_id, note))
        ok = _note(net, ("hospital-a", "hospital-b", "regulator"))
        verify_bundle(build_bundle(net.store, subject.tx_id, ok))
