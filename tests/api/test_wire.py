"""One codec, two renderings: `jsonable` for the API, `to_json` for people (`--json`)."""

from __future__ import annotations

from samples import sample

from sharechain.api.wire import iso, jsonable, to_json
from sharechain.contracts.datasets import Dataset
from sharechain.contracts.grants import Grant
from sharechain.contracts.policies import Approval, Policy, policy_to_value
from sharechain.contracts.queries import AuditEntry, GrantView, Lineage


def test_iso_renders_block_time_in_utc_with_milliseconds() -> None:
    assert iso(0) == "1970-01-01T00:00:00.000Z"
    assert iso(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"


def test_the_api_rendering_is_the_records_fields_and_nothing_more() -> None:
    ds = sample(Dataset)
    out = jsonable(ds)
    assert list(out) == list(Dataset.__dataclass_fields__)
    assert out["plaintext_digest"] == ds.plaintext_digest.hex()
    assert out["tags"] == list(ds.tags)
    assert out["policy"]["approval"] == {
        "mode": ds.policy.approval.mode,
        "k": ds.policy.approval.k,
        "of": list(ds.policy.approval.of),
    }
    assert jsonable({1: (b"\x00", None)}) == {"1": ["00", None]}


def test_the_readable_rendering_adds_times_statuses_and_policy_maps() -> None:
    grant = sample(Grant)
    out = to_json(GrantView(grant, "expired"))
    assert out["effective_status"] == "expired" and out["status"] == grant.status
    assert out["issued_at_iso"] == iso(grant.issued_at)
    assert out["expires_at_iso"] == iso(grant.expires_at)
    assert "grant" not in out  # flattened: the grant's fields and its effective status
    policy = Policy(Approval("k-of-n", 1, ("a", "b")), max_uses=3)
    assert to_json(policy) == policy_to_value(policy) == {**policy_to_value(policy)}
    assert to_json(policy)["approval"] == {"any": 1, "of": ["a", "b"]}


def test_the_readable_lineage_names_its_edges() -> None:
    node = sample(Dataset)
    graph = Lineage(node.id, (node,), ((node.id, "child", "derived"),))
    out = to_json(graph)
    assert out["edges"] == [{"from": node.id, "to": "child", "kind": "derived"}]
    assert out["nodes"][0]["created_at_iso"] == iso(node.created_at)
    assert jsonable(graph)["edges"] == [[node.id, "child", "derived"]]


def test_an_audit_entry_gains_its_time_for_people_only() -> None:
    entry = AuditEntry(b"\x01" * 32, 1, 0, 1_700_000_000_000, "t", "org", "valid", "", None)
    assert to_json(entry) == {**entry.to_json(), "time": "2023-11-14T22:13:20.000Z"}
    assert jsonable(entry) == entry.to_json()
