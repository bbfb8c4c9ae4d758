"""Making proofs anyone can check: checkpoints, consistency proofs, bundles.

`proof checkpoint | consistency | bundle`
read the data directory (the embedded store) and cosign with the keys held
there; `chain checkpoint | consistency` do the same on the embedded default and
ask the node with `--node`/`--network` (its quorum checkpoint, cosigned by the
nodes). The export's seal comes from here too (`export_sealer`).
Checking them with nothing but the file (`verify-bundle`, `verify-export`,
`checkpoint show | verify`) is `verify_cmd`; credentials and disclosable
records are `credentials_cmd`; both are registered from here. A failed
verification exits with code 1 and the reason.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from sharechain.cli import credentials_cmd
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
    fail,
    open_embedded,
)
from sharechain.cli.target import Target, open_plane
from sharechain.cli.verify_cmd import (
    FileArg,
    OutOpt,
    checkpoint_app,
    checkpoint_fields,
    read_text,
    refused,
    verify_bundle_cmd,
    verify_export_cmd,
    write_or_print,
)
from sharechain.contracts.bundle_objects import Resolved, check_object, resolve
from sharechain.crypto.merkle import Hash, verify_consistency
from sharechain.crypto.signed_note import parse_note
from sharechain.errors import IntegrityError, NotFoundError, SharechainError
from sharechain.ledger.bundles import build_bundle, verify_bundle
from sharechain.ledger.checkpoints import (
    Checkpoint,
    CheckpointError,
    Roster,
    block_hashes,
    checkpoint_of,
    cosign,
    history_consistency,
    origin_for,
    parse_checkpoint,
    roster_of,
    signed_checkpoint,
    store_roster,
    verifier_keys,
    verify_checkpoint,
)
from sharechain.ledger.export import Sealer
from sharechain.ledger.export_seal import seal_line, sealed_with
from sharechain.ledger.store import Store
from sharechain.sharing.embedded import Embedded
from sharechain.sharing.plane import Plane
from sharechain.sharing.remote_chain import organisations

__all__ = [
    "FileArg",
    "OutOpt",
    "RefArg",
    "add_chain_commands",
    "bundle_for",
    "emit_bundle",
    "export_sealer",
    "read_text",
    "refused",
    "register",
    "write_or_print",
]
"""`FileArg`, `OutOpt`, `read_text`, `refused` and `write_or_print` are `verify_cmd`'s."""

proof_app = command_group("proof", "Checkpoints, consistency proofs and proof bundles of a chain.")


@proof_app.command("vkeys")
def proof_vkeys(data_dir: DataDirOpt = None, json_out: JsonOpt = False) -> None:
    """The C2SP verifier keys of today's members, for `checkpoint verify --vkey`."""
    with open_embedded(data_dir) as emb:
        roster = store_roster(emb.store)
    keys = verifier_keys(roster)
    if json_out:
        emit_json({"vkeys": keys, "quorum": roster.quorum})
        return
    for k in keys:
        typer.echo(k)


def _quorum_note(emb: Embedded, hashes: list[bytes]) -> str:
    roster = store_roster(emb.store)
    members = {c.org for c in roster.cosigners}
    held = [o for o in emb.datadir.held_orgs() if o in members]
    cp = checkpoint_of(hashes, origin_for(hashes[0]))
    note = signed_checkpoint(cp, [cosign(cp, o, emb.keys(o).signing) for o in sorted(held)])
    verify_checkpoint(note, roster)
    return note


@proof_app.command("checkpoint")
def proof_checkpoint(
    data_dir: DataDirOpt = None, out: OutOpt = None, json_out: JsonOpt = False
) -> None:
    """The chain's latest checkpoint, cosigned by the member keys held here (a quorum)."""
    with open_embedded(data_dir) as emb:
        note = _quorum_note(emb, block_hashes(emb.store))
    if json_out:
        emit_json(_checkpoint_json(note))
        return
    write_or_print(note, out, "the checkpoint")


def _tree(arg: str, what: str) -> tuple[int, Checkpoint | None]:
    """A tree size, or a checkpoint file (its size, and the checkpoint to compare)."""
    if arg.isdigit():
        return int(arg), None
    try:
        cp = parse_checkpoint(parse_note(read_text(Path(arg))).text)
    except SharechainError as exc:
        fail(f"{what} is neither a tree size nor a signed checkpoint: {exc}")
    return cp.size, cp


