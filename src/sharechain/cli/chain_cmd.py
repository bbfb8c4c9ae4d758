"""`sharechain chain info | verify | export | proof`: look at and check the ledger.

`verify` replays the whole chain from genesis (every hash link, signature,
Merkle root, validation code and state write) and names the first bad height;
`export` writes it as JSON Lines for independent checking (see
`docs/format.md`); `proof` prints a transaction's RFC 9162 inclusion proof.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from sharechain.cli.common import (
    DataDirOpt,
    JsonOpt,
    command_group,
    console,
    emit_json,
    err_console,
    fail,
    open_embedded,
)
from sharechain.cli.notary_cmd import iso_time, parse_tx_id
from sharechain.errors import ChainError, IntegrityError
from sharechain.ledger.chain import verify_chain
from sharechain.ledger.export import export_records
from sharechain.ledger.identities import org_from_value
from sharechain.ledger.proofs import prove_tx, verify_tx_proof
from sharechain.ledger.state import StateReader
from sharechain.node.embedded import Embedded

__all__ = ["register"]

app = command_group("chain", "Inspect, verify, export and prove the ledger.")


@contextmanager
def _opened(data_dir: Path | None) -> Iterator[Embedded]:
    """Open the data directory; a damaged database file becomes a clear error, not a traceback."""
    try:
        with open_embedded(data_dir) as emb:
            yield emb
    except sqlite3.DatabaseError as exc:
        fail(
            f"the ledger database is damaged ({exc}); restore ledger.db from a backup "
            "or re-sync the node from its peers"
        )


@contextmanager
def _progress(label: str, enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr, fed `(height, last height)` per block."""
    bar = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not enabled,
    )
    task = bar.add_task(label, total=None)

    def update(height: int, last: int) -> None:
        bar.update(task, completed=height + 1, total=last + 1)

    with bar:
        yield update


@app.command("info")
def info(data_dir: DataDirOpt = None, json_out: JsonOpt = False) -> None:
    """Consortium, height, head hash, state root, transaction count and organisations."""
    with _opened(data_dir) as emb:
        head = emb.store.head()
        if head is None:
            fail("the ledger holds no blocks yet")
        orgs = [org_from_value(v) for _, v in StateReader(emb.store).scan("org/")]
        report: dict[str, Any] = {
            "consortium": emb.datadir.consortium,
            "data_dir": str(emb.datadir.path),
            "genesis_hash": emb.datadir.genesis_hash.hex(),
            "height": head.height,
            "head_hash": head.hash.hex(),
            "head_time": iso_time(head.timestamp),
            "state_root": head.state_root.hex(),
            "transactions": emb.store.tx_count(),
            "organisations": {
                o.id: {
                    "roles": list(o.roles),
                    "status": o.status,
                    "sign_key_id": o.sign_key_id.hex(),
                }
                for o in orgs
            },
        }
    if json_out:
        emit_json(report)
        return
    table = Table(title=f"consortium {report['consortium']!r}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name in ("data_dir", "genesis_hash", "height", "head_hash", "head_time", "state_root"):
        table.add_row(name.replace("_", " "), str(report[name]))
    table.add_row("transactions", str(report["transactions"]))
    console.print(table)
    orgs_table = Table(title="organisations")
    orgs_table.add_column("id")
    orgs_table.add_column("roles")
    orgs_table.add_column("status")
    orgs_table.add_column("signing key id")
    for o in orgs:
        orgs_table.add_row(o.id, ", ".join(o.roles), o.status, o.sign_key_id.hex()[:16] + "...")
    console.print(orgs_table)


@app.command("verify")
def verify(data_dir: DataDirOpt = None, json_out: JsonOpt = False) -> None:
    """Re-verify the whole chain from genesis; exit 0 when intact, 1 naming the first bad height."""
    with _opened(data_dir) as emb, _progress("verifying blocks", not json_out) as progress:
        report = verify_chain(
            emb.store, emb.registry, genesis_hash=emb.datadir.genesis_hash, progress=progress
        )
    if json_out:
        emit_json(
            {
                "ok": report.ok,
                "height": report.height,
                "transactions": report.transactions,
                "bad_height": report.bad_height,
                "reason": report.reason,
                "state_root": report.state_root.hex(),
            }
        )
    elif report.ok:
        console.print(
            f"[bold green]chain intact[/]: {report.height + 1} blocks (0 to {report.height}), "
            f"{report.transactions} transactions, state root {report.state_root.hex()}",
            highlight=False,
        )
    else:
        where = "" if report.bad_height is None else f" at height {report.bad_height}"
        verified = (
            f"blocks 0 to {report.height} verified" if report.height >= 0 else "no block verified"
        )
        err_console.print(
            f"[bold red]chain broken{where}[/]: {report.reason}\n{verified}", highlight=False
        )
    if not report.ok:
        raise typer.Exit(1)


@app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="JSON Lines file to write.")],
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write every block as one JSON line (format: docs/format.md); the chain is checked first."""
    tmp = out.with_name(out.name + ".tmp")
    blocks = 0
    broken: ChainError | None = None
    try:
        with (
            _opened(data_dir) as emb,
            _progress("exporting blocks", not json_out) as progress,
            tmp.open("w", encoding="utf-8") as f,
        ):
            try:
                for record in export_records(emb.store, emb.registry, progress=progress):
                    f.write(json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n")
                    blocks += 1
            except ChainError as exc:
                broken = exc
        if broken is None:
            os.replace(tmp, out)
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    finally:
        tmp.unlink(missing_ok=True)
    if broken is not None:
        fail(f"not exported: {broken}; run `sharechain chain verify` for details", 1)
    if json_out:
        emit_json({"out": str(out), "blocks": blocks})
    else:
        console.print(f"exported {blocks} blocks to [bold]{out}[/]", highlight=False)


@app.command("proof")
def proof(
    tx_id: Annotated[str, typer.Argument(help="Transaction id (64 hex digits).")],
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The RFC 9162 inclusion proof of a transaction in its block, verified before it is shown."""
    target = parse_tx_id(tx_id)
    with _opened(data_dir) as emb:
        p = prove_tx(emb.store, target)
        meta = emb.store.block_meta(p.height)
        if meta is None:
            raise IntegrityError(f"block {p.height} is missing from the store")
        verify_tx_proof(p, meta.hash)
    if json_out:
        emit_json(p.to_json())
        return
    table = Table(title=f"inclusion proof of {target.hex()}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("height", str(p.height))
    table.add_row("validation code", p.code)
    table.add_row("leaf index", f"{p.leaf_index} of {p.tree_size}")
    table.add_row("audit path", "\n".join(x.hex() for x in p.audit_path) or "(empty: one leaf)")
    table.add_row("tx root", p.header.tx_root.hex())
    table.add_row("block hash", p.header_hash.hex())
    table.add_row("verified", "yes, against the stored block hash")
    console.print(table)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="chain")
