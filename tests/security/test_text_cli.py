"""Another member's text reaches the operator's terminal inert (issue 14, item 15).

A title or a reason written by another organisation could carry terminal escape
sequences (move the cursor, rewrite earlier lines), bidirectional overrides
(show `exe.txt` as `txt.exe`) or rich markup (restyle or hide output). The
command line shows all of it as visible escapes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from typer.testing import CliRunner

from sharechain.cli.main import app

runner = CliRunner()
HOSTILE = "Blood\x1b[2J\x1b[1;1Htests \u202eexe.txt [bold red]FAKE[/] \x07"


def _run(*args: str | Path) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout + result.stderr


def _registered(tmp_path: Path) -> tuple[Path, str]:
    d = tmp_path / "data"
    _run("init", "-d", d, "--member", "hospital-a", "--member", "insurer",
         "--supervisor", "regulator")  # fmt: skip
    out = _run(
        "dataset", "register", "-d", d, "--as", "hospital-a", "--title", HOSTILE,
        "--plaintext-digest", hashlib.sha256(b"p").hexdigest(),
        "--ciphertext-digest", hashlib.sha256(b"c").hexdigest(), "--size", "1", "--json",
    )  # fmt: skip
    import json

    return d, str(json.loads(out)["dataset"])


def _inert(out: str) -> None:
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert ("FAKE" in out and "[bold red]FAKE[/]" in " ".join(out.split())) or "FAKE" in out


def test_a_hostile_title_is_shown_inert_in_listings(tmp_path: Path) -> None:
    d, _ = _registered(tmp_path)
    out = _run("dataset", "list", "-d", d)
    _inert(out)


def test_a_hostile_title_is_shown_inert_in_a_record_and_its_lineage(tmp_path: Path) -> None:
    d, ds = _registered(tmp_path)
    for command in ("show", "lineage"):
        out = _run("dataset", command, ds, "-d", d)
        _inert(out)


def test_json_output_keeps_the_exact_text(tmp_path: Path) -> None:
    """Machine output is not altered: a program reading --json gets the member's bytes."""
    import json

    d, ds = _registered(tmp_path)
    assert json.loads(_run("dataset", "show", ds, "-d", d, "--json"))["title"] == HOSTILE
