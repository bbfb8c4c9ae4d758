"""`sharechain anchor follow|keys|record|show|verify` and `sharechain timestamp request|verify`.

This chain (B, `-d`) follows another consortium (A, `--from` its data
directory) and records A's quorum checkpoints after checking them
(`sharechain.contracts.anchors`). `anchor verify` checks a bundle of A against
B's bundle of the `anchor.record` offline; `timestamp` asks an RFC 3161 TSA to
timestamp a checkpoint and checks its answer. Failed verifications exit 1
with the reason.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from sharechain.cli.common import (
    AsOrg,
    DataDirOpt,
    JsonOpt,
    command_group,
    console,
    emit_json,
    fail,
    open_embedded,
)
from sharechain.cli.notary_cmd import iso_time
from sharechain.cli.verify_cmd import FileArg, read_text, refused
from sharechain.codec import decode
from sharechain.contracts.anchors import (
    FOLLOW,
    KEYS,
    RECORD,
    Followed,
    followed,
    followed_key,
    recorded,
)
from sharechain.crypto.signed_note import parse_note
from sharechain.errors import SharechainError
from sharechain.ledger.anchored import (
    follow_payload,
    keys_payload,
    record_payload,
    verify_anchored,
)
from sharechain.ledger.bundles import load_bundle
from sharechain.ledger.checkpoints import block_hashes, parse_checkpoint
from sharechain.ledger.timestamps import (
    load_certificates,
    timestamp_request,
    verify_timestamp,
)
from sharechain.ordering.solo import Receipt
from sharechain.sharing.embedded import Embedded

__all__ = ["register"]

anchor_app = command_group("anchor", "Follow another consortium and record its checkpoints.")
timestamp_app = command_group("timestamp", "RFC 3161 timestamps of checkpoints.")

FromOpt = Annotated[
    Path, typer.Option("--from", help="Data directory of the consortium to follow (A).")
]


def _genesis(emb: Embedded) -> bytes:
    return block_hashes(emb.store, 1)[0]


def _tracked(b: Embedded, genesis_a: bytes) -> Followed:
    raw = b.store.get(followed_key(genesis_a))
    if raw is None:
        fail(f"this chain does not follow sharechain/{genesis_a.hex()}; run `anchor follow`")
    return followed(decode(raw))


def _done(receipt: Receipt, what: str, json_out: bool, extra: dict[str, Any]) -> None:
    out = {"tx_id": receipt.tx_id.hex(), "height": receipt.height, **extra}
    if json_out:
        emit_json(out)
        return
    console.print(f"{what} in block {receipt.height} (tx {receipt.tx_id.hex()})", highlight=False)


@anchor_app.command("follow")
def anchor_follow(
    source: FromOpt, as_org: AsOrg, data_dir: DataDirOpt = None, json_out: JsonOpt = False
) -> None:
    """Start following consortium A: its genesis block and founding members."""
    with open_embedded(source) as a:
        payload, origin = follow_payload(a.store), f"sharechain/{_genesis(a).hex()}"
    with open_embedded(data_dir) as b:
        receipt = b.submit(as_org, FOLLOW, payload)
    _done(receipt, f"following {origin}", json_out, {"origin": origin})


@anchor_app.command("keys")
def anchor_keys(
    source: FromOpt, as_org: AsOrg, data_dir: DataDirOpt = None, json_out: JsonOpt = False
) -> None:
    """Apply A's membership changes (key rotations, admissions and removals by vote) under
    the latest checkpoint of A recorded here."""
    with open_embedded(source) as a, open_embedded(data_dir) as b:
        t = _tracked(b, _genesis(a))
        payload = keys_payload(a.store, t.size, t.keys_at)
        if payload is None:
            fail(f"no membership change of {t.origin} below block {t.size} is left to apply")
        receipt = b.submit(as_org, KEYS, payload)
    _done(receipt, f"applied membership changes of {t.origin}", json_out, {"origin": t.origin})


@anchor_app.command("record")
def anchor_record(
    checkpoint: FileArg,
    source: FromOpt,
    as_org: AsOrg,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Record a quorum checkpoint of A (from `sharechain proof checkpoint -d A`)."""
    note = read_text(checkpoint)
    with open_embedded(source) as a, open_embedded(data_dir) as b:
        t = _tracked(b, _genesis(a))
        receipt = b.submit(as_org, RECORD, record_payload(a.store, note, t.size, t.keys_at))
    size = parse_checkpoint(parse_note(note).text).size
    _done(receipt, f"recorded checkpoint {size} of {t.origin}", json_out, {"size": size})


