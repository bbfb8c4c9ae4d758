"""`sharechain prove range` and `sharechain verify range`."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from typer.testing import CliRunner

from sharechain.cli.main import app
from sharechain.crypto import pedersen, rangeproof
from sharechain.crypto import ristretto as r255

runner = CliRunner()


def run(*args: str | Path, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    if "--json" in args:
        return result.stdout
    return " ".join((result.stdout + result.stderr).split())


def prove(tmp_path: Path, value: str = "41000", *extra: str) -> dict[str, object]:
    opening = tmp_path / "opening.json"
    out = json.loads(
        run(
            "prove",
            "range",
            value,
            "--bits",
            "16",
            "--context",
            "loan-7",
            "--opening",
            opening,
            "--json",
            *extra,
        )
    )
    return {**out, "opening_path": opening}


def test_prove_then_verify_and_open(tmp_path: Path) -> None:
    out = prove(tmp_path)
    assert len(bytes.fromhex(str(out["proof"]))) == rangeproof.proof_size(16)
    verified = json.loads(
        run(
            "verify",
            "range",
            "--commitment",
            str(out["commitment"]),
            "--proof",
            str(out["proof"]),
            "--bits",
            "16",
            "--context",
            "loan-7",
            "--json",
        )
    )
    assert verified == {"valid": True, "bits": 16, "context": "loan-7"}
    path = Path(str(out["opening_path"]))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())
    assert saved["value"] == 41000 and saved["commitment"] == out["commitment"]
    opening = pedersen.Opening(saved["value"], r255.decode_scalar(bytes.fromhex(saved["blinding"])))
    pedersen.verify_opening(bytes.fromhex(str(out["commitment"])), opening)
    proof_file = tmp_path / "proof.hex"
    proof_file.write_text(str(out["proof"]))
    text = run(
        "verify",
        "range",
        "--commitment",
        str(out["commitment"]),
        "--proof",
        f"@{proof_file}",
        "--bits",
        "16",
        "--context",
        "loan-7",
    )
    assert "valid" in text


def test_refused_proofs_exit_1_with_the_reason(tmp_path: Path) -> None:
    out = prove(tmp_path)
    base = ["verify", "range", "--commitment", str(out["commitment"])]
    other_context = run(
        *base, "--proof", str(out["proof"]), "--bits", "16", "--context", "loan-8", code=1
    )
    assert "does not verify" in other_context
    wider = run(*base, "--proof", str(out["proof"]), "--context", "loan-7", code=1)
    assert "for 32 bits" in wider
    tampered = bytearray(bytes.fromhex(str(out["proof"])))
    tampered[100] ^= 1
    refused = json.loads(
        run(
            *base,
            "--proof",
            tampered.hex(),
            "--bits",
            "16",
            "--context",
            "loan-7",
            "--json",
            code=1,
        )
    )
    assert refused["valid"] is False and "refused" in refused["reason"]


def test_bad_input_is_refused_clearly(tmp_path: Path) -> None:
    assert "must be in [0, 2^16)" in run("prove", "range", "65536", "--bits", "16", code=2)
    assert "not an integer" in run("prove", "range", "12.5", code=2)
    assert "--bits must be 1 to 64" in run("prove", "range", "1", "--bits", "65", code=2)
    assert "hexadecimal" in run("verify", "range", "--commitment", "zz", "--proof", "00", code=2)
    assert "cannot read proof" in run(
        "verify", "range", "--commitment", "00", "--proof", f"@{tmp_path / 'none'}", code=2
    )
    prove(tmp_path)
    again = run("prove", "range", "5", "--opening", tmp_path / "opening.json", code=2)
    assert "already exists" in again
    assert json.loads((tmp_path / "opening.json").read_text())["value"] == 41000


def test_without_an_opening_file_the_output_says_it_is_not_kept() -> None:
    text = run("prove", "range", "7", "--bits", "8")
    assert "opening not kept" in text and "commitment" in text
