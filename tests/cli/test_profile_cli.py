"""`sharechain profile register|show|list`; a masked grant end to end on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from masking_home import PROFILE, init_home, run


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return init_home(tmp_path)


def test_register_show_list_and_a_masked_grant(home: Path, tmp_path: Path) -> None:
    profile = tmp_path / "ages.yaml"
    profile.write_text(PROFILE)
    code, out = run(home, "profile", "register", str(profile), "--as", "hospital-a", "--json")
    assert code == 0, out
    digest = json.loads(out)["digest"]
    code, out = run(home, "profile", "show", digest[:10])
    assert code == 0 and "ages" in out and "generalise" in out
    code, out = run(home, "profile", "list", "--json")
    assert [p["digest"] for p in json.loads(out)] == [digest]
    assert run(home, "profile", "register", str(profile), "--as", "hospital-a")[0] == 2

    table = tmp_path / "patients.csv"
    table.write_text("patient_id,age\n" + "".join(f"P{i},{30 + i % 20}\n" for i in range(40)))
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"masking:\n  confidential: {digest}\n")
    code, out = run(
        home, "dataset", "publish", str(table), "--as", "hospital-a", "--title", "Patients",
        "--classification", "confidential", "--policy", str(policy), "--json",
    )  # fmt: skip
    assert code == 0, out
    ds = json.loads(out)["dataset"]
    code, out = run(
        home, "request", "create", ds, "--as", "insurer", "--purpose", "research", "--json"
    )
    rid = json.loads(out)["request"]
    run(home, "request", "approve", rid, "--as", "regulator")
    code, out = run(home, "request", "show", rid)
    assert code == 0 and "open" in out and "regulator (supervisor)" in out
    code, out = run(home, "request", "approve", rid, "--as", "hospital-a", "--json")
    assert code == 0, out
    code, out = run(home, "request", "show", rid, "--json")
    shown = json.loads(out)
    assert shown["masking"].startswith("masked version") and ds in shown["masking"]
    code, out = run(
        home, "fetch", shown["grant"], "--as", "insurer", "--output", str(tmp_path / "o")
    )
    assert code == 0, out
    released = (tmp_path / "o").read_text()
    assert "P1," not in released and "30-39" in released
    code, out = run(home, "dataset", "lineage", ds)
    assert code == 0 and "masked" in out.lower()


def test_a_table_that_does_not_fit_leaves_the_grant_waiting(home: Path, tmp_path: Path) -> None:
    profile = tmp_path / "ages.yaml"
    profile.write_text(PROFILE)
    code, out = run(home, "profile", "register", str(profile), "--as", "hospital-a", "--json")
    digest = json.loads(out)["digest"]
    table = tmp_path / "visits.csv"
    table.write_text("patient_id,visits\n" + "".join(f"P{i},{i}\n" for i in range(10)))
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"masking:\n  confidential: {digest}\n")
    code, out = run(
        home, "dataset", "publish", str(table), "--as", "hospital-a", "--title", "Visits",
        "--classification", "confidential", "--policy", str(policy), "--json",
    )  # fmt: skip
    ds = json.loads(out)["dataset"]
    code, out = run(
        home, "request", "create", ds, "--as", "insurer", "--purpose", "research", "--json"
    )
    rid = json.loads(out)["request"]
    run(home, "request", "approve", rid, "--as", "regulator")
    code, out = run(home, "request", "approve", rid, "--as", "hospital-a")
    assert code == 0 and "was not produced" in out and "age" in out
    code, out = run(home, "request", "show", rid, "--json")
    shown = json.loads(out)
    assert shown["masking"] == "waiting for the owner's node to produce the masked version"
    code, out = run(home, "profile", "produce", shown["grant"][:12], "--as", "hospital-a")
    assert code == 2 and "age" in out
    code, out = run(
        home, "fetch", shown["grant"], "--as", "insurer", "--output", str(tmp_path / "o")
    )
    assert code != 0 and "masked" in out and not (tmp_path / "o").exists()
