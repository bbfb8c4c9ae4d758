"""Shared pieces of the command line: options, output, error handling."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from sharechain.cli.options import (
    AsOrg,
    DataDirOpt,
    JsonOpt,
    KeyOpt,
    NetworkOpt,
    NodeOpt,
    SignerOpt,
    console,
    err_console,
    fail,
)
from sharechain.errors import SharechainError
from sharechain.storage.datadir import default_data_dir
from sharechain.text import terminal_safe

if TYPE_CHECKING:
    from sharechain.sharing.embedded import Embedded

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
    "err_console",
    "fail",
    "print_table",
    "resolve_data_dir",
    "shown",
]


def resolve_data_dir(path: Path | None) -> Path:
    return path if path is not None else default_data_dir()


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
        from sharechain.sharing.embedded import Embedded

        emb = Embedded(resolve_data_dir(path), check_store=check_store)
    try:
        with handle_errors():
            yield emb
    finally:
        emb.close()
