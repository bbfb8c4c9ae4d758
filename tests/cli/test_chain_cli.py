"""`sharechain chain info | verify | export | proof`."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import cbor2
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


@pytest.fixture
def chain(tmp_path: Path) -> tuple[Path, list[str]]:
    d = tmp_path / "data"
    run(
        "init",
        "-d",
        d,
        "--member",
        "hospital-a",
        "--member",
        "hospital-b",
        "--supervisor",
        "regulator",
    )
    ids = []
    for i, org in enumerate(["hospital-a", "hospital-b", "regulator", "hospital-a"]):
        f = tmp_path / f"f{i}"
        f.write_bytes(b"file %d" % i)
        ids.append(json.loads(run("notarize", f, "--as", org, "-d", d, "--json"))["tx_id"])
    return d, ids


def test_info(chain: tuple[Path, list[str]]) -> None:
    d, _ = chain
    info = json.loads(run("chain", "info", "-d", d, "--json"))
    assert info["height"] == 4 and info["transactions"] == 5
    assert info["consortium"] == "dev-consortium"
    assert info["organisations"]["regulator"]["roles"] == ["member", "supervisor", "admin"]
    assert set(info["organisations"]) == {"hospital-a", "hospital-b", "regulator"}
    text = run("chain", "info", "-d", d)
    assert info["genesis_hash"][:20] in text and "regulator" in text


def test_verify_intact_and_broken(chain: tuple[Path, list[str]]) -> None:
    d, _ = chain
    ok = json.loads(run("chain", "verify", "-d", d, "--json"))
    assert ok["ok"] and ok["height"] == 4 and ok["bad_height"] is None
    assert "chain intact" in run("chain", "verify", "-d", d)
    db = sqlite3.connect(d / "ledger.db", isolation_level=None)
    data = db.execute("SELECT data FROM blocks WHERE height=3").fetchone()[0]
    i = len(data) // 2
    db.execute(
        "UPDATE blocks SET data=? WHERE height=3",
        (data[:i] + bytes([data[i] ^ 1]) + data[i + 1 :],),
    )
    db.close()
    bad = json.loads(run("chain", "verify", "-d", d, "--json", code=1))
    assert not bad["ok"] and bad["bad_height"] == 3 and bad["reason"]
    text = run("chain", "verify", "-d", d, code=1)
    assert "chain broken at height 3" in text
    # Export refuses a broken chain rather than exporting it as sound.
    out = d.parent / "broken.jsonl"
    assert "not exported" in run("chain", "export", "--out", out, "-d", d, code=1)
    assert not out.exists()


def test_verify_damaged_database_file(chain: tuple[Path, list[str]]) -> None:
    d, _ = chain
    db = d / "ledger.db"
    sqlite3.connect(db).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    raw = bytearray(db.read_bytes())
    conn = sqlite3.connect(db)
    data = conn.execute("SELECT data FROM blocks WHERE height=2").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    page = raw.find(data) // size * size
    assert page > 0
    raw[page : page + 8] = b"\xff" * 8  # the b-tree page header of the page holding block 2
    db.write_bytes(bytes(raw))
    result = runner.invoke(app, ["chain", "verify", "-d", str(d)])
    assert result.exit_code in (1, 2)
    assert "Traceback" not in result.stdout + result.stderr
    assert (
        "damaged" in " ".join((result.stdout + result.stderr).split()) or "broken" in result.stderr
    )


def test_export_matches_the_chain(chain: tuple[Path, list[str]]) -> None:
    d, ids = chain
    out = d.parent / "chain.jsonl"
    assert json.loads(run("chain", "export", "--out", out, "-d", d, "--json"))["blocks"] == 5
    *lines, seal = out.read_text().splitlines()
    assert len(lines) == 5 and json.loads(seal)["type"] == "sharechain/export-seal/v1"
    verified = json.loads(run("verify-export", out, "--json"))
    assert verified == {"verified": True, "blocks": 5, "head": json.loads(lines[-1])["hash"]}
    cut = d.parent / "cut.jsonl"
    cut.write_text("\n".join([*lines[:-1], seal]) + "\n")
    assert "covers 5 blocks, the export holds 4" in run("verify-export", cut, code=1)
    prev = "00" * 32
    for n, line in enumerate(lines):
        rec = json.loads(line)
        assert rec["height"] == n and rec["header"]["prev_hash"] == prev
        assert hashlib.sha256(bytes.fromhex(rec["header_cbor"])).hexdigest() == rec["hash"]
        prev = rec["hash"]
    assert json.loads(lines[1])["txs"][0]["id"] == ids[0]
    info = json.loads(run("chain", "info", "-d", d, "--json"))
    assert json.loads(lines[-1])["hash"] == info["head_hash"]
    assert json.loads(lines[-1])["state_root"] == info["state_root"]


def test_proof(chain: tuple[Path, list[str]]) -> None:
    d, ids = chain
    proof = json.loads(run("chain", "proof", ids[2], "-d", d, "--json"))
    for field in (
        "tx_id",
        "height",
        "leaf_index",
        "tree_size",
        "audit_path",
        "tx_root",
        "header",
        "header_hash",
    ):
        assert field in proof
    assert proof["tx_id"] == ids[2] and proof["height"] == 3
    leaf = hashlib.sha256(b"\x00" + bytes.fromhex(ids[2])).hexdigest()
    assert proof["tree_size"] == 1 and proof["audit_path"] == [] and leaf == proof["tx_root"]
    header = {
        k: bytes.fromhex(v) if k.endswith(("hash", "root")) else v
        for k, v in proof["header"].items()
    }
    assert hashlib.sha256(cbor2.dumps(header, canonical=True)).hexdigest() == proof["header_hash"]
    assert "verified" in run("chain", "proof", ids[2], "-d", d)
    assert "not on this chain" in run("chain", "proof", "ab" * 32, "-d", d, code=2)
    assert "not a transaction id" in run("chain", "proof", "xyz", "-d", d, code=2)
