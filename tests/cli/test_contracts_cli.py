"""`sharechain org | dataset | request | grant | audit | alerts`, through the CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sharechain.cli.main import app

runner = CliRunner()


def run(*args: str | Path, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    if "--json" in args:
        return result.stdout
    return " ".join((result.stdout + result.stderr).split())


def js(*args: str | Path) -> Any:
    return json.loads(run(*args, "--json"))


def sha(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


@pytest.fixture
def d(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    run(
        "init", "-d", path, "--member", "hospital-a", "--member", "hospital-b",
        "--supervisor", "regulator",
    )  # fmt: skip
    return path


def _register(d: Path, *extra: str) -> str:
    out = js(
        "dataset", "register", "-d", d, "--as", "hospital-a", "--title", "Blood tests",
        "--tag", "lab", "--column", "patient_id:string", "--column", "glucose:float",
        "--classification", "confidential", "--plaintext-digest", sha("plain"),
        "--ciphertext-digest", sha("cipher"), "--size", "100", *extra,
    )  # fmt: skip
    return str(out["dataset"])


def test_regulated_flow_through_the_cli(d: Path) -> None:
    ds = _register(d)
    listed = js("dataset", "list", "-d", d, "--tag", "lab")
    assert [x["id"] for x in listed] == [ds]
    assert js("dataset", "show", "-d", d, ds[:10])["policy"]["approval"] == "owner+supervisor"

    req = js("request", "create", "-d", d, ds[:10], "--as", "hospital-b", "--purpose", "treatment",
             "--duration", "2h")  # fmt: skip
    rid = req["request"]
    assert req["status"] == "open"
    assert [r["id"] for r in js("request", "list", "-d", d, "--as", "regulator")] == [rid]
    assert js("request", "approve", "-d", d, rid[:8], "--as", "hospital-a")["status"] == "open"
    done = js("request", "approve", "-d", d, rid[:8], "--as", "regulator")
    assert done["status"] == "granted"
    gid = done["grant"]

    (grant,) = js("grant", "list", "-d", d, "--org", "hospital-b")
    assert grant["id"] == gid and grant["effective_status"] == "active"
    assert grant["expires_at"] - grant["issued_at"] == 2 * 3_600_000

    trail = js("audit", "-d", d, ds[:10])
    assert [e["type"] for e in trail] == [
        "dataset.register", "access.request", "access.approve", "access.approve",
    ]  # fmt: skip
    assert all(e["proof_verified"] and e["proof"]["audit_path"] is not None for e in trail)
    assert len(js("audit", "-d", d, "--grant", gid[:10])) == 3
    assert any(e["type"] == "access.request" for e in js("audit", "-d", d, "--org", "hospital-b"))
    human = run("audit", "-d", d, ds[:10])
    assert "every inclusion proof verified" in human

    err = run("request", "approve", "-d", d, rid, "--as", "hospital-b", code=2)
    assert "bad_state" in err

    assert js("grant", "revoke", "-d", d, gid[:10], "--as", "regulator")["grant"] == gid
    (grant,) = js("grant", "list", "-d", d, "--org", "hospital-b")
    assert grant["effective_status"] == "revoked"


def test_rejection_reason_is_shown(d: Path) -> None:
    ds = _register(d)
    out = run("request", "create", "-d", d, ds, "--as", "hospital-a", "--purpose", "x", code=2)
    assert "denied" in out and "owner needs no grant" in out


def test_dataset_version_derive_lineage_retire(d: Path) -> None:
    ds = _register(d)
    v2 = js("dataset", "version", "-d", d, ds[:10], "--as", "hospital-a", "--plaintext-digest",
            sha("p2"), "--ciphertext-digest", sha("c2"), "--size", "5")["dataset"]  # fmt: skip
    child = js("dataset", "derive", "-d", d, "--as", "hospital-a", "--parent", v2, "--title",
               "masked", "--transformation", "tokenised ids", "--plaintext-digest", sha("m"),
               "--ciphertext-digest", sha("mc"), "--size", "5")["dataset"]  # fmt: skip
    graph = js("dataset", "lineage", "-d", d, v2[:10])
    assert {(e["from"], e["to"], e["kind"]) for e in graph["edges"]} == {
        (ds, v2, "version"),
        (v2, child, "derived"),
    }
    assert "--derived-->" in run("dataset", "lineage", "-d", d, v2[:10])
    js("dataset", "retire", "-d", d, child[:10], "--as", "hospital-a")
    assert [x["id"] for x in js("dataset", "list", "-d", d)] == [v2]


def test_policy_file_is_validated(d: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("auto_approve:\n  - 'requester.org in ['\n")
    out = run("dataset", "register", "-d", d, "--as", "hospital-a", "--title", "t",
              "--plaintext-digest", sha("p"), "--ciphertext-digest", sha("c"), "--size", "1",
              "--policy", bad, code=2)  # fmt: skip
    assert "does not parse" in out
    good = tmp_path / "good.yaml"
    good.write_text(
        "auto_approve:\n  - requester.org == 'hospital-b' && request.purpose == 'treatment'\n"
    )
    ds = _register(d, "--policy", str(good))
    req = js("request", "create", "-d", d, ds, "--as", "hospital-b", "--purpose", "treatment")
    assert req["status"] == "granted" and req["grant"]


def test_membership_and_alerts(d: Path) -> None:
    prop = js("org", "propose", "-d", d, "lab-e", "--as", "hospital-a", "--role", "member")
    assert prop["status"] == "open"
    assert js("org", "vote", "-d", d, prop["proposal"][:8], "--as", "hospital-b")["status"] == (
        "passed"
    )
    orgs = {o["id"]: o for o in js("org", "list", "-d", d)["organisations"]}
    assert orgs["lab-e"]["status"] == "active"
    before = orgs["lab-e"]["sign_key_id"]
    js("org", "rotate-key", "-d", d, "--as", "lab-e")
    after = {o["id"]: o for o in js("org", "list", "-d", d)["organisations"]}["lab-e"]
    assert after["sign_key_id"] != before
    run("notarize", "-d", d, __file__, "--as", "lab-e")  # the new key file signs
    rm = js("org", "remove", "-d", d, "lab-e", "--as", "hospital-a")
    js("org", "vote", "-d", d, rm["proposal"], "--as", "regulator")
    assert "sender_removed" in run("notarize", "-d", d, __file__, "--as", "lab-e", code=2)
    assert js("alerts", "list", "-d", d) == []


def test_alerts_list_and_clear(tmp_path: Path) -> None:
    from sharechain.storage.datadir import OrgSpec, init_consortium

    d = tmp_path / "risky"
    orgs = [OrgSpec("hospital-a", ("member",)), OrgSpec("regulator", ("member", "supervisor"))]
    init_consortium(d, orgs, governance={"risk": {"max_requests": 1}})
    ds = _register(d)
    for _ in range(2):
        js("request", "create", "-d", d, ds, "--as", "regulator", "--purpose", "audit")
    (alert,) = js("alerts", "list", "-d", d)
    assert (alert["org"], alert["kind"], alert["suspends"]) == ("regulator", "requests", True)
    assert "requests" in run("alerts", "list", "-d", d)
    assert "denied" in run("alerts", "clear", "-d", d, alert["id"], "--as", "hospital-a", code=2)
    js("alerts", "clear", "-d", d, alert["id"][:8], "--as", "regulator", "--note", "drill")
    assert js("alerts", "list", "-d", d) == []
    assert js("alerts", "list", "-d", d, "--all")[0]["status"] == "cleared"


def test_request_duration_in_days(d: Path) -> None:
    ds = _register(d)
    rid = js("request", "create", "-d", d, ds[:10], "--as", "hospital-b", "--purpose",
             "treatment", "--days", "30")["request"]  # fmt: skip
    js("request", "approve", "-d", d, rid[:8], "--as", "hospital-a")
    gid = js("request", "approve", "-d", d, rid[:8], "--as", "regulator")["grant"]
    (grant,) = [g for g in js("grant", "list", "-d", d, "--org", "hospital-b") if g["id"] == gid]
    assert grant["expires_at"] - grant["issued_at"] == 30 * 86_400_000
    both = run("request", "create", "-d", d, ds[:10], "--as", "hospital-b", "--purpose", "x",
               "--days", "3", "--duration", "3d", code=2)  # fmt: skip
    assert "either --duration or --days" in both
    assert "--days" in run("request", "create", "-d", d, ds[:10], "--as", "hospital-b",
                           "--purpose", "x", "--days", "0", code=2)  # fmt: skip
