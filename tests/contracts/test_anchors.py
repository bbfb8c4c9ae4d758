"""anchor.follow / keys / record: consortium B runs a light client of consortium A, two
real embedded consortia side by side; every check refuses with its reason."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sharechain.codec import decode
from sharechain.contracts.anchors import (
    BAD_ANCHOR,
    FOLLOW,
    KEYS,
    RECORD,
    checkpoint_key,
    followed,
    followed_key,
    recorded,
)
from sharechain.contracts.membership import ROTATE, ROTATE_DOMAIN, rotation_message
from sharechain.crypto.signing import SigningKey
from sharechain.ledger.anchored import follow_payload, keys_payload, record_payload
from sharechain.ledger.checkpoints import block_hashes, checkpoint_of, cosign, signed_checkpoint
from sharechain.ledger.transactions import sign_transaction
from sharechain.sharing.embedded import Embedded
from sharechain.storage.datadir import OrgSpec, init_consortium

A_ORGS = (
    OrgSpec("bank-a", ("member", "admin")),
    OrgSpec("bank-b", ("member",)),
    OrgSpec("regulator-a", ("member", "supervisor")),
)
B_ORGS = (OrgSpec("court", ("member", "admin")), OrgSpec("auditor", ("member",)))
NEW_KEY = SigningKey.from_seed(bytes([9]) * 32)


@dataclass
class Pair:
    """Consortium A (followed) and consortium B (the follower)."""

    a: Embedded
    b: Embedded
    keys: dict[str, SigningKey]
    """A's members' current signing keys (the test's own view)."""

    @property
    def genesis_a(self) -> bytes:
        return block_hashes(self.a.store, 1)[0]

    def note(
        self, *signers: str, size: int | None = None, keys: dict[str, Any] | None = None
    ) -> str:
        hashes = block_hashes(self.a.store, size)
        cp = checkpoint_of(hashes, f"sharechain/{hashes[0].hex()}")
        use = keys or self.keys
        return signed_checkpoint(cp, [cosign(cp, o, use[o]) for o in signers])

    def notarise(self, org: str = "bank-a") -> bytes:
        return self.a.submit(org, "notary.record", {"digest": self.a.rng(32), "note": ""}).tx_id

    def tracked(self) -> Any:
        return followed(decode(self.b.store.get(followed_key(self.genesis_a)) or b""))

    def record(self, note: str, **override: Any) -> Any:
        t = self.tracked()
        payload = record_payload(self.a.store, note, t.size, t.keys_at) | override
        return self.b.submit("auditor", RECORD, payload, check=False)

    def rotate(self, org: str, new: SigningKey = NEW_KEY) -> bytes:
        enc = bytes(32)
        proof = new.sign(ROTATE_DOMAIN, rotation_message(org, new.public_key, enc))
        stx = sign_transaction(
            self.keys[org],
            ROTATE,
            org,
            {"sign_key": new.public_key, "enc_key": enc, "proof": proof},
            now=self.a.now,
            rng=self.a.rng,
        )
        (receipt,) = self.a.submit_raw([stx.raw], orderer="bank-a")
        assert receipt.ok, receipt.reason
        self.keys[org] = new
        return stx.id


def _consortium(path: Path, orgs: tuple[OrgSpec, ...], name: str) -> Embedded:
    init_consortium(path, orgs, consortium=name)
    return Embedded(path)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    a = _consortium(tmp_path / "a", A_ORGS, "banks")
    b = _consortium(tmp_path / "b", B_ORGS, "courts")
    p = Pair(a, b, {o.id: a.keys(o.id).signing for o in A_ORGS})
    b.submit("court", FOLLOW, follow_payload(a.store))
    yield p
    a.close()
    b.close()


def test_follow_then_record_a_quorum_checkpoint(pair: Pair) -> None:
    t = pair.tracked()
    assert (t.size, t.quorum, t.keys_at) == (1, 0, (0, 0))
    assert dict(t.keys) == {o: k.public_key for o, k in pair.keys.items()}
    pair.notarise()
    note = pair.note("bank-a", "regulator-a")
    receipt = pair.record(note)
    assert receipt.ok, receipt.reason
    entry = recorded(decode(pair.b.store.get(checkpoint_key(pair.genesis_a, 2)) or b""))
    assert (entry.note, entry.size, entry.recorder, entry.tx_id) == (
        note,
        2,
        "auditor",
        receipt.tx_id,
    )
    assert pair.tracked().size == 2
    again = pair.record(note)
    assert (again.code, "recorded already" in again.reason) == ("duplicate", True)


def test_follow_is_for_admins_once_and_checks_the_genesis_evidence(pair: Pair) -> None:
    payload = follow_payload(pair.a.store)
    dup = pair.b.submit("court", FOLLOW, payload, check=False)
    assert dup.code == "duplicate"
    assert pair.b.submit("auditor", FOLLOW, payload, check=False).code == "denied"
    doc = json.loads(payload["evidence"])
    doc["txs"][0]["envelope"] = doc["txs"][0]["envelope"][:-4] + "AAA="
    forged = pair.b.submit("court", FOLLOW, {"evidence": json.dumps(doc).encode()}, check=False)
    assert forged.code == BAD_ANCHOR and "is not in block 0" in forged.reason
    huge = pair.b.submit("court", FOLLOW, {"evidence": b" " * 70_000}, check=False)
    assert huge.code == "bad_payload"


def test_too_few_cosigners_are_refused(pair: Pair) -> None:
    pair.notarise()
    r = pair.record(pair.note("bank-a"))
    assert r.code == BAD_ANCHOR and "the quorum is 2 of 3" in r.reason


def test_a_consortium_not_followed_or_a_checkpoint_of_another_is_refused(
    pair: Pair, tmp_path: Path
) -> None:
    c = _consortium(tmp_path / "c", A_ORGS, "other-banks")
    try:
        hashes = block_hashes(c.store)
        cp = checkpoint_of(hashes, f"sharechain/{hashes[0].hex()}")
        note_c = signed_checkpoint(cp, [cosign(cp, o.id, c.keys(o.id).signing) for o in A_ORGS])
        unknown = pair.b.submit(
            "auditor", RECORD, {"origin": cp.origin, "checkpoint": note_c}, check=False
        )
        assert unknown.code == "not_found" and "does not follow" in unknown.reason
        pretend = pair.record(note_c, origin=f"sharechain/{pair.genesis_a.hex()}", proof=[])
        assert pretend.code == BAD_ANCHOR and "checkpoint is of sharechain/" in pretend.reason
    finally:
        c.close()


def test_a_shrinking_tree_is_refused(pair: Pair) -> None:
    for _ in range(3):
        pair.notarise()
    small = pair.note("bank-a", "bank-b", size=2)
    assert pair.record(pair.note("bank-a", "bank-b")).ok
    payload = {"origin": f"sharechain/{pair.genesis_a.hex()}", "checkpoint": small, "proof": []}
    r = pair.b.submit("auditor", RECORD, payload, check=False)
    assert r.code == BAD_ANCHOR and "fewer than the 4" in r.reason


def test_a_forged_consistency_proof_is_refused(pair: Pair) -> None:
    pair.notarise()
    assert pair.record(pair.note("bank-a", "bank-b")).ok
    pair.notarise()
    note = pair.note("bank-a", "bank-b")
    t = pair.tracked()
    proof = record_payload(pair.a.store, note, t.size, t.keys_at)["proof"]
    r = pair.record(note, proof=[bytes(32)] * len(proof))
    assert r.code == BAD_ANCHOR and "not consistent" in r.reason
    r = pair.record(note, proof=[bytes(31)])
    assert r.code == "bad_payload"


def test_rotations_with_the_record_move_the_roster(pair: Pair) -> None:
    old = pair.keys["bank-b"]
    pair.rotate("bank-b")
    pair.notarise()
    note = pair.note("bank-b", "regulator-a")  # bank-b signs with its new key
    assert "evidence" in record_payload(pair.a.store, note, 1, (0, 0))
    assert pair.record(note).ok, pair.record(note).reason
    assert dict(pair.tracked().keys)["bank-b"] == NEW_KEY.public_key
    pair.notarise()
    stale = pair.note("bank-b", "regulator-a", keys={**pair.keys, "bank-b": old})
    r = pair.record(stale)
    assert r.code == BAD_ANCHOR and "unknown key bank-b/" in r.reason
    without = pair.record(note := pair.note("bank-b", "regulator-a"))
    assert without.ok, (note, without.reason)


def test_anchor_keys_applies_rotations_under_a_recorded_checkpoint(pair: Pair) -> None:
    rot = pair.rotate("bank-b")
    note = pair.note("bank-a", "regulator-a")  # covers the rotation, signed without bank-b
    t = pair.tracked()
    assert pair.record(note, evidence=None).ok
    assert dict(pair.tracked().keys)["bank-b"] != NEW_KEY.public_key
    payload = keys_payload(pair.a.store, 2, t.keys_at)
    assert payload is not None
    (entry,) = json.loads(payload["evidence"])["txs"]
    assert hashlib.sha256(base64.b64decode(entry["envelope"])).digest() == rot
    forged = json.loads(payload["evidence"])
    forged["txs"][0]["envelope"] = forged["txs"][0]["envelope"][:-4] + "AAA="
    bad = pair.b.submit(
        "auditor", KEYS, payload | {"evidence": json.dumps(forged).encode()}, check=False
    )
    assert bad.code == BAD_ANCHOR
    missing = pair.b.submit("auditor", KEYS, payload | {"size": 9}, check=False)
    assert missing.code == "not_found"
    assert pair.b.submit("auditor", KEYS, payload).ok
    assert pair.tracked().keys_at[0] == 1
    assert dict(pair.tracked().keys)["bank-b"] == NEW_KEY.public_key
    replay = pair.b.submit("auditor", KEYS, payload, check=False)
    assert replay.code == BAD_ANCHOR and "chain order" in replay.reason
    pair.notarise()
    old = pair.a.keys("bank-b").signing
    stale = pair.record(pair.note("bank-b", "bank-a", keys={**pair.keys, "bank-b": old}))
    assert stale.code == BAD_ANCHOR and "unknown key" in stale.reason


def test_deeply_nested_evidence_is_refused_before_parsing(pair: Pair) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    for raw in (deep[:30_000] + deep[-30_000:], b'{"blocks": [[[[[[[["x"]]]]]]]], "txs": []}'):
        r = pair.b.submit("court", FOLLOW, {"evidence": raw}, check=False)
        assert r.code == "bad_payload" and "deeper than 8" in r.reason
    quoted = b'{"blocks": ["[[[[[[[[[[\\"{{{{{{{{{{"], "txs": []}'
    r = pair.b.submit("court", FOLLOW, {"evidence": quoted}, check=False)
    assert r.code == BAD_ANCHOR  # brackets inside strings do not count as nesting
