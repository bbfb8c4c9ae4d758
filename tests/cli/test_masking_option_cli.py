"""`--masking P` on `request create` and `dataset publish`: enforced end to end (embedded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from masking_home import PROFILE, init_home, run


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return init_home(tmp_path)


def setup(home: Path, tmp_path: Path) -> tuple[str, Path]:
    profile = tmp_path / "ages.yaml"
    profile.write_text(PROFILE)
    code, out = run(home, "profile", "register", str(profile), "--as", "hospital-a", "--json")
    assert code == 0, out
    table = tmp_path / "patients.csv"
    table.write_text("patient_id,age\n" + "".join(f"P{i},{30 + i % 20}\n" for i in range(40)))
    return json.loads(out)["digest"], table


def publish(home: Path, table: Path, *extra: str) -> str:
    code, out = run(
        home, "dataset", "publish", str(table), "--as", "hospital-a", "--title", "Patients",
        "--classification", "confidential", "--json", *extra,
    )  # fmt: skip
    assert code == 0, out
    return str(json.loads(out)["dataset"])


def granted(home: Path, ds: str, *extra: str) -> dict[str, str]:
    code, out = run(
        home, "request", "create", ds, "--as", "insurer", "--purpose", "research", "--json", *extra
    )
    assert code == 0, out
    rid = json.loads(out)["request"]
    assert run(home, "request", "approve", rid, "--as", "regulator")[0] == 0
    code, out = run(home, "request", "approve", rid, "--as", "hospital-a")
    assert code == 0, out
    code, out = run(home, "request", "show", rid, "--json")
    shown: dict[str, str] = json.loads(out)
    return shown


def fetched(home: Path, gid: str, out: Path) -> str:
    code, text = run(home, "fetch", gid, "--as", "insurer", "--output", str(out))
    assert code == 0, text
    return out.read_text()


def test_a_request_with_masking_gets_only_the_masked_bytes(home: Path, tmp_path: Path) -> None:
    digest, table = setup(home, tmp_path)
    ds = publish(home, table)  # the policy names no masking
    shown = granted(home, ds, "--masking", "ages")  # by name
    assert shown["masking_profile"] == digest
    assert shown["masking"].startswith("masked version")
    released = fetched(home, shown["grant"], tmp_path / "o")
    assert "P1," not in released and "30-39" in released and released != table.read_text()
    # The same dataset without --masking: the raw table.
    plain = granted(home, ds)
    assert plain["masking_profile"] == "" and plain["masking"] == "none"
    assert fetched(home, plain["grant"], tmp_path / "raw") == table.read_text()


def test_publish_with_masking_puts_the_profile_in_the_policy(home: Path, tmp_path: Path) -> None:
    digest, table = setup(home, tmp_path)
    ds = publish(home, table, "--masking", digest[:12])  # by digest prefix
    code, out = run(home, "dataset", "show", ds, "--json")
    assert code == 0, out
    assert json.loads(out)["policy"]["masking"] == {"confidential": digest}
    shown = granted(home, ds)
    assert shown["masking_profile"] == digest
    assert "P1," not in fetched(home, shown["grant"], tmp_path / "o")


def test_an_unknown_profile_is_a_clear_error(home: Path, tmp_path: Path) -> None:
    _, table = setup(home, tmp_path)
    ds = publish(home, table)
    code, out = run(
        home, "request", "create", ds, "--as", "insurer", "--purpose", "x", "--masking", "nope"
    )
    assert code == 2 and "--masking 'nope'" in out and "profile list" in out
    code, out = run(
        home, "request", "create", ds, "--as", "insurer", "--purpose", "x", "--masking", "ab" * 32
    )
    assert code == 2 and "not registered" in out
