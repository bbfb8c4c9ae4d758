"""Operator accounts: the people who use a node's console, and what each may do.

An account belongs to one node (it lives in `console.db` in the node's data
directory), not to the consortium: the chain knows organisations, the console
knows the people acting for one. Roles:

- `viewer` reads every page;
- `approver` also approves and denies requests, revokes grants and clears alerts;
- `admin` also votes on membership proposals.

Passwords are hashed with Argon2id (argon2-cffi's defaults); the hash carries
its own parameters, so a later change of parameters re-hashes on the next
successful login.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from sharechain.errors import AuthenticationError, ConfigError, NotFoundError

__all__ = [
    "ACCOUNTS_FILE",
    "ACTION_ROLES",
    "MIN_PASSWORD",
    "ROLES",
    "VOTE_ROLES",
    "Account",
    "Accounts",
]

ACCOUNTS_FILE = "console.db"
ROLES = ("viewer", "approver", "admin")
ACTION_ROLES = frozenset({"approver", "admin"})
"""Roles that may approve, deny, revoke and clear alerts."""
VOTE_ROLES = frozenset({"admin"})
"""Roles that may vote on membership proposals."""
MIN_PASSWORD = 10
_NAME = re.compile(r"^[a-z][a-z0-9._-]{0,47}$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class Account:
    """An operator of one node's console."""

    name: str
    """Login name (lowercase letters, digits, `.`, `_`, `-`); recorded in the transactions
    the operator's actions produce."""
    role: str
    """`viewer`, `approver` or `admin`."""
    created_at: float
    """When the account was added (Unix seconds)."""


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(
            f"operator name {name[:60]!r} is not valid: use 1-48 lowercase letters, digits, "
            "'.', '_' or '-', starting with a letter"
        )
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ConfigError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return role


class Accounts:
    """The operator accounts of a node, in `<data dir>/console.db`. Thread-safe."""

    def __init__(
        self,
        data_dir: Path,
        *,
        hasher: PasswordHasher | None = None,
        now: Callable[[], float] | None = None,
    ) -> None:
        self.path = data_dir / ACCOUNTS_FILE
        self._hasher = hasher or PasswordHasher()
        self._now = now or time.time
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.path.chmod(0o600)
        self._db.execute(_SCHEMA)
        self._dummy = ""

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, name: str, role: str, password: str) -> Account:
        """Add an operator; refuses a taken name or a short password."""
        check_name(name)
        check_role(role)
        if len(password) < MIN_PASSWORD:
            raise ConfigError(f"the password must have at least {MIN_PASSWORD} characters")
        account = Account(name, role, self._now())
        digest = self._hasher.hash(password)
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO accounts (name, role, hash, created_at) VALUES (?, ?, ?, ?)",
                    (name, role, digest, account.created_at),
                )
            except sqlite3.IntegrityError:
                raise ConfigError(
                    f"operator {name} exists already; remove it first or pick another name"
                ) from None
        return account

    def set_role(self, name: str, role: str) -> Account:
        check_role(role)
        with self._lock:
            done = self._db.execute("UPDATE accounts SET role=? WHERE name=?", (role, name))
        if done.rowcount == 0:
            raise NotFoundError(f"no operator named {name}")
        return self.get(name)

    def remove(self, name: str) -> None:
        with self._lock:
            done = self._db.execute("DELETE FROM accounts WHERE name=?", (name,))
        if done.rowcount == 0:
            raise NotFoundError(f"no operator named {name}")

    def get(self, name: str) -> Account:
        with self._lock:
            row = self._db.execute(
                "SELECT name, role, created_at FROM accounts WHERE name=?", (name,)
            ).fetchone()
        if row is None:
            raise NotFoundError(f"no operator named {name}")
        return Account(*row)

    def find(self, name: str) -> Account | None:
        try:
            return self.get(name)
        except NotFoundError:
            return None

    def all(self) -> tuple[Account, ...]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, role, created_at FROM accounts ORDER BY name"
            ).fetchall()
        return tuple(Account(*r) for r in rows)

    def check(self, name: str, password: str) -> Account:
        """The account if `password` is its password; raises `AuthenticationError` if not."""
        with self._lock:
            row = self._db.execute(
                "SELECT name, role, created_at, hash FROM accounts WHERE name=?", (name,)
            ).fetchone()
        if row is None and not self._dummy:
            # Verified against when the name is unknown, so a wrong name costs as long as
            # a wrong password and timing does not reveal which names exist. Made on first
            # need: a node whose console nobody uses pays nothing.
            self._dummy = self._hasher.hash("not a password of anyone")
        try:
            self._hasher.verify(row[3] if row else self._dummy, password)
        except (VerificationError, InvalidHashError):
            row = None
        if row is None:
            raise AuthenticationError("wrong name or password")
        if self._hasher.check_needs_rehash(row[3]):
            with self._lock:
                self._db.execute(
                    "UPDATE accounts SET hash=? WHERE name=?", (self._hasher.hash(password), name)
                )
        return Account(row[0], row[1], row[2])
