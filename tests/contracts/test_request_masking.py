"""access.request with `masking`: a requester asks for a masked release; the chain enforces it."""

from __future__ import annotations

from contracts_kit import Net

from sharechain.contracts import derive_id, queries
from sharechain.privacy.profiles import parse_profile, profile_digest, profile_form

RULES = "quasi_identifiers: [glucose]\ncolumns: {patient_id: drop, glucose: keep}\n"
LAB = parse_profile("k: 2\n" + RULES)
STRICT = parse_profile("k: 3\n" + RULES)


def registered(net: Net, name: str = "lab") -> bytes:
    profile = LAB if name == "lab" else STRICT
    net.ok("hospital-a", "profile.register", {"name": name, "profile": profile_form(profile)})
    return profile_digest(profile)


def ask(net: Net, ds: str, masking: bytes) -> object:
    payload = {"dataset": ds, "purpose": "treatment", "duration": 3_600_000, "masking": masking}
    return net.send("hospital-b", "access.request", payload)


def test_a_request_naming_a_profile_gets_a_masked_grant(net: Net) -> None:
    lab = registered(net)
    ds = net.register()
    r = ask(net, ds, lab)
    assert r.code == "valid", r.reason
    rid = derive_id("request", r.tx_id)
    assert queries.request(net.store, rid).masking == lab.hex()
    net.ok("hospital-a", "access.approve", {"request": rid})
    gid = derive_id("grant", net.ok("regulator", "access.approve", {"request": rid}).tx_id)
    assert queries.grant(net.store, gid).grant.masking == lab.hex()
    # The raw dataset's key is never released on this grant, as for a policy's masking.
    refused = net.release(gid)
    assert refused.code == "masked", refused.reason
    # Without `masking` the same dataset is granted raw.
    plain = net.granted(ds, "clinic-c")
    assert queries.grant(net.store, plain).grant.masking == ""


def test_the_profile_must_be_registered(net: Net) -> None:
    ds = net.register()
    r = ask(net, ds, profile_digest(LAB))
    assert r.code == "not_found" and "not registered" in r.reason
    bad = ask(net, ds, b"short")
    assert bad.code == "bad_payload" and "masking" in bad.reason


def test_a_request_cannot_swap_the_policys_profile(net: Net) -> None:
    lab, strict = registered(net), registered(net, "strict")
    ds = net.register(policy={"masking": {"confidential": strict.hex()}})
    swapped = ask(net, ds, lab)
    assert swapped.code == "denied" and strict.hex() in swapped.reason
    same = ask(net, ds, strict)
    assert same.code == "valid", same.reason
    rid = derive_id("request", same.tx_id)
    assert queries.request(net.store, rid).masking == strict.hex()


def test_auto_approval_rules_see_the_asked_masking(net: Net) -> None:
    lab = registered(net)
    ds = net.register(policy={"auto_approve": ['request.masking != ""']})
    masked = ask(net, ds, lab)
    assert masked.code == "valid", masked.reason
    req = queries.request(net.store, derive_id("request", masked.tx_id))
    assert req.status == "granted" and req.masking == lab.hex()
    raw = net.request(ds, "clinic-c")
    assert queries.request(net.store, derive_id("request", raw.tx_id)).status == "open"
