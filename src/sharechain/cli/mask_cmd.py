"""`sharechain mask check | apply`: desensitise a table under a masking profile.

`check` reports what `apply` would release (rows, achieved k and l, the share
of rows in the smallest groups, rows suppressed, columns changed) and exits 1
when the profile's targets are not met. `apply` writes the release, all or
nothing, with a progress bar on large files.

Tokenised columns need a key. `--key-from DATASET --grantee ORG` derives it
as `privacy.tokens` describes, from the dataset owner's X25519 private key in
the data directory (so only the owner's own node can mask, and re-identify),
for the dataset's current key epoch. Elsewhere, `--token-key-file` gives a
32-byte key as 64 hexadecimal digits.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeRemainingColumn
from rich.table import Table

from sharechain.cli.common import (
    DataDirOpt,
    JsonOpt,
    command_group,
    console,
    emit_json,
    fail,
    handle_errors,
    open_embedded,
)
from sharechain.contracts import queries
from sharechain.contracts.epochs import current_epoch
from sharechain.ledger.state import StateReader
from sharechain.privacy.profiles import load_profile

if TYPE_CHECKING:  # pyarrow and numpy load only when a mask command runs
    from sharechain.privacy.masking import MaskReport

__all__ = ["register", "report_json"]

_BAR_FROM = 32 << 20
"""Files at least this large (bytes) get a progress bar."""

FileArg = Annotated[Path, typer.Argument(help="The table: CSV with a header line, or Parquet.")]
ProfileOpt = Annotated[Path, typer.Option("--profile", "-p", help="The masking profile (YAML).")]


def report_json(report: MaskReport) -> dict[str, Any]:
    """A report as plain JSON values (epsilons as exact fractions in text)."""
    return {
        "rows_in": report.rows_in,
        "rows_out": report.rows_out,
        "suppressed": report.suppressed,
        "k_before": report.k_before,
        "k": report.k,
        "l": report.l,
        "groups": report.groups,
        "smallest_group_share": round(report.smallest_group_share, 6),
        "columns_changed": list(report.columns_changed),
        "columns_dropped": list(report.columns_dropped),
        "epsilon": {name: str(e) for name, e in report.epsilon},
        "epsilon_total": str(report.epsilon_total),
        "targets_met": report.targets_met,
    }


def _print(report: MaskReport, title: str) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("measure", style="bold")
    table.add_column("value")
    for name, value in report_json(report).items():
        text = ", ".join(value) if isinstance(value, list) else str(value)
        if isinstance(value, dict):
            text = ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
        table.add_row(name.replace("_", " "), text)
    console.print(table)


def check_cmd(file: FileArg, profile: ProfileOpt, json_out: JsonOpt = False) -> None:
    """Report what masking FILE under the profile would achieve (exit 1 if targets are missed)."""
    with handle_errors():
        from sharechain.privacy.masking import check

        report = check(load_profile(profile), file)
    if json_out:
        emit_json(report_json(report))
    else:
        _print(report, f"mask check {file.name}")
    if not report.targets_met:
        raise typer.Exit(1)


def _token_key(
    key_from: str | None, grantee: str | None, key_file: Path | None, data_dir: Path | None
) -> bytes | None:
    from sharechain.privacy.tokens import KEY_SIZE, derive_token_key  # pyarrow, numpy

    if key_from is not None and key_file is not None:
        fail("give --key-from or --token-key-file, not both")
    if key_file is not None:
        try:
            key = bytes.fromhex(key_file.read_text().strip())
        except (OSError, ValueError):
            fail(f"{key_file} does not hold a key of {2 * KEY_SIZE} hexadecimal digits")
        if len(key) != KEY_SIZE:
            fail(f"{key_file} does not hold a key of {2 * KEY_SIZE} hexadecimal digits")
        return key
    if key_from is None:
        if grantee is not None:
            fail("--grantee goes with --key-from DATASET")
        return None
    if grantee is None:
        fail("--key-from needs --grantee ORG: tokens are different for every grantee")
    with open_embedded(data_dir) as emb:
        ds = queries.dataset(emb.store, queries.resolve(emb.store, "dataset", key_from))
        owner = emb.keys(ds.owner)
        epoch = current_epoch(StateReader(emb.store), ds.id)
        token = derive_token_key(
            owner.encryption_private, ds.id, grantee, 1 if epoch is None else epoch.epoch
        )
    return token.key


def apply_cmd(
    file: FileArg,
    profile: ProfileOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the release.")],
    key_from: Annotated[
        str | None,
        typer.Option("--key-from", help="Derive the token key for this dataset (id or prefix)."),
    ] = None,
    grantee: Annotated[
        str | None, typer.Option("--grantee", help="With --key-from: the receiving organisation.")
    ] = None,
    token_key_file: Annotated[
        Path | None,
        typer.Option("--token-key-file", help="A 32-byte token key as 64 hex digits."),
    ] = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write the masked release of FILE to OUT (nothing is written on any error)."""
    key = _token_key(key_from, grantee, token_key_file, data_dir)
    parsed = None
    with handle_errors():
        parsed = load_profile(profile)
    show_bar = not json_out and file.is_file() and file.stat().st_size >= _BAR_FROM
    with (
        handle_errors(),
        Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not show_bar,
            transient=True,
        ) as bar,
    ):
        task = bar.add_task(f"masking {file.name}", total=None)
        from sharechain.privacy.masking import apply

        report = apply(
            parsed,
            file,
            out,
            token_key=key,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if json_out:
        emit_json({**report_json(report), "out": str(out)})
    else:
        _print(report, f"mask apply {file.name} -> {out}")


def register(app: typer.Typer) -> None:
    group = command_group("mask", "Desensitise tables: check a profile, apply it.")
    group.command("check")(check_cmd)
    group.command("apply")(apply_cmd)
    app.add_typer(group)
