"""`sharechain ui user add|list|role|remove`: the operator accounts of a node's console.

Accounts live in the node's data directory (`console.db`), so run these on
the node's machine with the node's `--data-dir`. The password is asked for
twice on a terminal, or read from the first line of standard input with
`--password-stdin` (for scripts). A running node sees changes at once.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from sharechain.api.wire import iso
from sharechain.cli.common import (
    DataDirOpt,
    JsonOpt,
    command_group,
    emit_json,
    fail,
    handle_errors,
    print_table,
    resolve_data_dir,
)
from sharechain.web.accounts import ROLES, Account, Accounts

__all__ = ["register"]

RoleOpt = Annotated[
    str, typer.Option("--role", help=f"One of {', '.join(ROLES)}.", show_default=True)
]


def _accounts(data_dir: DataDirOpt) -> Accounts:
    path = resolve_data_dir(data_dir)
    if not path.is_dir():
        fail(f"{path} is not a data directory; give the node's --data-dir")
    return Accounts(path)


def _json(a: Account) -> dict[str, object]:
    return {"name": a.name, "role": a.role, "created_at": iso(int(a.created_at * 1000))}


def add(
    name: Annotated[str, typer.Argument(help="Login name of the operator.")],
    role: RoleOpt = "viewer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add an operator account to this node's console."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    accounts = _accounts(data_dir)
    try:
        with handle_errors():
            account = accounts.add(name, role, password)
    finally:
        accounts.close()
    if json_out:
        emit_json(_json(account))
    else:
        typer.echo(f"operator {account.name} added as {account.role}")


def list_cmd(data_dir: DataDirOpt = None, json_out: JsonOpt = False) -> None:
    """List the operator accounts of this node's console."""
    accounts = _accounts(data_dir)
    try:
        found = accounts.all()
    finally:
        accounts.close()
    if json_out:
        emit_json([_json(a) for a in found])
        return
    rows = ((a.name, a.role, iso(int(a.created_at * 1000))) for a in found)
    print_table(f"{len(found)} operator(s)", ("name", "role", "added"), rows)


def role(
    name: Annotated[str, typer.Argument(help="Login name of the operator.")],
    new_role: RoleOpt = "viewer",
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Change an operator's role (a running console applies it at the next request)."""
    accounts = _accounts(data_dir)
    try:
        with handle_errors():
            account = accounts.set_role(name, new_role)
    finally:
        accounts.close()
    if json_out:
        emit_json(_json(account))
    else:
        typer.echo(f"operator {account.name} is now {account.role}")


def remove(
    name: Annotated[str, typer.Argument(help="Login name of the operator.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Remove an operator account (its open sessions end at their next request)."""
    accounts = _accounts(data_dir)
    try:
        with handle_errors():
            accounts.remove(name)
    finally:
        accounts.close()
    typer.echo(f"operator {name} removed")


def register(app: typer.Typer) -> None:
    ui = command_group("ui", "The node's browser console (served under /ui).")
    user = command_group("user", "Operator accounts of this node's console.")
    user.command("add")(add)
    user.command("list")(list_cmd)
    user.command("role")(role)
    user.command("remove")(remove)
    ui.add_typer(user)
    app.add_typer(ui)
