"""`sharechain verify-bundle`, `checkpoint show|verify`, `proof checkpoint|consistency|bundle`,
`credential issue|present|verify`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharechain.cli.main import app
from sharechain.storage.datadir import DataDir

runner = CliRunner()


def run(*args: str | Path, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    if "--json" in args:
        return result.stdout
    return " ".join((result.stdout + result.stderr).split())


@pytest.fixture
def chain(tmp_path: Path) -> tuple[Path, str]:
    d = tmp_path / "data"
    run("init", "-d", d, "--member", "bank-a", "--member", "bank-b", "--supervisor", "regulator")
    f = tmp_path / "f"
    f.write_bytes(b"hello\n")
    tx = json.loads(run("notarize", f, "--as", "bank-a", "-d", d, "--json"))["tx_id"]
    f.write_bytes(b"again\n")
    run("notarize", f, "--as", "bank-b", "-d", d)
    return d, tx


def test_bundle_round_trip_needs_no_data_dir(chain: tuple[Path, str], tmp_path: Path) -> None:
    d, tx = chain
    out = tmp_path / "bundle.json"
    assert "wrote the bundle" in run("proof", "bundle", tx, "-o", out, "-d", d)
    ok = json.loads(run("verify-bundle", out, "--json"))
    assert ok["verified"] is True and ok["height"] == 1 and ok["checkpoint_size"] == 3
    assert "verified: the transaction is in block 1" in run("verify-bundle", out)
    doc = json.loads(out.read_text())
    doc["txs"][0]["index"] = 5
    out.write_text(json.dumps(doc))
    err = run("verify-bundle", out, code=1)
    assert "the bundle does not verify" in err and "is not in block 1" in err
    out.write_text("{")
    assert "not JSON" in run("verify-bundle", out, code=1)


def test_checkpoint_show_verify_and_consistency(chain: tuple[Path, str], tmp_path: Path) -> None:
    d, _ = chain
    cp = tmp_path / "cp.txt"
    run("proof", "checkpoint", "-d", d, "-o", cp)
    shown = json.loads(run("checkpoint", "show", cp, "--json"))
    assert shown["size"] == 3 and len(shown["signers"]) == 3
    assert shown["origin"].startswith("sharechain/")
    assert json.loads(run("checkpoint", "verify", cp, "-d", d, "--json"))["verified"] is True
    vkeys = json.loads(run("proof", "vkeys", "-d", d, "--json"))["vkeys"]
    offline = [a for k in vkeys for a in ("--vkey", k)]
    assert json.loads(run("checkpoint", "verify", cp, *offline, "--json"))["verified"] is True
    err = run("checkpoint", "verify", cp, *offline[:2], "--quorum", "1", code=1)
    assert "unknown key" in err
    cp.write_text(cp.read_text().replace("\n3\n", "\n2\n", 1))
    assert "does not verify" in run("checkpoint", "verify", cp, "-d", d, code=1)
    proof = json.loads(run("proof", "consistency", "2", "3", "-d", d, "--json"))
    assert proof["old_size"] == 2 and len(proof["proof"]) >= 1
    assert "0 < OLD <= NEW" in run("proof", "consistency", "3", "2", "-d", d, code=2)
    f = tmp_path / "more"
    f.write_bytes(b"more\n")
    run("proof", "checkpoint", "-d", d, "-o", cp)
    run("notarize", f, "--as", "regulator", "-d", d)
    linked = json.loads(run("proof", "consistency", cp, "4", "-d", d, "--json"))
    assert linked["old_size"] == 3 and linked["new_size"] == 4
    lines = cp.read_text().split("\n")
    lines[2] = "A" * 43 + "="
    cp.write_text("\n".join(lines))
    assert "a fork" in run("proof", "consistency", cp, "4", "-d", d, code=1)
    cp.write_text("not a note\n")
    assert "neither a tree size" in run("proof", "consistency", cp, "4", "-d", d, code=2)
    assert "not a signed checkpoint" in run("checkpoint", "show", cp, code=1)


def test_credential_issue_present_verify(chain: tuple[Path, str], tmp_path: Path) -> None:
    d, _ = chain
    cred, pres = tmp_path / "cred", tmp_path / "pres"
    issued = run(
        "credential",
        "issue",
        "bank-a",
        "--as",
        "regulator",
        "-d",
        d,
        "-o",
        cred,
        "--claim",
        "licensed=bank",
        "--claim",
        "member_since=2024",
        "--disclosable",
        "licensed",
        "--disclosable",
        "member_since",
    )
    assert "recorded as transaction" in issued
    refused = run(
        "credential", "issue", "bank-a", "--as", "bank-b", "--claim", "a=b", "-d", d, code=2
    )
    assert "not an active supervisor" in refused
    run(
        "credential",
        "present",
        cred,
        "--as",
        "bank-a",
        "--aud",
        "partner",
        "--nonce",
        "n1",
        "--reveal",
        "licensed",
        "-d",
        d,
        "-o",
        pres,
    )
    key = DataDir.open(d).keys("regulator").signing.public_key.hex()
    claims = json.loads(
        run(
            "credential",
            "verify",
            pres,
            "--issuer-key",
            key,
            "--aud",
            "partner",
            "--nonce",
            "n1",
            "--json",
        )
    )
    assert claims["licensed"] == "bank" and claims["sub"] == "bank-a"
    assert "member_since" not in claims
    err = run(
        "credential", "verify", pres, "--issuer-key", key, "--aud", "x", "--nonce", "n1", code=1
    )
    assert "another audience" in err
    assert "lacks its key-binding JWT" in run(
        "credential",
        "verify",
        cred,
        "--issuer-key",
        key,
        "--aud",
        "partner",
        "--nonce",
        "n1",
        code=1,
    )


def test_disclosure_commit_notarise_reveal_verify(chain: tuple[Path, str], tmp_path: Path) -> None:
    d, _ = chain
    record, holder, shown = tmp_path / "rec.json", tmp_path / "holder.json", tmp_path / "shown"
    record.write_text(json.dumps({"degree": "MSc", "name": "Ada", "year": 2024}))
    made = json.loads(
        run("disclosure", "commit", record, "-o", holder, "--as", "bank-a", "-d", d, "--json")
    )
    fp = made["fingerprint"]
    # The fingerprint is on the chain, and a bundle proves its record.
    bundle = tmp_path / "b.json"
    run("proof", "bundle", made["tx_id"], "-o", bundle, "-d", d)
    assert json.loads(run("verify-bundle", bundle, "--json"))["verified"] is True
    run("disclosure", "reveal", holder, "--field", "degree", "-o", shown)
    fields = json.loads(run("disclosure", "verify", shown, "--fingerprint", fp, "--json"))
    assert fields == {"degree": "MSc"}
    doc = json.loads(shown.read_text())
    doc["hidden"] = doc["hidden"][1:]
    shown.write_text(json.dumps(doc))
    err = run("disclosure", "verify", shown, "--fingerprint", fp, code=1)
    assert "the disclosure does not verify" in err and "fingerprint" in err
    assert "no field" in run("disclosure", "reveal", holder, "--field", "age", code=2)


def test_chain_checkpoint_and_consistency_on_the_embedded_default(
    chain: tuple[Path, str], tmp_path: Path
) -> None:
    d, _ = chain
    cp = json.loads(run("chain", "checkpoint", "-d", d, "--json"))
    assert cp["size"] == 3 and len(cp["signers"]) == 3  # every member key is held here
    proof = json.loads(run("chain", "consistency", "2", "3", "-d", d, "--json"))
    assert proof["new_root"] == cp["root"] and len(proof["proof"]) >= 1
    assert "0 < OLD <= NEW" in run("chain", "consistency", "3", "2", "-d", d, code=2)
    forged = tmp_path / "forged.note"
    text = cp["note"].replace(cp["note"].split("\n")[2], "A" * 43 + "=")
    forged.write_text(text)
    refused = run("chain", "consistency", forged, "3", "-d", d, code=1)
    assert "not this chain's history: a fork" in refused
