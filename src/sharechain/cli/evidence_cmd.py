"""`sharechain node evidence`: the members' invalid blocks a node kept, read back and checked.

A member's signed block that every node refused (it failed validation, or its
time was too far from the nodes' clocks: threats 41 and 43 in
docs/security.md) was voided so the chain went on, and each node kept it in
`<data dir>/evidence/` (`sharechain.node.evidence`). This command lists what a
data directory holds: each block's height, orderer, time, transactions, size
and SHA-256 (the name the node's ALERT gave it), whether the orderer's key as
the chain records it verifies the signature, and the block the chain holds at
that height instead. It only reads, so it runs beside the node.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import typer
from rich.table import Table

from sharechain.cli.common import (
    DataDirOpt,
    JsonOpt,
    console,
    emit_json,
    fail,
    handle_errors,
    resolve_data_dir,
)
from sharechain.cli.node_cmd import node_app
from sharechain.cli.notary_cmd import iso_time
from sharechain.contracts import default_registry
from sharechain.ledger.chain import Ledger
from sharechain.ledger.store import Store
from sharechain.node.evidence import DEFAULT_EVIDENCE_BYTES, Exhibit, examine
from sharechain.storage.datadir import DataDir

__all__ = ["register"]


def _read(path: Path) -> tuple[list[Exhibit], int, Path]:
    datadir = DataDir.open(path)
    budget = datadir.int_setting("evidence_bytes", DEFAULT_EVIDENCE_BYTES)
    folder = path / "evidence"
    if not datadir.db_path.exists():
        return examine(folder, lambda org: None, lambda height: None), budget, folder
    store = Store(datadir.db_path)
    try:
        ledger = Ledger(store, default_registry())
        return examine(folder, ledger.organisation, store.block_meta), budget, folder
    finally:
        store.close()


def evidence_cmd(data_dir: DataDirOpt = None, json_out: JsonOpt = False) -> None:
    """List the members' invalid blocks this node kept as evidence, their signatures checked."""
    path: Path = resolve_data_dir(data_dir)
    with handle_errors():
        try:
            found, budget, folder = _read(path)
        except sqlite3.DatabaseError as exc:
            fail(
                f"the ledger database is damaged ({exc}); the evidence files are in "
                f"{path / 'evidence'}, each a signed block: check them on another node"
            )
        except OSError as exc:
            fail(f"cannot read the evidence in {path / 'evidence'}: {exc}")
    held = sum(e.size for e in found)
    if json_out:
        emit_json(
            {
                "folder": str(folder),
                "bytes": held,
                "budget_bytes": budget,
                "blocks": [e.as_json() for e in found],
            }
        )
        return
    if not found:
        console.print(f"no evidence in {folder}: this node has voided no member's block")
        return
    table = Table(title=f"evidence in {folder}")
    for column in ("height", "orderer", "time", "txs", "bytes", "signature", "sha256"):
        table.add_column(
            column, justify="right" if column in ("height", "txs", "bytes") else "left"
        )
    for e in found:
        mark = {True: "[green]valid[/]", False: "[red]invalid[/]", None: "[yellow]?[/]"}[e.signed]
        table.add_row(
            "-" if e.height is None else str(e.height),
            e.orderer or "-",
            "-" if e.timestamp_ms is None else iso_time(e.timestamp_ms),
            "-" if e.transactions is None else str(e.transactions),
            f"{e.size:,}",
            f"{mark}: {e.signature}",
            e.digest[:16],
        )
    console.print(table)
    console.print(
        f"{len(found)} blocks, {held:,} bytes of the {budget:,} a node keeps "
        "(settings.evidence_bytes); move them somewhere safe to keep more"
    )


def register(app: typer.Typer) -> None:
    # `node_app` is already attached to the root by node_cmd (listed before this module).
    del app
    node_app.command("evidence")(evidence_cmd)
