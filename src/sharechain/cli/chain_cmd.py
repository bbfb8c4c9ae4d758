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
from typing import Annotated, Any, cast

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from sharechain.api.client import NodeClient
from sharechain.cli import proofs_cmd
from sharechain.cli.common import (
    DataDirOpt,
    JsonOpt,
    KeyOpt,
    NetworkOpt,
    NodeOpt,
    SignerOpt,
    command_group,
    console,
    emit_json,
    err_console,
    fail,
    open_embedded,
)
from sharechain.cli.notary_cmd import iso_time, parse_tx_id
from sharechain.cli.target import Target, open_plane
from sharechain.contracts import default_registry
from sharechain.errors import ChainError
from sharechain.ledger.export import export_records
from sharechain.ledger.export_seal import SEAL_TYPE
from sharechain.ledger.store import Head, Store
from sharechain.ledger.verify import VerifyReport, verify_ledger
from sharechain.sharing import agreement
from sharechain.sharing.agreement import AttestationReport
from sharechain.sharing.embedded import Embedded
from sharechain.sharing.plane import Plane
from sharechain.sharing.records import ChainInfo

__all__ = ["register"]

app = command_group("chain", "Inspect, verify, export and prove the ledger.")


@contextmanager
def _opened(
    data_dir: Path | None, target: Target, as_org: str | None, *, check_store: bool = True
) -> Iterator[Plane]:
    """`open_plane`; a damaged database file becomes a clear error, not a traceback.

    The commands that verify the store themselves open it unchecked, so a tampered
    store is reported with its bad height instead of refused on open.
    """
    try:
        with open_plane(data_dir, target, as_org, check_store=check_store) as chain:
            yield chain
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


def info_json(info: ChainInfo) -> dict[str, Any]:
    """`chain info --json`: the same document in both modes."""
    return {
        "consortium": info.consortium,
        "data_dir": info.data_dir,
        "node": info.node,
        "genesis_hash": info.genesis_hash.hex(),
        "height": info.height,
        "head_hash": info.head_hash.hex(),
        "head_time": iso_time(info.head_timestamp),
        "state_root": info.state_root.hex(),
        "transactions": info.transactions,
        "organisations": {
            o.id: {
                "roles": list(o.roles),
                "status": o.status,
                "sign_key_id": o.sign_key_id.hex(),
            }
            for o in info.organisations
        },
    }


