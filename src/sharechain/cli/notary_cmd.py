"""`sharechain notarize | endorse | check`: trusted records of files.

`notarize` records a file's SHA-256 (read streaming, so any size works),
`endorse` countersigns a record, and `check` looks a file up on the chain and
proves the recording transaction is in its block with an RFC 9162 inclusion
proof checked against the stored block hash.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sharechain.cli.common import (
    AsOrg,
    DataDirOpt,
    JsonOpt,
    KeyOpt,
    NetworkOpt,
    NodeOpt,
    SignerOpt,
    console,
    emit_json,
    fail,
)
from sharechain.cli.target import Target, open_plane
from sharechain.contracts.notary import ENDORSE, RECORD, NotaryRecord
from sharechain.ledger.proofs import TxProof

__all__ = ["file_digest", "iso_time", "parse_tx_id", "register"]

_CHUNK = 1 << 20

FileArg = Annotated[
    Path, typer.Argument(help="The file (read streaming; only its SHA-256 leaves this machine).")
]


def file_digest(path: Path) -> bytes:
    """SHA-256 of a file, read in 1 MiB chunks; fails with a clear message if unreadable."""
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except FileNotFoundError:
        fail(f"file {path} does not exist")
    except IsADirectoryError:
        fail(f"{path} is a directory; give a file")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
    return h.digest()


def parse_tx_id(text: str) -> bytes:
    """A transaction id given on the command line: 64 hex digits."""
    try:
        tx_id = bytes.fromhex(text.strip())
    except ValueError:
        tx_id = b""
    if len(tx_id) != 32:
        fail(f"{text!r} is not a transaction id (64 hexadecimal digits)")
    return tx_id


def iso_time(ms: int) -> str:
    """Block time (ms since the epoch) as ISO 8601 UTC, e.g. 2026-01-02T03:04:05.678Z."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def notarize(
    file: FileArg,
    as_org: AsOrg,
    note: Annotated[str, typer.Option(help="What the file is (free text).")] = "",
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """Record a file's SHA-256 on the chain."""
    digest = file_digest(file)
    with open_plane(data_dir, Target(node, network, key), as_org) as chain:
        receipt = chain.submit(as_org, RECORD, {"digest": digest, "note": note})
    if json_out:
        emit_json({"tx_id": receipt.tx_id.hex(), "height": receipt.height, "digest": digest.hex()})
        return
    console.print(
        f"recorded [bold]{file}[/] (sha256 {digest.hex()}) as {as_org}\n"
        f"transaction [bold]{receipt.tx_id.hex()}[/] in block [bold]{receipt.height}[/]",
        highlight=False,
    )


def endorse(
    tx_id: Annotated[str, typer.Argument(help="Id of the notary.record transaction.")],
    as_org: AsOrg,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """Countersign another organisation's notary record."""
    target = parse_tx_id(tx_id)
    with open_plane(data_dir, Target(node, network, key), as_org) as chain:
        receipt = chain.submit(as_org, ENDORSE, {"record": target})
    if json_out:
        emit_json({"tx_id": receipt.tx_id.hex(), "height": receipt.height, "record": target.hex()})
        return
    console.print(
        f"{as_org} endorsed record {target.hex()}\n"
        f"transaction [bold]{receipt.tx_id.hex()}[/] in block [bold]{receipt.height}[/]",
        highlight=False,
    )


def _check_json(rec: NotaryRecord, proof: TxProof, endorsement_proofs: list[TxProof]) -> Any:
    return {
        "recorded": True,
        "digest": rec.digest.hex(),
        "recorder": rec.recorder,
        "note": rec.note,
        "tx_id": rec.tx_id.hex(),
        "height": rec.height,
        "timestamp": rec.timestamp,
        "time": iso_time(rec.timestamp),
        "endorsements": [
            {
                "org": e.org,
                "tx_id": e.tx_id.hex(),
                "height": e.height,
                "timestamp": e.timestamp,
                "time": iso_time(e.timestamp),
                "proof_verified": True,
            }
            for e, _ in zip(rec.endorsements, endorsement_proofs, strict=True)
        ],
        "proof": proof.to_json(),
        "proof_verified": True,
    }


def check(
    file: FileArg,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
    as_org: SignerOpt = None,
) -> None:
    """Check a file against the chain: exit 0 if recorded (with proof), 1 if not."""
    digest = file_digest(file)
    with open_plane(data_dir, Target(node, network, key), as_org) as chain:
        rec = chain.notary(digest)
        if rec is None:
            if json_out:
                emit_json({"recorded": False, "digest": digest.hex()})
            else:
                console.print(
                    f"[bold red]not on the chain:[/] no organisation has recorded {file} "
                    f"(sha256 {digest.hex()})",
                    highlight=False,
                )
            raise typer.Exit(1)
        proof = chain.proof(rec.tx_id)
        endorsement_proofs = [chain.proof(e.tx_id) for e in rec.endorsements]
    if json_out:
        emit_json(_check_json(rec, proof, endorsement_proofs))
        return
    table = Table(title=f"{file} is on the chain", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("sha256", digest.hex())
    table.add_row("recorded by", rec.recorder)
    table.add_row("when", f"{iso_time(rec.timestamp)} (block time)")
    table.add_row("height", str(rec.height))
    table.add_row("transaction", rec.tx_id.hex())
    if rec.note:
        table.add_row("note", rec.note)
    table.add_row(
        "endorsements",
        "\n".join(
            f"{e.org} at height {e.height}, {iso_time(e.timestamp)}" for e in rec.endorsements
        )
        or "none",
    )
    table.add_row(
        "inclusion proof",
        f"verified: leaf {proof.leaf_index} of {proof.tree_size}, "
        f"{len(proof.audit_path)} path hashes, block hash {proof.header_hash.hex()}",
    )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("notarize")(notarize)
    app.command("endorse")(endorse)
    app.command("check")(check)
