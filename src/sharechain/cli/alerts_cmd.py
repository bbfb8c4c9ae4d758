"""`sharechain alerts list|clear`: risk alerts raised by the chain's counters."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from sharechain.cli.common import (
    AsOrg,
    DataDirOpt,
    JsonOpt,
    command_group,
    console,
    emit_json,
    open_embedded,
)
from sharechain.cli.dataset_cmd import report, resolve
from sharechain.contracts import queries, risk
from sharechain.contracts.views import iso, to_json

__all__ = ["register"]


def list_cmd(
    all_: Annotated[bool, typer.Option("--all", help="Cleared alerts too.")] = False,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Open risk alerts (or all of them)."""
    with open_embedded(data_dir) as emb:
        found = queries.alerts(emb.store, open_only=not all_)
    if json_out:
        emit_json(to_json(found))
        return
    table = Table(title=f"{len(found)} alert(s)")
    for col in ("id", "org", "kind", "count", "window start", "suspends", "status"):
        table.add_column(col)
    for a in found:
        table.add_row(
            a.id[:12],
            a.org,
            a.kind,
            f"{a.count} > {a.threshold}",
            iso(a.window_start),
            "yes" if a.suspends else "no",
            a.status,
        )
    console.print(table)


def clear_cmd(
    alert: Annotated[str, typer.Argument(help="Alert id (or a unique prefix).")],
    as_org: AsOrg,
    note: Annotated[str, typer.Option(help="Why it is cleared.")] = "",
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Clear an alert (a supervisor); lifts its suspension."""
    with open_embedded(data_dir) as emb:
        aid = resolve(emb, "alert", alert)
        r = emb.submit(as_org, risk.CLEAR, {"alert": aid, "note": note})
    report(r, json_out, f"{as_org} cleared alert {aid[:12]}", alert=aid)


def register(app: typer.Typer) -> None:
    group = command_group("alerts", "Risk alerts: list, clear.")
    group.command("list")(list_cmd)
    group.command("clear")(clear_cmd)
    app.add_typer(group)
