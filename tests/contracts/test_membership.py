"""Membership: admission and removal by admin votes, key rotation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from contracts_kit import Net, rotation_payload

from sharechain.contracts import derive_id, queries
from sharechain.crypto.keyfile import OrgKeys


def _propose_admit(net: Net, org: str) -> tuple[str, OrgKeys]:
    keys = OrgKeys.generate(org)
    payload = {
        "action": "admit",
        "org": org,
        "roles": ["member"],
        "sign_key": keys.signing.public_key,
        "enc_key": keys.encryption_public,
        "name": "Lab E",
    }
    return derive_id("proposal", net.ok("hospital-a", "org.propose", payload).tx_id), keys


def test_admission_needs_a_majority_of_admins_by_default(net: Net) -> None:
    # four admins (hospital-a, hospital-b, regulator, insurer-d): three votes admit
    pid, keys = _propose_admit(net, "lab-e")
    net.ok("hospital-b", "org.vote", {"proposal": pid, "approve": True})
    assert net.state("org/lab-e") is None
    assert net.send("hospital-b", "org.vote", {"proposal": pid}).code == "duplicate"
    net.ok("regulator", "org.vote", {"proposal": pid, "approve": True})
    org = net.state("org/lab-e")
    assert org["status"] == "active" and org["sign_key"] == keys.signing.public_key
    assert net.send("insurer-d", "org.vote", {"proposal": pid}).code == "bad_state"
    net.emb.datadir.save_keys(keys)
    net.ok("lab-e", "notary.record", {"digest": b"\7" * 32})  # the new member can act


def test_admission_threshold_is_a_governance_setting(
    make_net: Callable[[Mapping[str, Any]], Net],
) -> None:
    net = make_net({"admission_votes": 1})
    pid, _ = _propose_admit(net, "lab-e")
    assert net.state(f"proposal/{pid}")["status"] == "passed"


def test_enough_no_votes_fail_a_proposal(net: Net) -> None:
    pid, _ = _propose_admit(net, "lab-e")
    net.ok("hospital-b", "org.vote", {"proposal": pid, "approve": False})
    net.ok("regulator", "org.vote", {"proposal": pid, "approve": False})
    assert [p.status for p in queries.proposals(net.store)] == ["failed"]
    assert net.state("org/lab-e") is None


def test_removal_cancels_requests_and_revokes_grants(net: Net) -> None:
    ds = net.register()
    gid = net.granted(ds, "clinic-c")
    rid = derive_id("request", net.request(ds, "clinic-c").tx_id)
    net.remove("clinic-c")
    assert net.state("org/clinic-c")["status"] == "removed"
    assert queries.request(net.store, rid).status == "cancelled"
    assert queries.grant(net.store, gid).status == "revoked"
    assert queries.inbox(net.store, "hospital-a") == []
    r = net.send("clinic-c", "notary.record", {"digest": b"\1" * 32})
    assert r.code == "sender_removed"
    audit = [(e.type, e.code) for e in queries.audit(net.store, org="clinic-c")]
    # the trail ends with the vote that removed it; the refused attempt proves
    # no signature of clinic-c (the ledger checks removal first), so it is
    # attributed to nobody
    assert ("org.propose", "valid") in audit and audit[-1] == ("org.vote", "valid")


def test_removal_cancels_requests_for_its_own_datasets(net: Net) -> None:
    ds = net.register("clinic-c")
    first = derive_id("request", net.request(ds, "hospital-b").tx_id)
    net.ok("clinic-c", "access.approve", {"request": first})
    gid = derive_id("grant", net.ok("regulator", "access.approve", {"request": first}).tx_id)
    rid = derive_id("request", net.request(ds, "insurer-d").tx_id)
    net.remove("clinic-c")
    req = queries.request(net.store, rid)
    assert req.status == "cancelled"
    assert queries.inbox(net.store, "regulator") == []
    assert queries.grant(net.store, gid).status == "active"  # lawfully granted before


def test_key_rotation_retires_the_old_key(net: Net) -> None:
    old = net.rotate("clinic-c")
    r = net.send_with(old.signing, "clinic-c", "notary.record", {"digest": b"\2" * 32})
    assert r.code == "stale_key"
    net.ok("clinic-c", "notary.record", {"digest": b"\3" * 32})  # the new key signs
    # Whoever holds the old key is not clinic-c any more: the refusal stays in
    # its block, attributed to nobody (see tests/security/test_contract_audit_attribution.py).
    trail = queries.audit(net.store, org="clinic-c")
    assert r.tx_id not in [e.tx_id for e in trail]
    assert net.store.tx_location(r.tx_id) is not None


def test_key_rotation_needs_proof_of_the_new_key(net: Net) -> None:
    forged = rotation_payload(OrgKeys.generate("clinic-c"))
    forged["sign_key"] = OrgKeys.generate("clinic-c").signing.public_key
    r = net.send("clinic-c", "org.rotate-key", forged)
    assert r.code == "denied" and "proof" in r.reason


def test_cannot_admit_an_existing_id_or_remove_oneself(net: Net) -> None:
    keys = OrgKeys.generate("clinic-c")
    payload = {
        "action": "admit",
        "org": "clinic-c",
        "roles": ["member"],
        "sign_key": keys.signing.public_key,
        "enc_key": keys.encryption_public,
    }
    assert net.send("hospital-a", "org.propose", payload).code == "duplicate"
    remove_self = {"action": "remove", "org": "hospital-a"}
    assert net.send("hospital-a", "org.propose", remove_self).code == "denied"
