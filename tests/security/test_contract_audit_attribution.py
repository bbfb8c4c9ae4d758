"""Attack: write into another organisation's audit trail.

The ledger refuses a transaction whose signature does not verify under the
named sender's current key (`bad_signature`, `stale_key`) before any contract
runs, and files the refusal under the sender the transaction *names*. Anyone
can name anyone, so an outsider (or a thief of a rotated-out key) could fill
an organisation's audit trail with attempts it never made. An organisation's
trail shows only what it signed, and what changed its standing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from security_kit import Net, consortium, digest

from sharechain.contracts import queries
from sharechain.crypto.keyfile import OrgKeys


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    with consortium(tmp_path) as n:
        yield n


def _trail(net: Net, org: str) -> list[bytes]:
    return [e.tx_id for e in queries.audit(net.store, org=org, proofs=False)]


def test_a_forged_signature_is_attributed_to_nobody(net: Net) -> None:
    # hospital-a's key id with a signature that does not verify: a forgery (or
    # a transaction of hospital-a's altered on the way)
    signed = net.emb.sign("hospital-a", "notary.record", {"digest": digest("lie")})
    tampered = signed.raw[:-1] + bytes([signed.raw[-1] ^ 1])
    (forged,) = net.emb.submit_raw([tampered], orderer="regulator")
    assert forged.code == "bad_signature"
    assert forged.tx_id not in _trail(net, "hospital-a")
    assert all(e.code != "bad_signature" for e in queries.audit(net.store, org="hospital-a"))


def test_a_strangers_key_is_attributed_to_nobody(net: Net) -> None:
    stranger = OrgKeys.generate("hospital-a").signing
    forged = net.send_with(stranger, "hospital-a", "notary.record", {"digest": digest("lie")})
    assert forged.code == "stale_key"
    assert forged.tx_id not in _trail(net, "hospital-a")


def test_a_rotated_out_key_is_attributed_to_nobody(net: Net) -> None:
    old = net.rotate("hospital-b")
    stale = net.send_with(old.signing, "hospital-b", "notary.record", {"digest": digest("old")})
    assert stale.code == "stale_key"
    assert stale.tx_id not in _trail(net, "hospital-b")


def test_what_the_organisation_signed_stays_in_its_trail_refused_or_not(net: Net) -> None:
    ds = net.register("hospital-a")
    mine = net.request(ds, "hospital-b")
    refused = net.send("hospital-b", "alerts.clear", {"alert": "0" * 64, "note": "x"})
    assert refused.code == "denied"
    trail = _trail(net, "hospital-b")
    assert mine.tx_id in trail and refused.tx_id in trail
