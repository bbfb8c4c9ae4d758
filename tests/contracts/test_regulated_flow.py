"""The regulated sharing flow, end to end, as a reader would tell it."""

from __future__ import annotations

from contracts_kit import Net, digest

from sharechain.contracts import derive_id, queries
from sharechain.ledger.proofs import verify_tx_proof


def test_member_requests_supervisor_and_provider_approve_only_requester_gets_key(
    net: Net,
) -> None:
    # Hospital A registers its lab results under the default policy: owner + supervisor.
    ds = net.register("hospital-a")

    # Hospital B asks for them, for treatment, for an hour.
    req = net.request(ds, "hospital-b", justification="patient transferred")
    rid = derive_id("request", req.tx_id)
    assert [r.id for r in queries.inbox(net.store, "hospital-a")] == [rid]
    assert [r.id for r in queries.inbox(net.store, "regulator")] == [rid]
    assert queries.inbox(net.store, "clinic-c") == []

    # The provider approves: not enough on its own.
    net.ok("hospital-a", "access.approve", {"request": rid})
    assert queries.request(net.store, rid).status == "open"
    assert queries.grants(net.store, org="hospital-b") == []

    # The regulator approves: the grant is issued in that very block.
    approve = net.ok("regulator", "access.approve", {"request": rid})
    gid = derive_id("grant", approve.tx_id)
    (view,) = queries.grants(net.store, org="hospital-b")
    assert view.grant.id == gid and view.status == "active"
    assert view.grant.height == approve.height
    assert set(view.grant.approvals) == {"hospital-a", "regulator"}
    assert queries.inbox(net.store, "regulator") == []

    # The key may be released to the requester only.
    refused = net.release(gid, to="clinic-c")
    assert refused.code == "wrong_grantee"
    assert "hospital-b" in refused.reason
    assert net.release(gid, by="clinic-c", to="clinic-c").code == "denied"
    released = net.release(gid, to="hospital-b")
    assert released.code == "valid"
    shown = net.state(f"grant/{gid}")
    assert shown["uses"] == 1 and shown["last_release"]["to"] == "hospital-b"
    assert queries.grants(net.store, org="clinic-c") == []

    # Hospital B checks the data's digest and signs a read receipt.
    assert net.send("hospital-b", "grant.read", {"grant": gid, "digest": digest("x")}).code == (
        "digest_mismatch"
    )
    net.ok("hospital-b", "grant.read", {"grant": gid, "digest": digest("plain")})

    # Every step is on the chain, with a proof anyone can check.
    trail = queries.audit(net.store, ds=ds)
    steps = [(e.type, e.sender, e.code) for e in trail]
    assert steps == [
        ("dataset.register", "hospital-a", "valid"),
        ("access.request", "hospital-b", "valid"),
        ("access.approve", "hospital-a", "valid"),
        ("access.approve", "regulator", "valid"),
        ("grant.key-release", "hospital-a", "wrong_grantee"),
        ("grant.key-release", "clinic-c", "denied"),
        ("grant.key-release", "hospital-a", "valid"),
        ("grant.read", "hospital-b", "digest_mismatch"),
        ("grant.read", "hospital-b", "valid"),
    ]
    for entry in trail:
        assert entry.proof is not None
        verify_tx_proof(entry.proof)
    grant_trail = [e.type for e in queries.audit(net.store, grant_id=gid) if e.code == "valid"]
    assert grant_trail == [
        "access.request",
        "access.approve",
        "access.approve",
        "grant.key-release",
        "grant.read",
    ]
