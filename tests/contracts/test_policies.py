"""Policies: the parser, k-of-n approval, CEL auto-approval and the request terms."""

from __future__ import annotations

import pytest
from contracts_kit import Net

from sharechain.contracts import derive_id, queries
from sharechain.contracts.policies import (
    JOINT,
    K_OF_N,
    Approval,
    Policy,
    PolicyError,
    auto_approved,
    parse_duration,
    policy_from_mapping,
    policy_to_value,
)

RULE = 'requester.org in ["hospital-b"] && request.purpose == "treatment"'


def test_default_policy_is_owner_plus_supervisor() -> None:
    assert policy_from_mapping(None) == Policy()
    assert policy_from_mapping({}).approval == Approval(JOINT)


def test_parse_full_policy_and_round_trip() -> None:
    p = policy_from_mapping(
        {
            "approval": {"any": 2, "of": ["hospital-a", "regulator", "insurer-d"]},
            "auto_approve": [RULE],
            "purposes": ["treatment", "research"],
            "max_duration": "7d",
            "max_uses": 5,
            "masking": {"confidential": "ab" * 32, "secret": "cd" * 32},
            "privacy_budget": 1.5,
        }
    )
    assert p.approval == Approval(K_OF_N, 2, ("hospital-a", "regulator", "insurer-d"))
    assert p.max_duration == 7 * 86_400_000
    assert p.masking_for("secret") == "cd" * 32
    assert p.privacy_budget == "3/2"
    assert p.masking_for("public") == ""
    assert policy_from_mapping(policy_to_value(p)) == p


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"auto_approve": ["request.purpose =="]}, "does not parse"),
        ({"auto_approve": ["now() > 0"]}, "only CEL's standard functions"),
        ({"approval": {"any": 3, "of": ["a", "b"]}}, "approval.any"),
        ({"approval": "anyone"}, "approval must be"),
        ({"max_duration": "forever"}, "max_duration"),
        ({"max_uses": -1}, "max_uses"),
        ({"masking": {"top-secret": "x"}}, "top-secret"),
        ({"masking": {"secret": "pseudonymise"}}, "64 hex digits"),
        ({"privacy_budget": 0}, "privacy_budget"),
        ({"privacy_budget": "lots"}, "privacy_budget"),
        ({"purposes": "treatment"}, "purposes"),
        ({"colour": "blue"}, "unknown policy field"),
    ],
)
def test_bad_policies_are_refused_with_a_clear_message(
    mapping: dict[str, object], message: str
) -> None:
    with pytest.raises(PolicyError, match=message):
        policy_from_mapping(mapping)


def test_durations() -> None:
    assert parse_duration("90m") == 5_400_000
    assert parse_duration(1500) == 1500
    with pytest.raises(PolicyError):
        parse_duration(0)


def test_auto_approval_is_deterministic_and_errors_mean_no() -> None:
    p = policy_from_mapping({"auto_approve": ["request.size > 3", RULE]})
    env = {"requester": {"org": "hospital-b"}, "request": {"purpose": "treatment"}}
    assert auto_approved(p, env) == RULE  # the first rule fails to evaluate: not a match
    assert auto_approved(p, {**env, "requester": {"org": "clinic-c"}}) is None


def test_bad_expression_is_refused_at_registration_with_the_parse_error(net: Net) -> None:
    r = net.send(
        "hospital-a",
        "dataset.register",
        {
            "title": "t",
            "plaintext_digest": b"\0" * 32,
            "ciphertext_digest": b"\0" * 32,
            "size": 1,
            "policy": {"auto_approve": ["requester.org in ["]},
        },
    )
    assert r.code == "bad_expression"
    assert "Syntax error" in r.reason


def test_cel_rule_grants_with_the_request(net: Net) -> None:
    ds = net.register(policy={"auto_approve": [RULE]})
    r = net.request(ds, "hospital-b")
    gid = derive_id("grant", r.tx_id)
    view = queries.grant(net.store, gid)
    assert view.status == "active" and view.grant.auto_rule == RULE
    rid = derive_id("request", r.tx_id)
    assert queries.request(net.store, rid).status == "granted"
    other = derive_id("request", net.request(ds, "clinic-c").tx_id)
    assert queries.request(net.store, other).status == "open"


def test_k_of_n_approval(net: Net) -> None:
    ds = net.register(policy={"approval": {"any": 2, "of": ["regulator", "insurer-d", "clinic-c"]}})
    rid = derive_id("request", net.request(ds, "hospital-b").tx_id)
    assert net.send("hospital-a", "access.approve", {"request": rid}).code == "denied"
    net.ok("clinic-c", "access.approve", {"request": rid})
    assert net.send("clinic-c", "access.approve", {"request": rid}).code == "duplicate"
    assert queries.request(net.store, rid).status == "open"
    r = net.ok("insurer-d", "access.approve", {"request": rid})
    assert queries.request(net.store, rid).grant == derive_id("grant", r.tx_id)


def test_joint_approval_needs_a_supervisor_besides_the_owner(net: Net) -> None:
    ds = net.register("regulator")  # the owner is itself a supervisor
    rid = derive_id("request", net.request(ds, "hospital-b").tx_id)
    net.ok("regulator", "access.approve", {"request": rid})
    assert queries.request(net.store, rid).status == "open"


def test_request_terms_purpose_duration_fields_and_masking(net: Net) -> None:
    ds = net.register(
        policy={
            "purposes": ["treatment"],
            "max_duration": "1h",
        }
    )
    bad_purpose = net.send(
        "hospital-b", "access.request", {"dataset": ds, "purpose": "marketing", "duration": 1}
    )
    assert bad_purpose.code == "denied" and "marketing" in bad_purpose.reason
    too_long = {"dataset": ds, "purpose": "treatment", "duration": 3_600_001}
    assert net.send("hospital-b", "access.request", too_long).code == "denied"
    no_column = {"dataset": ds, "purpose": "treatment", "duration": 1, "fields": ["name"]}
    assert net.send("hospital-b", "access.request", no_column).code == "bad_payload"
    gid = net.granted(ds)
    assert queries.grant(net.store, gid).grant.masking == ""


def test_reject_and_cancel_close_the_request(net: Net) -> None:
    ds = net.register()
    rid = derive_id("request", net.request(ds).tx_id)
    net.ok("regulator", "access.reject", {"request": rid, "reason": "purpose too vague"})
    assert queries.request(net.store, rid).status == "rejected"
    assert queries.inbox(net.store, "hospital-a") == []
    assert net.send("hospital-a", "access.approve", {"request": rid}).code == "bad_state"
    rid2 = derive_id("request", net.request(ds).tx_id)
    net.ok("hospital-b", "access.cancel", {"request": rid2})
    assert queries.request(net.store, rid2).status == "cancelled"


def test_every_yaml_example_in_the_docs_parses() -> None:
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).parents[2] / "docs" / "policies.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert len(blocks) >= 4
    for block in blocks:
        policy_from_mapping(yaml.safe_load(block))