@anchor_app.command("show")
def anchor_show(data_dir: DataDirOpt = None, json_out: JsonOpt = False) -> None:
    """The consortia this chain follows and the checkpoints of theirs it recorded."""
    with open_embedded(data_dir) as b:
        rows: list[dict[str, Any]] = []
        for _, raw in b.store.scan("anchor/"):
            t = followed(decode(raw))
            prefix = "anchor-cp/" + t.origin.removeprefix("sharechain/") + "/"
            cps = [recorded(decode(v)) for _, v in b.store.scan(prefix)]
            rows.append(
                {
                    "origin": t.origin,
                    "members": [org for org, _ in t.keys],
                    "size": t.size,
                    "checkpoints": [
                        {"size": c.size, "height": c.height, "time": iso_time(c.timestamp)}
                        for c in cps
                    ],
                }
            )
    if json_out:
        emit_json({"followed": rows})
        return
    if not rows:
        console.print("this chain follows no other consortium")
    for r in rows:
        console.print(f"{r['origin']}: {', '.join(r['members'])}", highlight=False)
        for c in r["checkpoints"]:
            console.print(
                f"  size {c['size']} recorded in block {c['height']} at {c['time']}",
                highlight=False,
            )


@anchor_app.command("verify")
def anchor_verify(bundle_a: FileArg, anchor_b: FileArg, json_out: JsonOpt = False) -> None:
    """Check offline that A's bundle's transaction was on A by the time of B's anchor."""
    try:
        got = verify_anchored(
            load_bundle(bundle_a.read_bytes()), load_bundle(anchor_b.read_bytes())
        )
    except SharechainError as exc:
        refused("the anchored proof", exc)
    out = {
        "verified": True,
        "origin": got.origin,
        "tx_id": got.tx_id.hex(),
        "height": got.height,
        "checkpoint_size": got.size,
        "anchor_origin": got.anchor_origin,
        "anchor_height": got.anchor_height,
        "anchor_time": iso_time(got.anchor_time),
    }
    if json_out:
        emit_json(out)
        return
    console.print(
        f"verified: transaction {out['tx_id']} was in block {got.height} of {got.origin} "
        f"by {out['anchor_time']} (block {got.anchor_height} of {got.anchor_origin})",
        highlight=False,
    )


def _text(checkpoint: Path) -> str:
    """The checkpoint text of a checkpoint file (a signed note, or the bare text)."""
    try:
        return parse_checkpoint(parse_note(read_text(checkpoint)).text).text()
    except SharechainError:
        try:
            return parse_checkpoint(read_text(checkpoint)).text()
        except SharechainError as exc:
            fail(f"{checkpoint} is not a checkpoint: {exc}")


@timestamp_app.command("request")
def timestamp_request_cmd(
    checkpoint: FileArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Write the DER request here.")],
    json_out: JsonOpt = False,
) -> None:
    """An RFC 3161 request for SHA-256 of the checkpoint text (send it to a TSA)."""
    req = timestamp_request(_text(checkpoint))
    out.write_bytes(req.der)
    if json_out:
        emit_json({"digest": req.digest.hex(), "nonce": req.nonce, "out": str(out)})
        return
    console.print(f"wrote the request for {req.digest.hex()} to {out}", highlight=False)


@timestamp_app.command("verify")
def timestamp_verify_cmd(
    checkpoint: FileArg,
    response: FileArg,
    ca: Annotated[Path, typer.Option("--ca", help="PEM certificate(s) of the TSA's root CA.")],
    tsa_cert: Annotated[
        Path | None, typer.Option("--tsa-cert", help="Pin the TSA's own certificate (PEM).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Check a TSA's answer (`.tsr`) over the checkpoint: exit 1 and why if it fails."""
    text = _text(checkpoint)
    try:
        pinned = load_certificates(tsa_cert.read_bytes())[0] if tsa_cert else None
        got = verify_timestamp(
            response.read_bytes(),
            text,
            roots=load_certificates(ca.read_bytes()),
            tsa_certificate=pinned,
        )
    except SharechainError as exc:
        refused("the timestamp", exc)
    when = got.time.astimezone(datetime.UTC).isoformat()
    if json_out:
        emit_json({"verified": True, "digest": got.digest.hex(), "time": when, "tsa": got.tsa})
        return
    console.print(f"verified: {got.tsa} saw the checkpoint at {when}", highlight=False)


def register(root: typer.Typer) -> None:
    root.add_typer(anchor_app, name="anchor")
    root.add_typer(timestamp_app, name="timestamp")
