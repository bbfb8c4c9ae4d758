"""`sharechain bench`: run the benchmarks that `make bench` prints."""

from __future__ import annotations

import importlib
from typing import Annotated

import typer
from rich.table import Table

from sharechain.cli.common import JsonOpt, console, emit_json, fail

__all__ = ["register"]

KINDS = {
    "ledger": "sharechain.bench.ledger",
    "workflow": "sharechain.bench.workflow",
    "aead": "sharechain.bench.aead",
    "share": "sharechain.bench.share",
    "network": "sharechain.bench.network",
}


def bench(
    kind: Annotated[str, typer.Argument(help=f"Which benchmark: {', '.join(KINDS)}.")],
    json_out: JsonOpt = False,
) -> None:
    """Run one benchmark and print its figures."""
    if kind not in KINDS:
        fail(f"unknown benchmark {kind!r}; choose one of: {', '.join(KINDS)}")
    try:
        module = importlib.import_module(KINDS[kind])
    except ModuleNotFoundError:
        fail(f"the {kind} benchmark is not available in this build")
    with console.status(f"running the {kind} benchmark ..."):
        figures = module.run()
    if json_out:
        emit_json(figures)
        return
    table = Table(title=f"{kind} benchmark")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in figures.items():
        table.add_row(name, f"{value:,}" if isinstance(value, int | float) else str(value))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
