"""Datasets: register, version, derive, retire, purge; catalogue and lineage queries."""

from __future__ import annotations

import dataclasses

import pytest
from contracts_kit import Net, digest

from sharechain.contracts import derive_id, queries
from sharechain.errors import IntegrityError, NotFoundError
from sharechain.ledger.proofs import verify_tx_proof


def _derive(net: Net, org: str, parents: list[str], label: str) -> str:
    payload = {
        "parents": parents,
        "transformation": f"masked ({label})",
        "title": label,
        "plaintext_digest": digest(label),
        "ciphertext_digest": digest(label + "c"),
        "size": 5,
        "tags": ["derived"],
    }
    return derive_id("dataset", net.ok(org, "dataset.derive", payload).tx_id)


def test_register_records_every_field(net: Net) -> None:
    ds = net.register()
    d = queries.dataset(net.store, ds)
    assert (d.owner, d.classification, d.custody, d.version, d.status) == (
        "hospital-a",
        "confidential",
        "owner",
        1,
        "active",
    )
    assert d.schema == (("patient_id", "string"), ("glucose", "float"))
    assert d.plaintext_digest == digest("plain") and d.segment_root == digest("segments")


def test_register_refuses_bad_fields(net: Net) -> None:
    base = {"title": "t", "plaintext_digest": b"\0" * 32, "ciphertext_digest": b"\0" * 32}
    assert net.send("hospital-a", "dataset.register", {**base, "size": -1}).code == "bad_payload"
    bad_class = {**base, "size": 1, "classification": "top"}
    assert net.send("hospital-a", "dataset.register", bad_class).code == "bad_payload"
    short = {**base, "size": 1, "plaintext_digest": b"\0"}
    assert net.send("hospital-a", "dataset.register", short).code == "bad_payload"


def test_new_version_links_to_the_previous(net: Net) -> None:
    v1 = net.register()
    r = net.ok(
        "hospital-a",
        "dataset.version",
        {
            "dataset": v1,
            "plaintext_digest": digest("p2"),
            "ciphertext_digest": digest("c2"),
            "size": 2048,
        },
    )
    v2 = derive_id("dataset", r.tx_id)
    old, new = queries.dataset(net.store, v1), queries.dataset(net.store, v2)
    assert (old.status, old.next) == ("superseded", v2)
    assert (new.version, new.previous, new.title) == (2, v1, old.title)
    req = net.send("hospital-b", "access.request", {"dataset": v1, "purpose": "x", "duration": 1})
    assert req.code == "bad_state" and v2 in req.reason


def test_derive_builds_lineage_and_needs_a_grant_on_each_parent(net: Net) -> None:
    a = net.register()
    b = net.register("hospital-b")
    payload = {
        "parents": [a, b],
        "transformation": "join",
        "title": "j",
        "plaintext_digest": digest("j"),
        "ciphertext_digest": digest("jc"),
        "size": 1,
    }
    assert net.send("hospital-b", "dataset.derive", payload).code == "denied"
    net.granted(a, "hospital-b")
    joined = _derive(net, "hospital-b", [a, b], "joined")
    masked = _derive(net, "hospital-b", [joined], "masked")
    graph = queries.lineage(net.store, a)
    assert {d.id for d in graph.nodes} == {a, b, joined, masked}
    assert set(graph.edges) == {
        (a, joined, "derived"),
        (b, joined, "derived"),
        (joined, masked, "derived"),
    }
    assert [e.type for e in queries.audit(net.store, ds=a)][-1] == "dataset.derive"


def test_retire_and_purge(net: Net) -> None:
    ds = net.register()
    gid = net.granted(ds)
    rid = derive_id("request", net.request(ds, "clinic-c").tx_id)
    net.ok("hospital-a", "dataset.retire", {"dataset": ds})
    assert queries.request(net.store, rid).status == "cancelled"
    req = net.send("clinic-c", "access.request", {"dataset": ds, "purpose": "x", "duration": 1})
    assert req.code == "bad_state"
    assert net.release(gid).code == "valid"  # retiring keeps existing grants
    net.ok("regulator", "dataset.purge", {"dataset": ds, "reason": "consent withdrawn"})
    d = net.state(f"dataset/{ds}")
    assert d["status"] == "purged" and d["purged"]["by"] == "regulator"
    assert queries.grant(net.store, gid).status == "revoked"
    assert net.send("hospital-a", "dataset.purge", {"dataset": ds}).code == "bad_state"


def test_catalogue_filters(net: Net) -> None:
    a = net.register(tags=["lab"], classification="internal", title="Glucose panel")
    b = net.register("hospital-b", tags=["lab", "imaging"], title="CT scans")
    c = net.register("hospital-b", tags=["imaging"], classification="secret", title="MRI")
    ids = lambda ds: [d.id for d in ds]  # noqa: E731 - a local shorthand
    assert ids(queries.catalogue(net.store, tag="lab")) == sorted([a, b])
    assert ids(queries.catalogue(net.store, owner="hospital-b", tag="imaging")) == sorted([b, c])
    assert ids(queries.catalogue(net.store, classification="secret")) == [c]
    assert ids(queries.catalogue(net.store, text="glucose")) == [a]
    assert ids(queries.catalogue(net.store, owner="hospital-b", text="mri")) == [c]


def test_resolve_prefix(net: Net) -> None:
    ds = net.register()
    assert queries.resolve(net.store, "dataset", ds[:8]) == ds
    # An id this chain does not have yet names the chain's height, and why it may lag.
    head = net.store.head()
    assert head is not None
    absent = "0" * 64 if ds[0] != "0" else "f" * 64
    with pytest.raises(NotFoundError) as refused:
        queries.resolve(net.store, "dataset", absent)
    assert f"no dataset id starts with {absent} on this chain (at height {head.height})" in str(
        refused.value
    )
    assert "through another node a moment ago" in str(refused.value)


def test_audit_entries_prove_their_validation_codes(net: Net) -> None:
    ds = net.register()
    refused = net.send("clinic-c", "dataset.retire", {"dataset": ds})
    assert refused.code == "denied"
    trail = queries.audit(net.store, org="clinic-c")
    assert [e.code for e in trail if e.tx_id == refused.tx_id] == ["denied"]
    for entry in trail:
        assert entry.proof is not None and entry.proof.result_path is not None
        verify_tx_proof(entry.proof, net.store.block_meta(entry.height).hash)  # type: ignore[union-attr]
    (entry,) = [e for e in trail if e.tx_id == refused.tx_id]
    assert entry.proof is not None
    forged = dataclasses.replace(entry.proof, code="valid", reason="")
    with pytest.raises(IntegrityError):
        verify_tx_proof(forged, net.store.block_meta(entry.height).hash)  # type: ignore[union-attr]
