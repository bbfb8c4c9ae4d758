"""The root's options, `fail` and the consoles: what every command module needs, cheap to
import (`sharechain --help` imports only this of the command line's own modules)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

__all__ = [
    "AsOrg",
    "DataDirOpt",
    "JsonOpt",
    "KeyOpt",
    "NetworkOpt",
    "NodeOpt",
    "SignerOpt",
    "console",
    "err_console",
    "fail",
]

console = Console()
err_console = Console(stderr=True)

DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        "-d",
        help="Data directory (default: $SHARECHAIN_HOME or ~/.sharechain).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
AsOrg = Annotated[str, typer.Option("--as", help="Act as this organisation (its key signs).")]
SignerOpt = Annotated[
    str | None,
    typer.Option("--as", help="With --node/--network: the organisation signing the requests."),
]
NodeOpt = Annotated[
    str | None,
    typer.Option(
        "--node",
        envvar="SHARECHAIN_NODE",
        help="Run against this node's API (URL) instead of the embedded data directory.",
        show_default=False,
    ),
]
NetworkOpt = Annotated[
    Path | None,
    typer.Option(
        "--network",
        envvar="SHARECHAIN_NETWORK",
        help="Run against a node of this network file (from `sharechain network up`).",
        show_default=False,
    ),
]
KeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--key",
        help="With --node/--network: the signing organisation's key file.",
        show_default=False,
    ),
]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `message` as one line (never wrapped) and exit with `code`."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
