"""Proofs anyone can check with nothing but the file: bundles, exports, checkpoints.

`verify-bundle`, `verify-export` and `checkpoint show` need no data directory
and no network; `checkpoint verify` checks offline against the members'
verifier keys (`--vkey`), or against the chain in the data directory. A failed
verification exits with code 1 and the reason. Making proofs is `proofs_cmd`,
which registers these commands; the file helpers here (`read_text`,
`refused`, `write_or_print`) serve the other proof commands too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from sharechain.cli.common import (
    DataDirOpt,
    JsonOpt,
    command_group,
    console,
    emit_json,
    fail,
    open_embedded,
)
from sharechain.contracts import default_registry
from sharechain.contracts.bundle_objects import check_object
from sharechain.crypto.signed_note import parse_note
from sharechain.errors import SharechainError
from sharechain.ledger.bundles import load_bundle, verify_bundle
from sharechain.ledger.checkpoints import (
    Checkpoint,
    CheckpointError,
    block_hashes,
    checkpoint_of,
    origin_for,
    parse_checkpoint,
    roster_from_verifier_keys,
    store_roster,
    verify_checkpoint,
)
from sharechain.ledger.export import verify_export
from sharechain.text import terminal_safe

__all__ = [
    "FileArg",
    "OutOpt",
    "checkpoint_app",
    "checkpoint_fields",
    "read_text",
    "refused",
    "verify_bundle_cmd",
    "verify_export_cmd",
    "write_or_print",
]

checkpoint_app = command_group("checkpoint", "Show and verify signed checkpoints (C2SP notes).")

FileArg = Annotated[Path, typer.Argument(help="The file to read.", exists=True, dir_okay=False)]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file.")]


def read_text(path: Path) -> str:
    try:
        return path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {exc}")


def refused(what: str, exc: SharechainError) -> NoReturn:
    fail(f"{what} does not verify: {exc}", code=1)


def write_or_print(text: str, out: Path | None, what: str) -> None:
    if out is None:
        typer.echo(text, nl=False)
        return
    out.write_text(text, "utf-8")
    console.print(f"wrote {what} to [bold]{out}[/]", highlight=False)


def verify_bundle_cmd(file: FileArg, json_out: JsonOpt = False) -> None:
    """Check a proof bundle offline: exit 0 if it proves its object, 1 and why if not."""
    try:
        doc = load_bundle(file.read_bytes())
        proved = verify_bundle(doc)
        shows = check_object(proved, doc.get("object"))
    except SharechainError as exc:
        refused("the bundle", exc)
    cp, subject = proved.checkpoint, proved.subject
    out = {
        "verified": True,
        "height": subject.height,
        "checkpoint_size": cp.size,
        "tx_id": subject.stx.id.hex(),
        "type": subject.stx.tx.type,
        "sender": subject.stx.tx.sender,
        "object": doc.get("object", {"kind": "transaction"}),
        "shows": shows,
        "validation_code_proved": True,
        "code": subject.code,
        "reason": subject.reason,
    }
    if json_out:
        emit_json({**out, "origin": cp.origin})
        return
    console.print(
        f"verified: {terminal_safe(shows)}; covered by a quorum checkpoint of {cp.size} "
        f"blocks of {cp.origin} (inclusion, signature and validation code "
        f"{terminal_safe(subject.code)!r} proved"
        + (f": {terminal_safe(subject.reason)}" if subject.reason else "")
        + ")",
        highlight=False,
    )


def verify_export_cmd(file: FileArg, json_out: JsonOpt = False) -> None:
    """Check an export file offline: every block replayed, every line as written, the seal."""
    try:
        with file.open(encoding="utf-8") as f:
            summary = verify_export(f, default_registry())
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {exc}")
    except SharechainError as exc:
        refused("the export", exc)
    out = {"verified": True, "blocks": summary.blocks, "head": summary.head.hex()}
    if json_out:
        emit_json(out)
        return
    console.print(
        f"verified: {summary.blocks} blocks, sealed by a quorum checkpoint; head {out['head']}",
        highlight=False,
    )


def checkpoint_fields(cp: Checkpoint, signers: list[str]) -> dict[str, Any]:
    return {"origin": cp.origin, "size": cp.size, "root": cp.root.hex(), "signers": signers}


@checkpoint_app.command("show")
def checkpointcheckpoint_fields(file: FileArg, json_out: JsonOpt = False) -> None:
    """Print a signed checkpoint's origin, size, root and signers (no verification)."""
    try:
        note = parse_note(read_text(file))
        cp = parse_checkpoint(note.text)
    except SharechainError as exc:
        fail(f"not a signed checkpoint: {exc}", code=1)
    shown = checkpoint_fields(cp, [s.name for s in note.signatures])
    if json_out:
        emit_json(shown)
        return
    for k, v in shown.items():
        console.print(f"{k}: {', '.join(v) if isinstance(v, list) else v}", highlight=False)


@checkpoint_app.command("verify")
def checkpoint_verify(
    file: FileArg,
    vkey: Annotated[
        list[str] | None,
        typer.Option("--vkey", help="A member's verifier key (offline: no data dir)."),
    ] = None,
    quorum: Annotated[int, typer.Option(help="With --vkey: signatures needed (0: majority).")] = 0,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check a checkpoint. With --vkey (one per member, from `proof vkeys`): offline, a
    quorum of those keys signed it. Without: against this chain, a quorum of today's
    members signed it and its tree is a prefix of (or equal to) this chain's."""
    text = read_text(file)
    try:
        if vkey:
            cp = verify_checkpoint(text, roster_from_verifier_keys(vkey, quorum))
        else:
            cp = _against_chain(text, data_dir)
    except SharechainError as exc:
        refused("the checkpoint", exc)
    shown = checkpoint_fields(cp, [s.name for s in parse_note(text).signatures])
    if json_out:
        emit_json({**shown, "verified": True})
        return
    console.print(f"verified: quorum checkpoint of {cp.size} blocks of {cp.origin}")


def _against_chain(text: str, data_dir: Path | None) -> Checkpoint:
    with open_embedded(data_dir) as emb:
        hashes, roster = block_hashes(emb.store), store_roster(emb.store)
    cp = verify_checkpoint(text, roster, origin=origin_for(hashes[0]))
    if cp.size > len(hashes):
        raise CheckpointError(f"it covers {cp.size} blocks, this chain has {len(hashes)}")
    if checkpoint_of(hashes[: cp.size], cp.origin).root != cp.root:
        raise CheckpointError("its root is not this chain's history at that size: a fork")
    return cp
