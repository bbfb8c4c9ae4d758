"""`sharechain dataset publish | rotate-key`, `fetch`; `grant revoke` rotates, `purge` shreds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharechain.cli.main import app
from sharechain.sharing.plane import Plane
from sharechain.sharing.records import derive_id
from sharechain.storage.datadir import OrgSpec, init_consortium

ORGS = (
    OrgSpec("hospital-a", ("member", "admin")),
    OrgSpec("hospital-b", ("member", "admin")),
    OrgSpec("insurer", ("member",)),
    OrgSpec("regulator", ("member", "supervisor", "admin")),
)
POLICY = """\
approval: owner+supervisor
purposes: [research, treatment]
max_duration: 30d
max_uses: 3
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    init_consortium(tmp_path / "c", ORGS)
    return tmp_path / "c"


def run(home: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, [*args, "--data-dir", str(home)])
    return result.exit_code, result.output


def grant_for(home: Path, ds: str) -> str:
    with Plane.local(home) as plane:
        body = {"dataset": ds, "purpose": "research", "duration": 86_400_000}
        rid = derive_id("request", plane.submit("insurer", "access.request", body).tx_id)
        plane.submit("regulator", "access.approve", {"request": rid})
        r = plane.submit("hospital-a", "access.approve", {"request": rid})
    return derive_id("grant", r.tx_id)


def test_publish_fetch_revoke_purge(home: Path, tmp_path: Path) -> None:
    data = tmp_path / "patients.csv"
    data.write_text("patient_id,glucose\n" + "".join(f"P{i},5.{i % 10}\n" for i in range(9000)))
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    code, out = run(
        home,
        "dataset",
        "publish",
        str(data),
        "--as",
        "hospital-a",
        "--title",
        "Patients",
        "--tag",
        "lab",
        "--classification",
        "confidential",
        "--policy",
        str(policy),
        "--custody",
        "threshold",
        "--json",
    )
    assert code == 0, out
    pub = json.loads(out)
    assert pub["custody"] == "threshold" and pub["threshold"] == 2 and not pub["on_chain"]
    gid = grant_for(home, pub["dataset"])
    fetched = tmp_path / "copy.csv"
    code, out = run(home, "fetch", gid[:12], "--as", "insurer", "-o", str(fetched), "--json")
    assert code == 0, out
    assert fetched.read_bytes() == data.read_bytes()
    assert json.loads(out)["plaintext_sha256"] == pub["plaintext_sha256"]
    code, out = run(home, "fetch", gid, "--as", "hospital-b", "-o", str(tmp_path / "x"))
    assert code == 2 and "wrong_grantee" in out
    code, out = run(home, "grant", "revoke", gid, "--as", "hospital-a", "--reason", "done")
    assert code == 0, out
    with Plane.local(home) as plane:
        assert plane.dataset(pub["dataset"]).status == "active"
        trail = [(e.type, e.code) for e in plane.audit(ds=pub["dataset"])]
    assert trail.count(("dataset.epoch", "valid")) == 2  # published, then rotated on revoke
    code, out = run(home, "fetch", gid, "--as", "insurer", "-o", str(tmp_path / "again"))
    assert code == 2 and "revoked" in out and not (tmp_path / "again").exists()
    code, out = run(home, "dataset", "rotate-key", pub["dataset"], "--as", "hospital-a")
    assert code == 0 and "key epoch 3" in out, out
    code, out = run(home, "dataset", "purge", pub["dataset"], "--as", "hospital-a")
    assert code == 0 and "purged" in out, out
    assert not any((home / "blobs").glob("??/*"))
    assert not any((home / "vault").rglob("*.key")) and not any((home / "vault").rglob("*.share"))


def test_a_bad_policy_file_is_refused_with_the_reason(home: Path, tmp_path: Path) -> None:
    data = tmp_path / "d.txt"
    data.write_text("x")
    policy = tmp_path / "policy.yaml"
    policy.write_text("max_uses: -1\n")
    code, out = run(
        home,
        "dataset",
        "publish",
        str(data),
        "--as",
        "hospital-a",
        "--title",
        "t",
        "--policy",
        str(policy),
    )
    assert code == 2 and "max_uses" in out
    policy.write_text("approvers: [x]\n")
    code, out = run(
        home,
        "dataset",
        "publish",
        str(data),
        "--as",
        "hospital-a",
        "--title",
        "t",
        "--policy",
        str(policy),
    )
    assert code == 2 and "unknown policy field" in out


def test_where_to_run_may_be_said_before_the_command(home: Path, tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("a,b\n" + "1,2\n" * 50)
    code, out = run(home, "dataset", "publish", str(data), "--as", "hospital-a", "--title", "t")
    assert code == 0, out
    before = CliRunner().invoke(app, ["--data-dir", str(home), "dataset", "list", "--json"])
    assert before.exit_code == 0, before.output
    assert [d["title"] for d in json.loads(before.output)] == ["t"]
    # The command's own option wins over the one before it.
    elsewhere = ["--data-dir", str(tmp_path / "none"), "dataset", "list", "--json"]
    won = CliRunner().invoke(app, [*elsewhere, "--data-dir", str(home)])
    assert won.exit_code == 0 and json.loads(won.output) == json.loads(before.output)
    missing = CliRunner().invoke(app, elsewhere)
    assert missing.exit_code == 2 and "none" in missing.output
