"""The embedded consortium and masking profile the masking command-line tests share."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from sharechain.cli.main import app
from sharechain.storage.datadir import OrgSpec, init_consortium

ORGS = (
    OrgSpec("hospital-a", ("member", "admin")),
    OrgSpec("insurer", ("member",)),
    OrgSpec("regulator", ("member", "supervisor", "admin")),
)
PROFILE = """\
k: 2
quasi_identifiers: [age]
columns:
  patient_id: tokenize
  age: {rule: generalise, width: 10}
"""


def init_home(tmp_path: Path) -> Path:
    """A new embedded consortium of `ORGS` under `tmp_path`."""
    init_consortium(tmp_path / "c", ORGS)
    return tmp_path / "c"


def run(home: Path, *args: str) -> tuple[int, str]:
    """Run the command line on `home`: (exit code, output)."""
    result = CliRunner().invoke(app, [*args, "--data-dir", str(home)])
    return result.exit_code, result.output
