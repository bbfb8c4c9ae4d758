"""`sharechain init`: create a development consortium."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from sharechain.cli.common import (
    DataDirOpt,
    JsonOpt,
    console,
    emit_json,
    handle_errors,
    resolve_data_dir,
)
from sharechain.sharing.plane import Plane
from sharechain.storage.datadir import OrgSpec, init_consortium

__all__ = ["register"]


def init(
    data_dir: DataDirOpt = None,
    member: Annotated[
        list[str] | None, typer.Option("--member", help="A member organisation (repeatable).")
    ] = None,
    supervisor: Annotated[
        list[str] | None,
        typer.Option("--supervisor", help="A supervisory organisation, e.g. a regulator."),
    ] = None,
    admin: Annotated[
        list[str] | None,
        typer.Option(
            "--admin",
            help="Give this organisation the admin role (default: every founding organisation).",
        ),
    ] = None,
    consortium: Annotated[str, typer.Option(help="Consortium name.")] = "dev-consortium",
    json_out: JsonOpt = False,
) -> None:
    """Create a development consortium: genesis and key files for every organisation."""
    members, supervisors = list(member or []), list(supervisor or [])
    admins = set(admin) if admin else set(members) | set(supervisors)
    specs = [
        OrgSpec(o, tuple(r for r in ("member", "admin") if r != "admin" or o in admins))
        for o in members
    ] + [
        OrgSpec(
            o, tuple(r for r in ("member", "supervisor", "admin") if r != "admin" or o in admins)
        )
        for o in supervisors
    ]
    path = resolve_data_dir(data_dir)
    with handle_errors():
        dd = init_consortium(path, specs, consortium=consortium)
        Plane.local(path).close()  # commits genesis into the ledger
    if json_out:
        emit_json(
            {
                "data_dir": str(path),
                "consortium": dd.consortium,
                "genesis_hash": dd.genesis_hash.hex(),
                "organisations": {s.id: list(s.roles) for s in specs},
            }
        )
        return
    table = Table(title=f"consortium {dd.consortium!r} created in {path}")
    table.add_column("organisation")
    table.add_column("roles")
    table.add_column("key file")
    for s in specs:
        table.add_row(s.id, ", ".join(s.roles), str(dd.key_path(s.id)))
    console.print(table)
    console.print(f"genesis hash [bold]{dd.genesis_hash.hex()}[/]")


def register(app: typer.Typer) -> None:
    app.command("init")(init)
