"""The privacy reads over a real node's HTTP API: sessions, transformation records, budgets.

One solo node; every organisation signs its own transactions and reads as
itself. Sessions are read by their parties and supervisors; a dataset's
transformation records and budgets by its owner and supervisors (a grant's
own record by its grantee too). The command line reads the same routes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from node_helpers import Running
from typer.testing import CliRunner

from sharechain.cli.main import app as cli
from sharechain.contracts import derive_id
from sharechain.errors import AccessDeniedError, NotFoundError
from sharechain.ledger.transactions import sign_transaction
from sharechain.privacy.profiles import parse_profile, profile_digest, profile_form

OWNER, GRANTEE, SUPERVISOR = "hospital-a", "bank-b", "regulator"
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


def _digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def _send(running: Running, org: str, type: str, payload: dict[str, Any]) -> bytes:
    stx = sign_transaction(running.consortium.keys(org).signing, type, org, payload)
    with running.client(org) as client:
        return client.submit_checked(stx.raw).tx_id


def _psi(running: Running, a: str, b: str) -> str:
    payload = {
        "kind": "psi",
        "parties": [a, b],
        "purpose": "blacklist match",
        "max_set_size": 100,
        "duration": 3_600_000,
    }
    return derive_id("computation", _send(running, a, "computation.propose", payload))


def test_sessions_are_read_by_their_parties_and_supervisors(orderer: Running) -> None:
    ours, theirs = _psi(orderer, OWNER, GRANTEE), _psi(orderer, GRANTEE, SUPERVISOR)
    with orderer.client(OWNER) as a, orderer.client(GRANTEE) as b, orderer.client(SUPERVISOR) as r:
        assert [c.id for c in a.computations()] == [ours]
        assert {c.id for c in b.computations()} == {ours, theirs}
        assert [c.id for c in r.computations(party=OWNER)] == [ours]
        assert len(r.computations(limit=1)) == 1
        with pytest.raises(AccessDeniedError, match="members list their own"):
            a.computations(party=GRANTEE)
        one = a.computation(ours)
        assert (one.kind, one.parties, one.status, one.client) == (
            "psi",
            (OWNER, GRANTEE),
            "proposed",
            OWNER,
        )
        assert one.raw["approval_required"] and one.raw["purpose"] == "blacklist match"
        with pytest.raises(AccessDeniedError, match="parties and supervisors"):
            a.computation(theirs)
        assert r.computation(theirs).parties == (GRANTEE, SUPERVISOR)
        body = a.get_json("/v1/computations", limit=1)
        assert body["total"] == 1 and len(body["computations"]) == 1
    runner = CliRunner()
    args = ["--node", orderer.url, "--as", GRANTEE, "-d", str(orderer.consortium.source)]
    listed = runner.invoke(cli, ["compute", "list", *args, "--json"])
    assert listed.exit_code == 0, listed.output
    assert {c["id"] for c in json.loads(listed.stdout)} == {ours, theirs}
    shown = runner.invoke(cli, ["compute", "show", ours[:10], *args])
    assert shown.exit_code == 0 and f"id: {ours}" in shown.stdout and "proposed" in shown.stdout


def test_masked_releases_and_budgets_for_the_owner_and_supervisors(orderer: Running) -> None:
    form = profile_form(PROFILE)
    _send(orderer, OWNER, "profile.register", {"name": "lab", "profile": form})
    register = {
        "title": "Blood tests 2025",
        "description": "Lab results",
        "tags": ["lab"],
        "schema": [["patient_id", "string"], ["glucose", "float"]],
        "classification": "confidential",
        "plaintext_digest": _digest("plain"),
        "ciphertext_digest": _digest("cipher"),
        "size": 1024,
        "segment_root": _digest("segments"),
        "custody": "owner",
        "holders": [],
        "policy": {
            "masking": {"confidential": profile_digest(PROFILE).hex()},
            "privacy_budget": "2",
        },
    }
    ds = derive_id("dataset", _send(orderer, OWNER, "dataset.register", register))
    ask = {"dataset": ds, "purpose": "research", "duration": 3_600_000}
    rid = derive_id("request", _send(orderer, GRANTEE, "access.request", ask))
    _send(orderer, OWNER, "access.approve", {"request": rid})
    gid = derive_id("grant", _send(orderer, SUPERVISOR, "access.approve", {"request": rid}))
    with orderer.client(GRANTEE) as b:
        assert b.transformation(gid) is None  # not made yet
    transform = {
        "grant": gid,
        "profile": profile_digest(PROFILE),
        "source_digest": _digest("plain"),
        "plaintext_digest": _digest("masked"),
        "ciphertext_digest": _digest("masked cipher"),
        "segment_root": _digest("masked root"),
        "size": 100,
        "k": 3,
        "l": 0,
        "suppressed": 1,
        "rows": 9,
        "epsilon": "1/2",
    }
    _send(orderer, OWNER, "dataset.transform", transform)
    with orderer.client(OWNER) as a, orderer.client(GRANTEE) as b, orderer.client(SUPERVISOR) as r:
        (record,) = a.transformations(ds[:12])
        assert (record.grant, record.source, record.k, record.rows, record.epsilon) == (
            gid,
            ds,
            3,
            9,
            "1/2",
        )
        assert record.profile == profile_digest(PROFILE) and record.output_digest
        assert r.transformations(ds) == [record] and b.transformation(gid) == record
        (budget,) = a.budgets(ds)
        assert (budget.grantee, budget.spent, budget.limit, budget.left) == (
            GRANTEE,
            "1/2",
            "2",
            "3/2",
        )
        assert r.budgets(ds) == [budget]
        for read in (b.transformations, b.budgets):
            with pytest.raises(AccessDeniedError, match=r"its owner \(hospital-a\)"):
                read(ds)
        with pytest.raises(NotFoundError):
            a.budgets("ab" * 32)
    runner = CliRunner()
    args = ["--node", orderer.url, "--as", SUPERVISOR, "-d", str(orderer.consortium.source)]
    out = runner.invoke(cli, ["dataset", "budgets", ds[:12], *args, "--json"])
    assert out.exit_code == 0, out.output
    got = json.loads(out.stdout)
    assert got["budgets"][0]["left"] == "3/2" and got["releases"][0]["grant"] == gid
    refused = runner.invoke(cli, ["dataset", "budgets", ds[:12], *args[:-4], "--as", GRANTEE,
                                  "-d", str(orderer.consortium.source)])  # fmt: skip
    assert refused.exit_code != 0 and "owner (hospital-a)" in refused.output
