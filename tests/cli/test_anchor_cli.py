"""`sharechain anchor follow|keys|record|show|verify` and `sharechain timestamp request|verify`
on two data directories side by side."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharechain.cli.main import app
from sharechain.ledger.bundles import build_bundle
from sharechain.sharing.embedded import Embedded

# The local TSA helper lives with the ledger tests (tests/ledger/tsa_kit.py).
sys.path.insert(0, str(Path(__file__).parents[1] / "ledger"))
from tsa_kit import make_tsa  # importable only after the line above

runner = CliRunner()


def run(*args: str | Path, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    if "--json" in args:
        return result.stdout
    return " ".join((result.stdout + result.stderr).split())


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, str]:
    """A (two banks, one registered file) and B (a court following A); the notary tx of A."""
    a, b = tmp_path / "a", tmp_path / "b"
    run("init", "-d", a, "--member", "bank-a", "--member", "bank-b", "--supervisor", "reg")
    run("init", "-d", b, "--member", "court", "--supervisor", "auditor")
    f = tmp_path / "f"
    f.write_bytes(b"dataset version 1\n")
    tx = json.loads(run("notarize", f, "--as", "bank-a", "-d", a, "--json"))["tx_id"]
    return a, b, tx


def test_follow_record_show_and_verify_the_pair(
    dirs: tuple[Path, Path, str], tmp_path: Path
) -> None:
    a, b, tx = dirs
    followed = json.loads(run("anchor", "follow", "--from", a, "--as", "court", "-d", b, "--json"))
    assert followed["origin"].startswith("sharechain/")
    cp = tmp_path / "cp.txt"
    run("proof", "checkpoint", "-d", a, "-o", cp)
    rec = json.loads(run("anchor", "record", cp, "--from", a, "--as", "court", "-d", b, "--json"))
    assert rec["size"] == 2
    shown = json.loads(run("anchor", "show", "-d", b, "--json"))["followed"]
    assert [(f["origin"], f["size"]) for f in shown] == [(followed["origin"], 2)]
    assert shown[0]["checkpoints"][0]["height"] == rec["height"]
    assert "size 2 recorded in block" in run("anchor", "show", "-d", b)
    assert "no membership change" in run(
        "anchor", "keys", "--from", a, "--as", "court", "-d", b, code=2
    )
    # A's bundle under the checkpoint B recorded; B's bundle of its anchor.record.
    note = cp.read_text()
    bundle_a, anchor_b = tmp_path / "a.json", tmp_path / "b.json"
    with Embedded(a) as emb:
        bundle_a.write_text(json.dumps(build_bundle(emb.store, bytes.fromhex(tx), note)))
    run("proof", "bundle", rec["tx_id"], "-o", anchor_b, "-d", b)
    ok = json.loads(run("anchor", "verify", bundle_a, anchor_b, "--json"))
    assert (ok["verified"], ok["tx_id"], ok["anchor_height"]) == (True, tx, rec["height"])
    assert f"verified: transaction {tx} was in block 1" in run(
        "anchor", "verify", bundle_a, anchor_b
    )
    err = run("anchor", "verify", anchor_b, anchor_b, code=1)
    assert "the anchored proof does not verify" in err and "the anchor records a checkpoint" in err


def test_a_refused_record_exits_with_the_reason(
    dirs: tuple[Path, Path, str], tmp_path: Path
) -> None:
    a, b, _ = dirs
    cp = tmp_path / "cp.txt"
    run("proof", "checkpoint", "-d", a, "-o", cp)
    assert "does not follow" in run(
        "anchor", "record", cp, "--from", a, "--as", "court", "-d", b, code=2
    )
    run("anchor", "follow", "--from", a, "--as", "court", "-d", b)
    one = "".join(line for line in cp.read_text().splitlines(keepends=True)[:5])
    cp.write_text(one)  # the text, the blank line and one signature of three
    err = run("anchor", "record", cp, "--from", a, "--as", "court", "-d", b, code=2)
    assert "bad_anchor" in err and "the quorum is 2 of 3" in err


def test_timestamp_request_and_verify(dirs: tuple[Path, Path, str], tmp_path: Path) -> None:
    a, _, _ = dirs
    tsa, other = make_tsa(tmp_path / "tsa"), make_tsa(tmp_path / "other", "Other")
    cp, req = tmp_path / "cp.txt", tmp_path / "cp.tsq"
    run("proof", "checkpoint", "-d", a, "-o", cp)
    asked = json.loads(run("timestamp", "request", cp, "-o", req, "--json"))
    resp = tmp_path / "cp.tsr"
    resp.write_bytes(tsa.reply(req.read_bytes()))
    ok = json.loads(
        run("timestamp", "verify", cp, resp, "--ca", tsa.ca, "--tsa-cert", tsa.cert, "--json")
    )
    assert ok["verified"] is True and ok["digest"] == asked["digest"] and ok["tsa"] == "CN=Test TSA"
    err = run("timestamp", "verify", cp, resp, "--ca", other.ca, code=1)
    assert "the timestamp does not verify" in err
    run("notarize", cp, "--as", "bank-b", "-d", a)
    cp2 = tmp_path / "cp2.txt"
    run("proof", "checkpoint", "-d", a, "-o", cp2)
    assert "over another digest" in run("timestamp", "verify", cp2, resp, "--ca", tsa.ca, code=1)


def test_a_rotation_in_a_travels_with_the_next_record(
    dirs: tuple[Path, Path, str], tmp_path: Path
) -> None:
    a, b, _ = dirs
    run("anchor", "follow", "--from", a, "--as", "court", "-d", b)
    run("org", "rotate-key", "--as", "bank-b", "-d", a)
    cp = tmp_path / "cp.txt"
    run("proof", "checkpoint", "-d", a, "-o", cp)  # bank-b cosigns with its new key
    rec = json.loads(run("anchor", "record", cp, "--from", a, "--as", "court", "-d", b, "--json"))
    assert rec["size"] == 3
    assert "no membership change" in run(
        "anchor", "keys", "--from", a, "--as", "court", "-d", b, code=2
    )
