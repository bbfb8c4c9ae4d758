"""Operator accounts: Argon2id hashes, roles, clear refusals."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sharechain.errors import AuthenticationError, ConfigError, NotFoundError
from sharechain.web.accounts import ACCOUNTS_FILE, Accounts

PASSWORD = "correct horse battery"


def test_add_check_and_hash_at_rest(tmp_path: Path) -> None:
    accounts = Accounts(tmp_path)
    accounts.add("anna", "approver", PASSWORD)
    assert accounts.check("anna", PASSWORD).role == "approver"
    stored = (
        sqlite3.connect(tmp_path / ACCOUNTS_FILE).execute("SELECT hash FROM accounts").fetchone()
    )
    assert stored[0].startswith("$argon2id$") and PASSWORD not in stored[0]
    assert (tmp_path / ACCOUNTS_FILE).stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(("name", "password"), [("anna", "wrong password!"), ("nobody", PASSWORD)])
def test_wrong_name_or_password_says_the_same(tmp_path: Path, name: str, password: str) -> None:
    accounts = Accounts(tmp_path)
    accounts.add("anna", "approver", PASSWORD)
    with pytest.raises(AuthenticationError, match=r"^wrong name or password$"):
        accounts.check(name, password)


@pytest.mark.parametrize(
    ("name", "role", "password", "message"),
    [
        ("Anna", "viewer", PASSWORD, "operator name"),
        ("anna<script>", "viewer", PASSWORD, "operator name"),
        ("anna", "root", PASSWORD, "role 'root' is not one of viewer, approver, admin"),
        ("anna", "viewer", "short", "at least 10 characters"),
    ],
)
def test_bad_accounts_are_refused(
    tmp_path: Path, name: str, role: str, password: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Accounts(tmp_path).add(name, role, password)


def test_duplicate_role_change_and_removal(tmp_path: Path) -> None:
    accounts = Accounts(tmp_path)
    accounts.add("anna", "viewer", PASSWORD)
    with pytest.raises(ConfigError, match="exists already"):
        accounts.add("anna", "admin", PASSWORD)
    assert accounts.set_role("anna", "admin").role == "admin"
    assert [a.name for a in accounts.all()] == ["anna"]
    accounts.remove("anna")
    assert accounts.find("anna") is None
    with pytest.raises(NotFoundError):
        accounts.remove("anna")
    with pytest.raises(NotFoundError):
        accounts.set_role("anna", "viewer")
