"""`sharechain notarize | endorse | check`, in-process and as concurrent processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharechain.cli.main import app
from sharechain.ledger.chain import verify_chain
from sharechain.sharing.embedded import Embedded

runner = CliRunner()


def run(*args: str | Path, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    if code == 0 and "--json" in args:
        return result.stdout
    # Rich wraps long lines at the terminal width; compare words, not layout.
    return " ".join((result.stdout + result.stderr).split())


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli") / "data"
    run(
        "init",
        "--data-dir",
        d,
        "--member",
        "hospital-a",
        "--member",
        "hospital-b",
        "--supervisor",
        "regulator",
    )
    return d


def _file(tmp_path: Path, name: str, content: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(content)
    return p


def test_notarize_endorse_check(consortium: Path, tmp_path: Path) -> None:
    doc = _file(tmp_path, "degree.pdf", b"%PDF degree of A. Student" * 1000)
    out = json.loads(
        run("notarize", doc, "--as", "hospital-a", "--note", "degree", "-d", consortium, "--json")
    )
    assert set(out) >= {"tx_id", "height"} and len(out["tx_id"]) == 64
    endorsed = json.loads(
        run("endorse", out["tx_id"], "--as", "regulator", "-d", consortium, "--json")
    )
    assert endorsed["height"] == out["height"] + 1

    report = json.loads(run("check", doc, "-d", consortium, "--json"))
    assert report["recorded"] and report["recorder"] == "hospital-a" and report["note"] == "degree"
    assert report["tx_id"] == out["tx_id"] and report["height"] == out["height"]
    assert report["time"].endswith("Z") and report["proof_verified"]
    assert [e["org"] for e in report["endorsements"]] == ["regulator"]
    assert report["proof"]["header_hash"] and report["proof"]["tx_id"] == out["tx_id"]

    text = run("check", doc, "-d", consortium)
    for expected in ("hospital-a", "regulator", str(out["height"]), "verified"):
        assert expected in text


def test_notarize_prints_tx_and_height(consortium: Path, tmp_path: Path) -> None:
    doc = _file(tmp_path, "plain.txt", b"plain")
    text = run("notarize", doc, "--as", "hospital-b", "-d", consortium)
    assert "transaction" in text and "block" in text


def test_check_absent_file_exits_1(consortium: Path, tmp_path: Path) -> None:
    doc = _file(tmp_path, "never.txt", b"never recorded")
    text = run("check", doc, "-d", consortium, code=1)
    assert "not on the chain" in text
    result = runner.invoke(app, ["check", str(doc), "-d", str(consortium), "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["recorded"] is False


def test_duplicate_is_refused_with_a_clear_message(consortium: Path, tmp_path: Path) -> None:
    doc = _file(tmp_path, "dup.txt", b"only once")
    run("notarize", doc, "--as", "hospital-a", "-d", consortium)
    text = run("notarize", doc, "--as", "hospital-b", "-d", consortium, code=2)
    assert "duplicate" in text and "already recorded by hospital-a" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["notarize", "{missing}", "--as", "hospital-a"], "does not exist"),
        (["notarize", "{dir}", "--as", "hospital-a"], "is a directory"),
        (["notarize", "{file}", "--as", "nobody"], "no key file for organisation 'nobody'"),
        (["endorse", "abc", "--as", "regulator"], "not a transaction id"),
        (["endorse", "00" * 32, "--as", "regulator"], "not_found"),
        (["endorse", "{own}", "--as", "hospital-a"], "cannot endorse its own record"),
        (["check", "{missing}"], "does not exist"),
    ],
)
def test_bad_input_gives_clear_errors(
    consortium: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    f = _file(tmp_path, "x.txt", b"x-" + os.urandom(8))
    own = json.loads(
        run(
            "notarize",
            _file(tmp_path, "own.txt", os.urandom(16)),
            "--as",
            "hospital-a",
            "-d",
            consortium,
            "--json",
        )
    )["tx_id"]
    values = {
        "{missing}": str(tmp_path / "nope"),
        "{dir}": str(tmp_path),
        "{file}": str(f),
        "{own}": own,
    }
    text = run(*[values.get(a, a) for a in args], "-d", consortium, code=2)
    assert message in text


def test_not_a_data_directory(tmp_path: Path) -> None:
    f = _file(tmp_path, "x.txt", b"x")
    text = run("check", f, "-d", tmp_path / "empty", code=2)
    assert "not a sharechain data directory" in text and "sharechain init" in text


def test_data_dir_from_environment(
    consortium: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHARECHAIN_HOME", str(consortium))
    doc = _file(tmp_path, "env.txt", b"via env")
    out = json.loads(run("notarize", doc, "--as", "hospital-b", "--json"))
    assert json.loads(run("check", doc, "--json"))["height"] == out["height"]


def test_concurrent_notarize_processes(tmp_path: Path) -> None:
    d = tmp_path / "data"
    run(
        "init",
        "--data-dir",
        d,
        "--member",
        "hospital-a",
        "--member",
        "hospital-b",
        "--supervisor",
        "regulator",
    )
    orgs = ["hospital-a", "hospital-b", "regulator"]
    procs = []
    for i in range(6):
        f = _file(tmp_path, f"c{i}.txt", b"concurrent %d" % i)
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from sharechain.cli.main import main; main()",
                    "notarize",
                    str(f),
                    "--as",
                    orgs[i % 3],
                    "--data-dir",
                    str(d),
                    "--json",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    heights = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
        heights.append(json.loads(out)["height"])
    assert sorted(heights) == list(range(1, 7))
    with Embedded(d) as emb:
        report = verify_chain(emb.store, emb.registry, genesis_hash=emb.datadir.genesis_hash)
        assert report.ok and report.height == 6 and report.transactions == 7
    for i in range(6):
        assert json.loads(run("check", tmp_path / f"c{i}.txt", "-d", d, "--json"))["recorded"]
