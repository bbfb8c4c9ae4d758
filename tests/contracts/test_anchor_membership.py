"""The anchor light client follows admissions and removals of consortium A's members by
vote: an admitted member's cosignature counts, a removed one's does not, and the quorum
is computed over A's membership at the checkpoint. Two real embedded consortia."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sharechain.codec import decode
from sharechain.contracts.anchors import BAD_ANCHOR, FOLLOW, KEYS, RECORD, followed, followed_key
from sharechain.contracts.ids import derive_id
from sharechain.contracts.membership import PROPOSE, VOTE
from sharechain.crypto.signing import SigningKey
from sharechain.ledger.anchored import follow_payload, keys_payload, record_payload
from sharechain.ledger.checkpoints import block_hashes, checkpoint_of, cosign, signed_checkpoint
from sharechain.sharing.embedded import Embedded
from sharechain.storage.datadir import OrgSpec, init_consortium

A_ORGS = (
    OrgSpec("bank-a", ("member", "admin")),
    OrgSpec("bank-b", ("member", "admin")),
    OrgSpec("regulator-a", ("member", "supervisor")),
)
B_ORGS = (OrgSpec("court", ("member", "admin")), OrgSpec("auditor", ("member",)))
BANK_C = SigningKey.from_seed(bytes([3]) * 32)


@dataclass
class Pair:
    a: Embedded
    b: Embedded
    keys: dict[str, SigningKey]

    def note(self, *signers: str) -> str:
        hashes = block_hashes(self.a.store)
        cp = checkpoint_of(hashes, f"sharechain/{hashes[0].hex()}")
        return signed_checkpoint(cp, [cosign(cp, o, self.keys[o]) for o in signers])

    def tracked(self) -> Any:
        genesis = block_hashes(self.a.store, 1)[0]
        return followed(decode(self.b.store.get(followed_key(genesis)) or b""))

    def record(self, note: str, **override: Any) -> Any:
        t = self.tracked()
        payload = record_payload(self.a.store, note, t.size, t.keys_at) | override
        return self.b.submit("auditor", RECORD, payload, check=False)

    def vote_through(self, payload: dict[str, Any]) -> None:
        """bank-a proposes, bank-b seconds (two admins: both are needed)."""
        proposed = self.a.submit("bank-a", PROPOSE, payload)
        pid = derive_id("proposal", proposed.tx_id)
        self.a.submit("bank-b", VOTE, {"proposal": pid, "approve": True})


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    init_consortium(tmp_path / "a", A_ORGS, consortium="banks")
    init_consortium(tmp_path / "b", B_ORGS, consortium="courts")
    a, b = Embedded(tmp_path / "a"), Embedded(tmp_path / "b")
    p = Pair(a, b, {o.id: a.keys(o.id).signing for o in A_ORGS} | {"bank-c": BANK_C})
    b.submit("court", FOLLOW, follow_payload(a.store))
    yield p
    a.close()
    b.close()


def _admit_bank_c(pair: Pair) -> None:
    pair.vote_through(
        {
            "action": "admit",
            "org": "bank-c",
            "roles": ["member"],
            "sign_key": BANK_C.public_key,
            "enc_key": bytes(32),
        }
    )
    assert pair.a.store.get("org/bank-c") is not None


def test_an_admitted_members_cosignature_counts(pair: Pair) -> None:
    _admit_bank_c(pair)
    note = pair.note("bank-a", "bank-c", "regulator-a")  # 3 of 4 members
    without = pair.record(note, evidence=None)
    assert without.code == BAD_ANCHOR and "unknown key bank-c/" in without.reason
    recorded = pair.record(note)
    assert recorded.ok, recorded.reason
    t = pair.tracked()
    assert dict(t.keys)["bank-c"] == BANK_C.public_key and len(t.keys) == 4


def test_a_removed_members_cosignature_is_refused_with_a_reason(pair: Pair) -> None:
    pair.vote_through({"action": "remove", "org": "regulator-a"})
    assert decode(pair.a.store.get("org/regulator-a") or b"")["status"] == "removed"
    pair.a.submit("bank-a", "notary.record", {"digest": bytes(32), "note": ""})
    # Before the removal evidence, 2 of 3 is a quorum that includes the removed member;
    # with it, regulator-a's cosignature no longer counts.
    r = pair.record(pair.note("bank-a", "regulator-a"))
    assert r.code == BAD_ANCHOR
    assert "cosigned by regulator-a, removed from the consortium by vote" in r.reason
    assert pair.tracked().size == 1  # nothing recorded
    ok = pair.record(pair.note("bank-a", "bank-b"))
    assert ok.ok, ok.reason
    t = pair.tracked()
    assert t.removed == ("regulator-a",) and "regulator-a" not in dict(t.keys)


def test_quorum_is_over_the_membership_at_the_checkpoint(pair: Pair) -> None:
    _admit_bank_c(pair)
    lone = pair.record(pair.note("bank-a", "bank-c"))  # 2 of 4: no quorum (3)
    assert lone.code == BAD_ANCHOR and "the quorum is 3 of 4" in lone.reason
    pair.vote_through({"action": "remove", "org": "regulator-a"})
    ok = pair.record(pair.note("bank-a", "bank-c"))  # 2 of 3 active: a quorum
    assert ok.ok, ok.reason


def test_anchor_keys_applies_admissions_under_a_recorded_checkpoint(pair: Pair) -> None:
    _admit_bank_c(pair)
    assert pair.record(pair.note("bank-a", "bank-b", "regulator-a"), evidence=None).ok
    t = pair.tracked()
    assert "bank-c" not in dict(t.keys)
    payload = keys_payload(pair.a.store, t.size, t.keys_at)
    assert payload is not None
    assert pair.b.submit("auditor", KEYS, payload).ok
    assert dict(pair.tracked().keys)["bank-c"] == BANK_C.public_key


def test_evidence_the_chain_refused_is_refused(pair: Pair) -> None:
    # A vote alone (its proposal left out of the evidence) cannot pass anything.
    proposed = pair.a.submit(
        "bank-a",
        PROPOSE,
        {
            "action": "admit",
            "org": "bank-c",
            "roles": ["member"],
            "sign_key": BANK_C.public_key,
            "enc_key": bytes(32),
        },
    )
    pid = derive_id("proposal", proposed.tx_id)
    pair.a.submit("bank-b", VOTE, {"proposal": pid, "approve": True})
    t = pair.tracked()
    note = pair.note("bank-a", "bank-c", "regulator-a")
    payload = record_payload(pair.a.store, note, t.size, t.keys_at)
    doc = json.loads(payload["evidence"])
    del doc["txs"][0]  # the proposal
    r = pair.record(note, evidence=json.dumps(doc).encode())
    assert r.code == BAD_ANCHOR and "not open in the evidence" in r.reason
