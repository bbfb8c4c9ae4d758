"""`sharechain mask check | apply`: reports, exit codes, token keys from the data directory."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow.csv as pacsv
import pytest
from typer.testing import CliRunner

from sharechain.cli.main import app
from sharechain.privacy.tokens import derive_token_key, tokenize
from sharechain.sharing.embedded import Embedded
from sharechain.sharing.plane import Plane
from sharechain.sharing.records import Listing
from sharechain.storage.datadir import OrgSpec, init_consortium

PROFILE = """\
k: 3
quasi_identifiers: [age, zip]
sensitive: [dx]
columns:
  id: tokenize
  age: {rule: generalise, width: 10}
  zip: {rule: generalise, truncate: 2}
  dx: keep
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    r = random.Random(2)
    data = tmp_path / "people.csv"
    lines = ["id,age,zip,dx"] + [
        f"P{i},{r.randint(20, 70)},{r.choice(['AB1', 'AB2', 'CD3'])},{r.choice('xyz')}"
        for i in range(400)
    ]
    data.write_text("\n".join(lines) + "\n")
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE)
    return data, profile


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_check_reports_and_exits_by_targets(files: tuple[Path, Path], tmp_path: Path) -> None:
    data, profile = files
    code, out = run("mask", "check", str(data), "--profile", str(profile), "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["rows_in"] == 400 and report["k"] >= 3 and report["targets_met"] is True
    assert report["columns_changed"] == ["id", "age", "zip"]
    code, out = run("mask", "check", str(data), "--profile", str(profile))
    assert code == 0 and "targets met" in out and "True" in out
    strict = tmp_path / "strict.yaml"
    strict.write_text(PROFILE.replace("k: 3", "k: 30\nsuppress: false"))
    code, out = run("mask", "check", str(data), "-p", str(strict), "--json")
    assert code == 1 and json.loads(out)["targets_met"] is False
    broken = tmp_path / "broken.yaml"
    broken.write_text(PROFILE.replace("width: 10", "width: 0"))
    code, out = run("mask", "check", str(data), "-p", str(broken))
    assert code == 2 and "width must be" in out


def test_apply_with_a_key_file(files: tuple[Path, Path], tmp_path: Path) -> None:
    data, profile = files
    key = bytes(range(32))
    key_file = tmp_path / "token.key"
    key_file.write_text(key.hex() + "\n")
    out = tmp_path / "release.csv"
    code, text = run(
        "mask", "apply", str(data), "-p", str(profile), "-o", str(out),
        "--token-key-file", str(key_file), "--json",
    )  # fmt: skip
    assert code == 0, text
    assert json.loads(text)["out"] == str(out)
    released = pacsv.read_csv(out)
    assert released["id"][0].as_py() in {tokenize(key, f"P{i}") for i in range(400)}
    key_file.write_text("abcd")
    code, text = run(
        "mask", "apply", str(data), "-p", str(profile), "-o", str(tmp_path / "x.csv"),
        "--token-key-file", str(key_file),
    )  # fmt: skip
    assert code == 2 and "64 hexadecimal digits" in text
    assert not (tmp_path / "x.csv").exists()


def test_apply_without_a_key_fails_cleanly(files: tuple[Path, Path], tmp_path: Path) -> None:
    data, profile = files
    out = tmp_path / "release.csv"
    code, text = run("mask", "apply", str(data), "-p", str(profile), "-o", str(out))
    assert code == 2 and "give a tokenisation key" in text and not out.exists()
    code, text = run(
        "mask", "apply", str(data), "-p", str(profile), "-o", str(out), "--grantee", "insurer"
    )
    assert code == 2 and "--key-from" in text


def test_key_from_the_owners_data_directory(files: tuple[Path, Path], tmp_path: Path) -> None:
    data, profile = files
    home = tmp_path / "c"
    init_consortium(
        home,
        (
            OrgSpec("hospital-a", ("member", "admin")),
            OrgSpec("insurer", ("member",)),
            OrgSpec("regulator", ("member", "supervisor", "admin")),
        ),
    )
    with Plane.local(home) as plane:
        published = plane.publish("hospital-a", data, Listing(title="people"))
    with Embedded(home) as emb:
        owner_secret = emb.keys("hospital-a").encryption_private
    out = tmp_path / "release.csv"
    args = ["mask", "apply", str(data), "-p", str(profile), "-o", str(out)]
    code, text = run(
        *args, "--key-from", published.dataset[:12], "--grantee", "insurer", "-d", str(home)
    )
    assert code == 0, text
    key = derive_token_key(owner_secret, published.dataset, "insurer", published.epoch).key
    tokens = set(pacsv.read_csv(out)["id"].to_pylist())
    assert tokens <= {tokenize(key, f"P{i}") for i in range(400)}
    code, text = run(*args, "--key-from", published.dataset, "-d", str(home))
    assert code == 2 and "needs --grantee" in text
    code, text = run(*args, "--key-from", "ffff", "--grantee", "insurer", "-d", str(home))
    assert code == 2 and "no dataset id starts with ffff" in text
    code, text = run(
        *args, "--key-from", "ffff", "--grantee", "x", "--token-key-file", str(profile)
    )
    assert code == 2 and "not both" in text
