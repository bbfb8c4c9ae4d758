"""Shared pieces of the command line: options, output, error handling."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from sharechain.errors import SharechainError
from sharechain.sharing.embedded import Embedded
from sharechain.storage.datadir import default_data_dir
from sharechain.text import terminal_safe

__all__ = [
    "AsOrg",
    "DataDirOpt",
    "JsonOpt",
    "KeyOpt",
    "NetworkOpt",
    "NodeOpt",
    "SignerOpt",
    "console",
    "emit_json",
    "fail",
    "print_table",
    "resolve_data_dir",
    "shown",
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


def resolve_data_dir(path: Path | None) -> Path:
    return path if path is not None else default_data_dir()


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `message` as one line (never wrapped) and exit with `code`."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def shown(text: str) -> str:
    """Text another member wrote (titles, reasons, names), safe to print with rich.

    Control, bidi and invisible characters become visible escapes
    (`sharechain.text.terminal_safe`) and rich markup is escaped, so a title can
    neither move the cursor, reorder what the operator reads, nor restyle the output.
    """
    return escape(terminal_safe(text))


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str | Text]]) -> None:
    """Print a listing as a rich table: one column per name, one row per record.

    Every plain string cell is passed through `shown`; a cell that needs styling
    is given as a `rich.text.Text`, whose content rich never parses as markup.
    """
    table = Table(title=shown(title))
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(c if isinstance(c, Text) else shown(c) for c in row))
    console.print(table)


@contextmanager
def handle_errors() -> Iterator[None]:
    try:
        yield
    except SharechainError as exc:
        fail(str(exc))


def command_group(name: str, help: str) -> typer.Typer:
    return typer.Typer(name=name, help=help, no_args_is_help=True, add_completion=False)


Registrar = Callable[[typer.Typer], None]


@contextmanager
def open_embedded(path: Path | None, *, check_store: bool = True) -> Iterator[Embedded]:
    """Open the embedded data directory directly (the proof tools read its store).

    Sharechain errors become clear exits; `check_store=False` only for tools that
    verify the store themselves.
    """
    with handle_errors():
        emb = Embedded(resolve_data_dir(path), check_store=check_store)
    try:
        with handle_errors():
            yield emb
    finally:
        emb.close()
