"""`sharechain ui user add|list|role|remove` on a node's data directory."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from sharechain.cli.main import app
from sharechain.web.accounts import Accounts

runner = CliRunner()
PASSWORD = "correct horse battery"


def ui(*args: str | Path, stdin: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, ["ui", "user", *map(str, args)], input=stdin)
    return result.exit_code, " ".join((result.stdout + result.stderr).split())


def test_add_list_role_remove(tmp_path: Path) -> None:
    code, out = ui(
        "add",
        "anna",
        "--role",
        "approver",
        "--password-stdin",
        "-d",
        tmp_path,
        stdin=PASSWORD + "\n",
    )
    assert code == 0 and "operator anna added as approver" in out
    assert Accounts(tmp_path).check("anna", PASSWORD).role == "approver"
    code, out = ui("list", "-d", tmp_path, "--json")
    assert code == 0 and [a["name"] for a in json.loads(out)] == ["anna"]
    code, out = ui("role", "anna", "--role", "admin", "-d", tmp_path)
    assert code == 0 and "now admin" in out
    code, out = ui("remove", "anna", "-d", tmp_path)
    assert code == 0 and Accounts(tmp_path).find("anna") is None


def test_prompted_password_must_match(tmp_path: Path) -> None:
    code, out = ui("add", "vera", "-d", tmp_path, stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert code == 0 and "added as viewer" in out
    code, out = ui("add", "bob", "-d", tmp_path, stdin=f"{PASSWORD}\nsomething else\n")
    assert code != 0 and Accounts(tmp_path).find("bob") is None


def test_errors_say_what_to_do(tmp_path: Path) -> None:
    code, out = ui(
        "add", "anna", "--role", "root", "--password-stdin", "-d", tmp_path, stdin=PASSWORD + "\n"
    )
    assert code == 2 and "role 'root' is not one of viewer, approver, admin" in out
    code, out = ui("add", "anna", "--password-stdin", "-d", tmp_path, stdin="short\n")
    assert code == 2 and "at least 10 characters" in out
    code, out = ui("remove", "ghost", "-d", tmp_path)
    assert code == 2 and "no operator named ghost" in out
    code, out = ui("list", "-d", tmp_path / "missing")
    assert code == 2 and "not a data directory" in out