@app.command("info")
def info(
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
    as_org: SignerOpt = None,
) -> None:
    """Consortium, height, head hash, state root, transaction count and organisations."""
    target = Target(node, network, key)
    with _opened(data_dir, target, as_org, check_store=False) as chain:
        found = chain.chain_info()
    report = info_json(found)
    if json_out:
        emit_json(report)
        return
    table = Table(title=f"consortium {report['consortium']!r}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    where = ("node", report["node"]) if report["node"] else ("data_dir", report["data_dir"])
    table.add_row(where[0].replace("_", " "), str(where[1]))
    for name in ("genesis_hash", "height", "head_hash", "head_time", "state_root"):
        table.add_row(name.replace("_", " "), str(report[name]))
    table.add_row("transactions", str(report["transactions"]))
    console.print(table)
    orgs_table = Table(title="organisations")
    orgs_table.add_column("id")
    orgs_table.add_column("roles")
    orgs_table.add_column("status")
    orgs_table.add_column("signing key id")
    for o in found.organisations:
        orgs_table.add_row(o.id, ", ".join(o.roles), o.status, o.sign_key_id.hex()[:16] + "...")
    console.print(orgs_table)


def _local_attestations(emb: Embedded, height: int) -> AttestationReport:
    node = agreement.read_node_file(emb.datadir.path)
    if node is None:
        return agreement.not_applicable(height)
    return agreement.compare_with_peers(emb.store, node, emb.datadir.keys(node.org))


def _remote_verification(client: NodeClient) -> tuple[VerifyReport, AttestationReport]:
    """What the node says of its own store (verified on start) and of its peers."""
    status = client.status()
    chain = client.get_json("/v1/chain")
    attest = client.attestation_status()
    problem = status.get("problem") or status.get("halted")
    report = VerifyReport(
        ok=problem is None,
        height=int(status["height"]),
        transactions=int(chain["transactions"]),
        bad_height=None,
        reason=str(problem or ""),
        state_root=bytes.fromhex(status["state_root"]),
    )
    return report, agreement.from_node_status(client.base_url, attest)


@app.command("verify")
def verify(
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
    as_org: SignerOpt = None,
) -> None:
    """Re-verify the whole chain from genesis and report the peers' attestations.

    Exit 0 when intact and no peer disagrees; 1 naming the first bad height or
    the conflicting peers. With --node/--network, the node reports the
    verification of its store (done on start) and its comparison with its peers.
    """
    with _opened(data_dir, Target(node, network, key), as_org, check_store=False) as plane:
        if plane.embedded is None:
            assert plane.client is not None
            report, attest = _remote_verification(plane.client)
        else:
            emb = plane.embedded
            with _progress("verifying blocks", not json_out) as progress:
                report = verify_ledger(
                    emb.store,
                    emb.registry,
                    genesis_hash=emb.datadir.genesis_hash,
                    progress=progress,
                )
            attest = _local_attestations(emb, report.height)
    if json_out:
        emit_json(
            {
                "ok": report.ok,
                "height": report.height,
                "transactions": report.transactions,
                "bad_height": report.bad_height,
                "reason": report.reason,
                "state_root": report.state_root.hex(),
                "attestations": attest.to_json(),
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
    if not json_out:
        _print_attestations(attest)
    if not report.ok or not attest.ok:
        raise typer.Exit(1)


def _print_attestations(attest: AttestationReport) -> None:
    if not attest.applicable:
        console.print(f"attestations: {attest.source}", highlight=False)
        return
    console.print(f"attestations ({attest.source}, our height {attest.height}):", highlight=False)
    for p in attest.peers:
        console.print(f"  {p.describe()}", highlight=False)
    if not attest.peers:
        console.print("  no peers", highlight=False)
    for c in attest.conflicts:
        err_console.print(f"[bold red]CONFLICT[/]: {c}", highlight=False)


class _NodeBlocks:
    """A node's chain, read the way `export_records` reads a store: head and blocks in order.

    Blocks come from `GET /v1/sync/blocks` (raw, as the node stores them) up to the
    head the node had when the export began, so the file is one consistent prefix.
    """

    def __init__(self, client: NodeClient, height: int) -> None:
        self.client = client
        self.height = height

    def head(self) -> Head | None:
        meta = self.client.block(self.height) if self.height >= 0 else None
        if meta is None:
            return None
        return Head(self.height, bytes.fromhex(meta["hash"]), b"", int(meta["timestamp"]))

    def iter_blocks(self, start: int = 0) -> Iterator[tuple[int, bytes]]:
        h = start
        while h <= self.height:
            page = self.client.sync_blocks(h, limit=64)
            if not page:
                raise ChainError(f"the node sent no block {h} (its head was {self.height})", h)
            for data in page:
                if h > self.height:
                    return
                yield h, data
                h += 1


@contextmanager
def _export_source(
    data_dir: Path | None, target: Target, as_org: str | None
) -> Iterator[Callable[[Callable[[int, int], None]], Iterator[dict[str, Any]]]]:
    """Export records of the embedded ledger, or of a node's chain (replayed and checked here).

    An unreachable or refusing node becomes a clear error; a chain that does not
    verify raises `ChainError` from the records, as on the embedded default.
    """
    with _opened(data_dir, target, as_org, check_store=False) as plane:
        size, seal = proofs_cmd.export_sealer(plane)  # the quorum checkpoint it ends with
        emb = plane.embedded
        if emb is not None:
            yield lambda p: export_records(emb.store, emb.registry, seal=seal, progress=p)
            return
        assert plane.client is not None and size is not None
        # export_records reads only head() and iter_blocks(): the node answers both.
        chain = cast(Store, _NodeBlocks(plane.client, size - 1))
        yield lambda p: export_records(chain, default_registry(), seal=seal, progress=p)


@app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="JSON Lines file to write.")],
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
    as_org: SignerOpt = None,
) -> None:
    """Write every block as one JSON line (format: docs/format.md); the chain is checked first.

    With --node/--network the blocks come from the node and are replayed and checked
    here, as on the embedded default; the file is the same.
    """
    target = Target(node, network, key)
    tmp = out.with_name(out.name + ".tmp")
    blocks = 0
    broken: ChainError | None = None
    try:
        with (
            _export_source(data_dir, target, as_org) as records,
            _progress("exporting blocks", not json_out) as progress,
            tmp.open("w", encoding="utf-8") as f,
        ):
            try:
                for record in records(progress):
                    f.write(json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n")
                    blocks += record.get("type") != SEAL_TYPE  # the last line seals
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
    tx_id: proofs_cmd.RefArg,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
    as_org: SignerOpt = None,
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            help="Write a self-contained proof bundle (checked by `verify-bundle`) here.",
        ),
    ] = None,
) -> None:
    """The RFC 9162 inclusion proof of a transaction in its block, verified before it is
    shown; with --bundle, a proof bundle of the transaction or of the object REF names."""
    if bundle is not None:
        if node is not None or network is not None:
            fail("proof bundles are built from a data directory; run with --data-dir")
        with open_embedded(data_dir) as emb:
            doc = proofs_cmd.bundle_for(emb, tx_id)
        proofs_cmd.emit_bundle(doc, bundle, json_out=False)
        return
    if ":" in tx_id:
        fail("a reference other than a transaction id needs --bundle OUT.json")
    target = parse_tx_id(tx_id)
    with _opened(data_dir, Target(node, network, key), as_org) as chain:
        p = chain.proof(target)
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
    table.add_row("verified", "yes, against the chain's block hash")
    console.print(table)


def register(root: typer.Typer) -> None:
    proofs_cmd.add_chain_commands(app)
    root.add_typer(app, name="chain")
