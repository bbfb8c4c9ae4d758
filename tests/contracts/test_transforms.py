"""dataset.transform and masked grants: the raw key is never released; budgets add up."""

from __future__ import annotations

from typing import Any

from contracts_kit import Net, digest

from sharechain.contracts import derive_id, queries
from sharechain.contracts.budgets import budget_key
from sharechain.contracts.transforms import transform_key
from sharechain.privacy.profiles import parse_profile, profile_digest, profile_form

PROFILE = parse_profile(
    """\
k: 2
quasi_identifiers: [glucose]
columns:
  patient_id: {rule: tokenize}
  glucose: {rule: generalise, width: 10}
  salary: {rule: noise, epsilon: 0.5, sensitivity: 1000}
"""
)
DIGEST = profile_digest(PROFILE)


def masked_dataset(net: Net, budget: Any = None) -> str:
    net.ok("hospital-a", "profile.register", {"name": "lab", "profile": profile_form(PROFILE)})
    policy: dict[str, Any] = {"masking": {"confidential": DIGEST.hex()}}
    if budget is not None:
        policy["privacy_budget"] = budget
    return net.register(policy=policy)


def transform(net: Net, gid: str, n: int = 0, **over: Any) -> Any:
    payload = {
        "grant": gid,
        "profile": DIGEST,
        "source_digest": digest("plain"),
        "plaintext_digest": digest(f"masked-{n}"),
        "ciphertext_digest": digest(f"masked-cipher-{n}"),
        "segment_root": digest(f"masked-root-{n}"),
        "size": 100,
        "k": 2,
        "l": 0,
        "suppressed": 1,
        "rows": 9,
        "epsilon": "1/2",
        **over,
    }
    return net.send("hospital-a", "dataset.transform", payload)


def masked_epoch(net: Net, ds: str, n: int = 0) -> Any:
    body = {
        "dataset": ds,
        "epoch": 1,
        "ciphertext_digest": digest(f"masked-cipher-{n}"),
        "segment_root": digest(f"masked-root-{n}"),
        "custody": "owner",
        "holders": ["hospital-a"],
        "threshold": 1,
    }
    return net.send("hospital-a", "dataset.epoch", body)


def release(net: Net, gid: str, dataset: str | None) -> Any:
    payload: dict[str, Any] = {
        "grant": gid,
        "to": "hospital-b",
        "epoch": 1,
        "wrapped_key_digest": digest("wk"),
    }
    if dataset is not None:
        payload["dataset"] = dataset
    return net.send("hospital-a", "grant.key-release", payload)


def test_a_policy_names_only_registered_profiles(net: Net) -> None:
    payload = {
        "title": "x",
        "plaintext_digest": digest("p"),
        "ciphertext_digest": digest("c"),
        "size": 1,
        "policy": {"masking": {"confidential": DIGEST.hex()}},
    }
    r = net.send("hospital-a", "dataset.register", payload)
    assert r.code == "not_found" and "not registered" in r.reason
    assert masked_dataset(net)


def test_no_release_before_the_masked_version_and_never_of_the_raw_dataset(net: Net) -> None:
    raw = masked_dataset(net)
    gid = net.granted(raw)
    assert queries.grant(net.store, gid).grant.masking == DIGEST.hex()
    waiting = release(net, gid, raw)
    assert waiting.code == "masked" and "not produced yet" in waiting.reason
    r = transform(net, gid)
    assert r.code == "valid", r.reason
    masked = derive_id("dataset", r.tx_id)
    assert masked_epoch(net, masked).code == "valid"
    grant = queries.grant(net.store, gid).grant
    assert (grant.dataset, grant.source) == (masked, raw)
    refused = release(net, gid, raw)
    assert refused.code == "masked" and raw in refused.reason
    assert release(net, gid, None).code == "masked"
    assert release(net, gid, masked).code == "valid"
    assert queries.grant(net.store, gid).grant.uses == 1
    record = net.state(transform_key(gid))
    assert (record["k"], record["suppressed"], record["epsilon"]) == (2, 1, "1/2")
    assert record["source_digest"] == digest("plain") and record["dataset"] == masked
    lineage = queries.lineage(net.store, raw)
    assert (raw, masked, "derived") in lineage.edges
    trail = [e.type for e in queries.audit(net.store, ds=raw)]
    assert "dataset.transform" in trail
    again = net.send(
        "clinic-c", "access.request", {"dataset": masked, "purpose": "x", "duration": 1}
    )
    assert again.code == "denied" and "masked release" in again.reason


def test_the_transform_is_checked(net: Net) -> None:
    raw = masked_dataset(net)
    gid = net.granted(raw)
    bad_k = transform(net, gid, k=1)
    assert bad_k.code == "bad_payload" and "k=2" in bad_k.reason
    assert transform(net, gid, epsilon="1").code == "bad_payload"
    assert transform(net, gid, profile=digest("other")).code == "bad_payload"
    assert transform(net, gid, source_digest=digest("other")).code == "digest_mismatch"
    payload = {"grant": gid, "profile": DIGEST}
    assert net.send("hospital-b", "dataset.transform", payload).code == "denied"
    assert transform(net, gid).code == "valid"
    assert transform(net, gid, 1).code == "duplicate"
    plain = net.granted(net.register())
    assert transform(net, plain, 2).code == "bad_state"


def test_the_privacy_budget_refuses_the_approval_and_the_transform(net: Net) -> None:
    raw = masked_dataset(net, budget="1")
    for n in (0, 1):
        gid = net.granted(raw)
        assert transform(net, gid, n).code == "valid"
    assert net.state(budget_key(raw, "hospital-b"))["spent"] == "1"
    rid = derive_id("request", net.request(raw).tx_id)
    net.ok("hospital-a", "access.approve", {"request": rid})
    over = net.send("regulator", "access.approve", {"request": rid})
    assert over.code == "over_budget" and "budget of 1" in over.reason
    other = net.granted(raw, "clinic-c")  # the budget is per grantee
    assert transform(net, other, 3).code == "valid"
