"""`sharechain compute list|show` and `sharechain dataset budgets` on the embedded default."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from typer.testing import CliRunner

from sharechain.cli.main import app
from sharechain.contracts import derive_id
from sharechain.sharing.plane import Plane
from sharechain.storage.datadir import OrgSpec, init_consortium

ORGS = (
    OrgSpec("hospital-a", ("member", "admin")),
    OrgSpec("hospital-b", ("member", "admin")),
    OrgSpec("insurer", ("member",)),
    OrgSpec("regulator", ("member", "supervisor", "admin")),
)


def _digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def test_sessions_and_budgets_listed_from_the_embedded_chain(tmp_path: Path) -> None:
    home = tmp_path / "c"
    init_consortium(home, ORGS)
    psi = {
        "kind": "psi",
        "parties": ["hospital-a", "hospital-b"],
        "purpose": "blacklist match",
        "max_set_size": 10,
        "duration": 3_600_000,
    }
    dataset = {
        "title": "Claims",
        "description": "",
        "tags": [],
        "schema": [["id", "string"]],
        "classification": "internal",
        "plaintext_digest": _digest("p"),
        "ciphertext_digest": _digest("c"),
        "size": 10,
        "segment_root": _digest("s"),
        "custody": "owner",
        "holders": [],
    }
    with Plane.local(home) as plane:
        sid = derive_id("computation", plane.submit("hospital-a", "computation.propose", psi).tx_id)
        ds = derive_id("dataset", plane.submit("insurer", "dataset.register", dataset).tx_id)
    runner = CliRunner()
    listed = runner.invoke(
        app, ["compute", "list", "--party", "hospital-b", "-d", str(home), "--json"]
    )
    assert listed.exit_code == 0, listed.output
    (one,) = json.loads(listed.stdout)
    assert (one["id"], one["status"], one["approved_by"]) == (sid, "proposed", "")
    none = runner.invoke(app, ["compute", "list", "--party", "insurer", "-d", str(home)])
    assert none.exit_code == 0 and "0 computation(s)" in none.stdout
    shown = runner.invoke(app, ["compute", "show", sid[:8], "-d", str(home)])
    assert shown.exit_code == 0 and "purpose: blacklist match" in shown.stdout
    missing = runner.invoke(app, ["compute", "show", "ffff", "-d", str(home)])
    assert missing.exit_code != 0 and "Traceback" not in missing.output
    budgets = runner.invoke(app, ["dataset", "budgets", ds[:10], "-d", str(home), "--json"])
    assert budgets.exit_code == 0, budgets.output
    assert json.loads(budgets.stdout) == {"releases": [], "budgets": []}