Prover = Callable[[int, int], tuple[Hash, Hash, list[Hash]]]
"""(old, new) -> the chain's roots at both sizes and the consistency proof between them."""


def _embedded_prover(emb: Embedded) -> Prover:
    def prove(old: int, new: int) -> tuple[Hash, Hash, list[Hash]]:
        hashes = block_hashes(emb.store, new)
        origin = origin_for(hashes[0])
        a, b = checkpoint_of(hashes[:old], origin), checkpoint_of(hashes, origin)
        return a.root, b.root, history_consistency(hashes, old)

    return prove


def _node_prover(plane: Plane) -> Prover:
    client = plane.client
    assert client is not None

    def prove(old: int, new: int) -> tuple[Hash, Hash, list[Hash]]:
        body = client.get_json("/v1/checkpoint/consistency", old=old, new=new)
        roots = bytes.fromhex(body["old_root"]), bytes.fromhex(body["new_root"])
        return roots[0], roots[1], [bytes.fromhex(p) for p in body["proof"]]

    return prove


def _consistency(old_arg: str, new_arg: str, prove: Prover, json_out: bool) -> None:
    """Print the verified consistency proof between two sizes or checkpoint files."""
    (old, old_cp), (new, new_cp) = _tree(old_arg, "OLD"), _tree(new_arg, "NEW")
    if not 0 < old <= new:
        fail(f"sizes must satisfy 0 < OLD <= NEW, got {old} and {new}")
    old_root, new_root, proof = prove(old, new)
    try:
        for given, mine in ((old_cp, old_root), (new_cp, new_root)):
            if given is not None and given.root != mine:
                raise CheckpointError(
                    f"the checkpoint of size {given.size} is not this chain's history: a fork"
                )
        verify_consistency(old, new, old_root, new_root, proof)
    except IntegrityError as exc:
        refused("the consistency", exc)
    out = {
        "old_size": old,
        "new_size": new,
        "old_root": old_root.hex(),
        "new_root": new_root.hex(),
        "proof": [p.hex() for p in proof],
    }
    if json_out:
        emit_json(out)
        return
    for k, v in out.items():
        console.print(f"{k}: {' '.join(v) if isinstance(v, list) else v}", highlight=False)


_OldArg = Annotated[str, typer.Argument(metavar="OLD", help="Older size or checkpoint file.")]
_NewArg = Annotated[str, typer.Argument(metavar="NEW", help="Newer size or checkpoint file.")]


@proof_app.command("consistency")
def proof_consistency(
    old_arg: _OldArg, new_arg: _NewArg, data_dir: DataDirOpt = None, json_out: JsonOpt = False
) -> None:
    """The RFC 9162 consistency proof between two sizes (or checkpoints) of the history
    tree, verified; given checkpoint files, their roots must be this chain's (no fork)."""
    with open_embedded(data_dir) as emb:
        _consistency(old_arg, new_arg, _embedded_prover(emb), json_out)


RefArg = Annotated[
    str,
    typer.Argument(
        metavar="REF",
        help="A transaction id, dataset:<id>[@<version>], grant:<id>, read:<tx id> (a read "
        "receipt), notary:<sha-256> or file:<path> (a notarised file).",
    ),
]


def _resolved(store: Store, ref: str) -> Resolved:
    """The reference resolved on this chain (a file hashed first); fails with why not."""
    if ref.startswith("file:"):
        path = Path(ref.removeprefix("file:"))
        h = hashlib.sha256()
        try:
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        except OSError as exc:
            fail(f"cannot read {path}: {exc}")
        ref = "notary:" + h.hexdigest()
    try:
        return resolve(store, ref)
    except NotFoundError as exc:
        fail(f"{ref} resolves to nothing: {exc}")


def bundle_for(emb: Embedded, ref: str) -> dict[str, Any]:
    """A verified bundle of what `ref` names, under a fresh quorum checkpoint of `emb`."""
    found = _resolved(emb.store, ref)
    note = _quorum_note(emb, block_hashes(emb.store))
    doc = build_bundle(emb.store, found.tx_id, note, lineage=found.lineage, about=found.about)
    check_object(verify_bundle(doc), doc.get("object"))
    return doc


