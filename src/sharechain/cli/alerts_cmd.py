"""`sharechain alerts list|clear`: risk alerts raised by the chain's counters."""

from __future__ import annotations

from typing import Annotated

import typer

from sharechain.api.wire import iso, to_json
from sharechain.cli.common import (
    AsOrg,
    DataDirOpt,
    JsonOpt,
    KeyOpt,
    NetworkOpt,
    NodeOpt,
    SignerOpt,
    command_group,
    emit_json,
    print_table,
)
from sharechain.cli.dataset_cmd import report
from sharechain.cli.target import Target, open_plane
from sharechain.contracts import risk

__all__ = ["register"]


def list_cmd(
    all_: Annotated[bool, typer.Option("--all", help="Cleared alerts too.")] = False,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
    as_org: SignerOpt = None,
) -> None:
    """Open risk alerts (or all of them; a node shows them to supervisors)."""
    with open_plane(data_dir, Target(node, network, key), as_org) as chain:
        found = chain.alerts(open_only=not all_)
    if json_out:
        emit_json(to_json(found))
        return
    print_table(
        f"{len(found)} alert(s)",
        ("id", "org", "kind", "count", "window start", "suspends", "status"),
        (
            (
                a.id[:12],
                a.org,
                a.kind,
                f"{a.count} > {a.threshold}",
                iso(a.window_start),
                "yes" if a.suspends else "no",
                a.status,
            )
            for a in found
        ),
    )


def clear_cmd(
    alert: Annotated[str, typer.Argument(help="Alert id (or a unique prefix).")],
    as_org: AsOrg,
    note: Annotated[str, typer.Option(help="Why it is cleared.")] = "",
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """Clear an alert (a supervisor); lifts its suspension."""
    with open_plane(data_dir, Target(node, network, key), as_org) as chain:
        aid = chain.resolve("alert", alert)
        r = chain.submit(as_org, risk.CLEAR, {"alert": aid, "note": note})
    report(r, json_out, f"{as_org} cleared alert {aid[:12]}", alert=aid)


def register(app: typer.Typer) -> None:
    group = command_group("alerts", "Risk alerts: list, clear.")
    group.command("list")(list_cmd)
    group.command("clear")(clear_cmd)
    app.add_typer(group)
