"""`sharechain psi offer|match` and `sharechain aggregate propose|join|submit|result`.

Each organisation runs its own side, as it would on its own machine: the
sides that wait for another run as separate processes on the same embedded
data directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharechain.cli.main import app
from sharechain.contracts.computations import computation_from_value
from sharechain.ledger.state import StateReader
from sharechain.sharing.plane import Plane
from sharechain.storage.datadir import OrgSpec, init_consortium

ORGS = (
    OrgSpec("hospital-a", ("member", "admin")),
    OrgSpec("hospital-b", ("member", "admin")),
    OrgSpec("insurer", ("member",)),
    OrgSpec("regulator", ("member", "supervisor", "admin")),
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    init_consortium(tmp_path / "c", ORGS)
    return tmp_path / "c"


def run(home: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, [*args, "--data-dir", str(home)])
    assert "Traceback" not in result.output
    if "--json" in args:
        return result.exit_code, result.output
    return result.exit_code, " ".join(result.output.split())


def spawn(home: Path, *args: str) -> subprocess.Popen[str]:
    code = "import sys; from sharechain.cli.main import app; app(sys.argv[1:])"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args, "--data-dir", str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def finished(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out + err


def sessions(home: Path) -> list[str]:
    with Plane.local(home) as plane:
        assert plane.embedded is not None
        found = StateReader(plane.embedded.store).scan("computation/")
        return [computation_from_value(v).id for _, v in found]


def wait_for_session(home: Path, before: list[str]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = [s for s in sessions(home) if s not in before]
        if new:
            return new[0]
        time.sleep(0.2)
    raise AssertionError("no session was proposed")


def publish(home: Path, path: Path) -> str:
    code, out = run(home, "dataset", "publish", str(path), "--as", "hospital-b", "--title", "bl")
    assert code == 0, out
    code, out = run(home, "dataset", "list", "--json")
    return str(json.loads(out)[0]["id"])


def test_psi_offer_and_match_between_two_banks(home: Path, tmp_path: Path) -> None:
    blacklist = tmp_path / "blacklist.csv"
    blacklist.write_text("name,reason\nZoë Adams,fraud\nBob,fraud\nCarol,aml\n")
    customers = tmp_path / "customers.csv"
    customers.write_text("id,name\n1,ZOË ADAMS\n2,Eve\n3,bob \n")
    ds = publish(home, blacklist)
    holder = spawn(
        home, "psi", "offer", "--dataset", ds, "--column", "name", "--file", str(blacklist),
        "--with", "hospital-a", "--as", "hospital-b", "--no-approval", "--timeout", "60",
        "--json",
    )  # fmt: skip
    sid = wait_for_session(home, [])
    out_file = tmp_path / "matches.txt"
    code, out = run(
        home, "psi", "match", "--session", sid, "--file", str(customers), "--column", "name",
        "--out", str(out_file), "--as", "hospital-a", "--json",
    )  # fmt: skip
    assert code == 0, out
    assert json.loads(out)["matches"] == 2
    assert out_file.read_text().splitlines() == ["ZOË ADAMS", "bob"]
    assert out_file.stat().st_mode & 0o777 == 0o600
    code, out = finished(holder)
    assert code == 0, out
    answered = json.loads(out[: out.rindex("}") + 1])
    assert answered == {"session": sid, "client_set_size": 3, "holder_set_size": 3}


def test_psi_bad_input_is_refused_clearly(home: Path, tmp_path: Path) -> None:
    blacklist = tmp_path / "blacklist.csv"
    blacklist.write_text("name\nBob\n")
    ds = publish(home, blacklist)
    other = tmp_path / "other.csv"
    other.write_text("name\nMallory\n")
    base = ("psi", "offer", "--dataset", ds, "--with", "hospital-a", "--file")
    code, out = run(home, *base, str(blacklist), "--column", "nom", "--as", "hospital-b")
    assert code == 2 and "has no column 'nom' (columns: name)" in out
    code, out = run(home, *base, str(other), "--column", "name", "--as", "hospital-b")
    assert code == 2 and "is not the registered content of dataset" in out
    code, out = run(home, *base, str(blacklist), "--column", "name", "--as", "insurer")
    assert code == 2 and "only its owner offers it" in out
    # A client set over the cap is refused before anything is sent.
    with Plane.local(home) as plane, plane.computations() as comps:
        sid = comps.psi_offer("hospital-b", "hospital-a", max_set_size=1, purpose="x")
    big = tmp_path / "big.csv"
    big.write_text("name\nA\nB\n")
    out_file = tmp_path / "m.txt"
    match = ("psi", "match", "--session", sid, "--column", "name", "--as", "hospital-a")
    code, out = run(home, *match, "--file", str(big), "--out", str(out_file))
    assert code == 2 and "more than the session's cap of 1" in out and not out_file.exists()
    out_file.write_text("keep")
    code, out = run(home, *match, "--file", str(big), "--out", str(out_file))
    assert code == 2 and "never written over" in out and out_file.read_text() == "keep"


def test_aggregate_propose_join_submit_result(home: Path) -> None:
    code, out = run(
        home, "aggregate", "propose", "--as", "hospital-a", "--with", "hospital-b",
        "--with", "insurer", "--length", "1", "--bits", "24", "--scale", "2",
        "--no-approval", "--purpose", "average salary", "--json",
    )  # fmt: skip
    assert code == 0, out
    sid = json.loads(out)["session"]
    for org in ("hospital-b", "insurer"):
        code, out = run(home, "aggregate", "join", "--session", sid, "--as", org)
        assert code == 0, out
    others = [
        spawn(home, "aggregate", "submit", "--session", sid, "--value", v, "--as", org, "--json")
        for org, v in (("hospital-b", "48000"), ("insurer", "61000.55"))
    ]
    code, out = run(home, "aggregate", "submit", "--session", sid, "--value", "52000.10",
                    "--as", "hospital-a")  # fmt: skip
    assert code == 0 and "run `aggregate result`" in out, out
    code, out = run(home, "aggregate", "result", "--session", sid, "--as", "hospital-a", "--json")
    assert code == 0, out
    result = json.loads(out)
    assert result["sums"] == ["161000.65"] and result["dropped"] == []
    assert result["contributors"] == ["hospital-a", "hospital-b", "insurer"]
    for proc in others:
        code, text = finished(proc)
        assert code == 0, text
        assert json.loads(text[: text.rindex("}") + 1])["sums"] == ["161000.65"]


def test_aggregate_bad_values_are_refused(home: Path) -> None:
    with Plane.local(home) as plane, plane.computations() as comps:
        sid = comps.aggregate_propose(
            "hospital-a", ["hospital-b", "insurer"], length=1, bits=16, scale=2,
            purpose="x", supervisor_approval=False,
        )  # fmt: skip
    submit = ("aggregate", "submit", "--session", sid, "--as", "insurer")
    code, out = run(home, *submit, "--value", "1000.00")
    assert code == 2 and "out of range" in out
    code, out = run(home, *submit, "--value", "1.005")
    assert code == 2 and "more than 2 decimal places" in out
    code, out = run(home, *submit, "--value", "1", "--value", "2")
    assert code == 2 and "takes 1 values, not 2" in out