def emit_bundle(doc: dict[str, Any], out: Path | None, json_out: bool) -> None:
    text = json.dumps(doc, separators=(",", ":"))
    if json_out and out is None:
        emit_json(doc)
        return
    write_or_print(text + "\n", out, f"the bundle ({len(text)} bytes)")


@proof_app.command("bundle")
def proof_bundle(
    ref: RefArg,
    out: OutOpt = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """A self-contained proof bundle of a transaction or of the object a reference names
    (dataset version, grant, read receipt, notarised file), under a fresh quorum checkpoint."""
    with open_embedded(data_dir) as emb:
        doc = bundle_for(emb, ref)
    emit_bundle(doc, out, json_out)


def export_sealer(plane: Plane) -> tuple[int | None, Sealer]:
    """How `chain export` seals: the blocks to export (None: all) and the sealer.

    Embedded, the member keys held here cosign the export's last block. From a
    node, the node makes a quorum checkpoint of its head now (cosigned by the
    nodes) and the export covers exactly the blocks it covers.
    """
    emb = plane.embedded
    if emb is not None:
        signers = {o: emb.keys(o).signing for o in emb.datadir.held_orgs()}
        genesis = emb.datadir.genesis_note()
        return None, lambda store: seal_line(store, signers, genesis)
    assert plane.client is not None
    reply = plane.client.http.post("/v1/checkpoint")
    if reply.status_code != 200:
        fail(f"the node made no quorum checkpoint ({reply.status_code}): {reply.text[:500]}", 1)
    body = reply.json()
    note, genesis = body["note"], body["genesis"]
    return int(body["size"]), lambda store: sealed_with(store, note, genesis)


def _checkpoint_json(note: str) -> dict[str, Any]:
    parsed = parse_note(note)
    shown = checkpoint_fields(parse_checkpoint(parsed.text), [s.name for s in parsed.signatures])
    return {**shown, "note": note}


def chain_checkpoint(
    data_dir: DataDirOpt = None,
    out: OutOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
    as_org: SignerOpt = None,
) -> None:
    """The latest quorum checkpoint: cosigned by the member keys held here, or with
    --node/--network the node's, cosigned by a quorum of the nodes."""
    with open_plane(data_dir, Target(node, network, key), as_org) as plane:
        emb = plane.embedded
        if emb is not None:
            note = _quorum_note(emb, block_hashes(emb.store))
        else:
            assert plane.client is not None
            body = plane.client.get_json("/v1/checkpoint")
            note = body["note"]
            # Checked here too: every signature by a member the node lists, and as many
            # as the quorum it reports (`checkpoint verify --vkey` checks with no node).
            members = roster_of(organisations(plane.client), {})
            roster = Roster(members.cosigners, max(1, int(body["quorum"])))
            try:
                verify_checkpoint(note, roster, origin=body["origin"])
            except SharechainError as exc:
                refused("the node's checkpoint", exc)
    if json_out:
        emit_json(_checkpoint_json(note))
        return
    write_or_print(note, out, "the checkpoint")


def chain_consistency(
    old_arg: _OldArg,
    new_arg: _NewArg,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
    as_org: SignerOpt = None,
) -> None:
    """The RFC 9162 consistency proof between two sizes (or checkpoint files) of the
    history tree, verified here; with --node/--network the node proves it."""
    with open_plane(data_dir, Target(node, network, key), as_org) as plane:
        emb = plane.embedded
        prove = _embedded_prover(emb) if emb is not None else _node_prover(plane)
        _consistency(old_arg, new_arg, prove, json_out)


def add_chain_commands(chain: typer.Typer) -> None:
    """`chain checkpoint` and `chain consistency` (registered by `chain_cmd`)."""
    chain.command("checkpoint")(chain_checkpoint)
    chain.command("consistency")(chain_consistency)


def register(root: typer.Typer) -> None:
    root.command("verify-bundle")(verify_bundle_cmd)
    root.command("verify-export")(verify_export_cmd)
    root.add_typer(checkpoint_app, name="checkpoint")
    root.add_typer(proof_app, name="proof")
    credentials_cmd.register(root)
