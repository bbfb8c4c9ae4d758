"""Membership credentials (SD-JWT, RFC 9901) and disclosable records on the command line.

`credential issue | present | verify`: a supervisor issues a member an SD-JWT
bound to the member's key; the member presents chosen claims to an outsider,
who verifies offline with the supervisor's public key. `disclosure commit |
reveal | verify`: a record's fields are committed one by one (salted), its
fingerprint can be notarised on the chain, and chosen fields are later shown
with proof (`sharechain.crypto.disclosure`). Verification failures exit 1.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from pathlib import Path
from typing import Annotated, Any

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
from sharechain.cli.verify_cmd import FileArg, OutOpt, read_text, refused, write_or_print
from sharechain.contracts import notary
from sharechain.crypto import sdjwt
from sharechain.crypto.disclosure import (
    CommittedRecord,
    Disclosure,
    commit,
    disclose,
    verify_disclosure,
)
from sharechain.errors import SharechainError
from sharechain.ledger.checkpoints import block_hashes, origin_for

__all__ = ["register"]

credential_app = command_group("credential", "SD-JWT membership credentials (RFC 9901).")
disclosure_app = command_group("disclosure", "Records whose fields can be shown one by one.")


def _claims(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in pairs:
        name, sep, value = p.partition("=")
        if not sep or not name:
            fail(f"--claim {p!r} must be NAME=VALUE")
        try:
            out[name] = json.loads(value)
        except ValueError:
            out[name] = value
    return out


@credential_app.command("issue")
def credential_issue(
    holder: Annotated[str, typer.Argument(help="The member the credential is about (holder).")],
    as_org: Annotated[str, typer.Option("--as", help="The issuing supervisor.")],
    claim: Annotated[list[str], typer.Option("--claim", help="NAME=VALUE (JSON or text).")],
    disclose: Annotated[list[str], typer.Option("--disclosable", help="Claim to hide.")] = [],  # noqa: B006 -- typer's list options
    data_dir: DataDirOpt = None,
    out: OutOpt = None,
) -> None:
    """Issue an SD-JWT membership credential to a member, bound to its current key.

    The issuer JWT's SHA-256 is notarised on the chain by the supervisor, so the
    credential is referenced there (a proof bundle of that record shows it)."""
    with open_embedded(data_dir) as emb:
        org = emb.ledger.organisation(holder)
        if org is None or not org.active:
            fail(f"{holder} is not an active member of this consortium")
        issuer = emb.ledger.organisation(as_org)
        if issuer is None or not issuer.active or not issuer.has_role("supervisor"):
            fail(f"{as_org} is not an active supervisor: only supervisors issue credentials")
        origin = origin_for(block_hashes(emb.store, 1)[0])
        try:
            cred = sdjwt.issue(
                {"sub": holder, **_claims(claim)},
                disclose,
                emb.keys(as_org).signing,
                org.sign_key,
                issuer=f"{origin}/{as_org}",
            )
        except ValueError as exc:
            fail(str(exc))
        digest = hashlib.sha256(cred.split("~")[0].encode("ascii")).digest()
        note = f"membership credential of {holder}"
        receipt = emb.submit(as_org, notary.RECORD, {"digest": digest, "note": note})
    typer.echo(f"recorded as transaction {receipt.tx_id.hex()}", err=True)
    write_or_print(cred + "\n", out, "the credential")


@credential_app.command("present")
def credential_present(
    file: FileArg,
    as_org: Annotated[str, typer.Option("--as", help="The holder (its key binds).")],
    audience: Annotated[str, typer.Option("--aud", help="Who the presentation is for.")],
    nonce: Annotated[str, typer.Option("--nonce", help="The verifier's challenge.")],
    reveal: Annotated[list[str], typer.Option("--reveal", help="Claim to show.")] = [],  # noqa: B006 -- typer's list options
    data_dir: DataDirOpt = None,
    out: OutOpt = None,
) -> None:
    """Present a credential showing only the chosen claims, bound to audience and nonce."""
    with open_embedded(data_dir) as emb:
        key = emb.keys(as_org).signing
    try:
        p = sdjwt.present(read_text(file).strip(), reveal, key, audience=audience, nonce=nonce)
    except (SharechainError, ValueError) as exc:
        fail(f"not a credential: {exc}", code=1)
    write_or_print(p + "\n", out, "the presentation")


@credential_app.command("verify")
def credential_verify(
    file: FileArg,
    issuer_key: Annotated[str, typer.Option("--issuer-key", help="Issuer's Ed25519 key (hex).")],
    audience: Annotated[str, typer.Option("--aud", help="Expected audience.")],
    nonce: Annotated[str, typer.Option("--nonce", help="Expected nonce.")],
    json_out: JsonOpt = False,
) -> None:
    """Verify a presentation offline: exit 0 with the shown claims, 1 and why if not."""
    try:
        key = bytes.fromhex(issuer_key)
    except ValueError:
        fail("--issuer-key must be hex")
    try:
        claims = sdjwt.verify_presentation(
            read_text(file).strip(), key, audience=audience, nonce=nonce, now=time.time
        )
    except SharechainError as exc:
        refused("the presentation", exc)
    if json_out:
        emit_json(claims)
        return
    for k, v in sorted(claims.items()):
        console.print(f"{k}: {json.dumps(v)}", highlight=False)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _json_file(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(read_text(path))
    except ValueError as exc:
        fail(f"{path} is not JSON: {exc}", code=1)
    if not isinstance(value, dict):
        fail(f"{path} must hold a JSON object", code=1)
    return value


def _unb64(items: Any, what: str) -> tuple[bytes, ...]:
    try:
        return tuple(base64.b64decode(x, validate=True) for x in items)
    except (binascii.Error, TypeError, ValueError):
        fail(f"{what} must be a list of base64 strings", code=1)


@disclosure_app.command("commit")
def disclosure_commit(
    record: FileArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="The holder's file (keep it).")],
    as_org: Annotated[
        str | None, typer.Option("--as", help="Notarise the fingerprint as this member.")
    ] = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Commit to every field of a JSON record; optionally notarise its fingerprint."""
    try:
        committed = commit(_json_file(record))
    except ValueError as exc:
        fail(str(exc))
    holder = {
        "fingerprint": committed.fingerprint.hex(),
        "disclosures": {n: _b64(d) for n, d in committed.disclosures.items()},
    }
    out.write_text(json.dumps(holder, indent=1), "utf-8")
    result: dict[str, Any] = {"fingerprint": holder["fingerprint"], "holder_file": str(out)}
    if as_org is not None:
        payload = {"digest": committed.fingerprint, "note": "disclosable record"}
        with open_embedded(data_dir) as emb:
            receipt = emb.submit(as_org, notary.RECORD, payload)
        result["tx_id"] = receipt.tx_id.hex()
    if json_out:
        emit_json(result)
        return
    for k, v in result.items():
        console.print(f"{k}: {v}", highlight=False)


@disclosure_app.command("reveal")
def disclosure_reveal(
    holder: FileArg,
    field: Annotated[list[str], typer.Option("--field", help="Field to show.")],
    out: OutOpt = None,
) -> None:
    """Show chosen fields of a committed record; the others stay digests."""
    doc = _json_file(holder)
    names = list(doc.get("disclosures", {}))
    raw = _unb64(doc.get("disclosures", {}).values(), "disclosures")
    committed = CommittedRecord(dict(zip(names, raw, strict=True)), b"")
    try:
        shown = disclose(committed, field)
    except ValueError as exc:
        fail(str(exc))
    text = json.dumps(
        {"revealed": [_b64(d) for d in shown.revealed], "hidden": [_b64(h) for h in shown.hidden]},
        indent=1,
    )
    write_or_print(text + "\n", out, "the disclosure")


@disclosure_app.command("verify")
def disclosure_verify(
    file: FileArg,
    fingerprint: Annotated[
        str, typer.Option(help="The record's fingerprint (hex), from the chain.")
    ],
    json_out: JsonOpt = False,
) -> None:
    """Check shown fields against a fingerprint offline: exit 0 with the fields, 1 if not."""
    doc = _json_file(file)
    shown = Disclosure(
        _unb64(doc.get("revealed", []), "revealed"), _unb64(doc.get("hidden", []), "hidden")
    )
    try:
        fields = verify_disclosure(shown, bytes.fromhex(fingerprint))
    except ValueError:
        fail("--fingerprint must be hex")
    except SharechainError as exc:
        refused("the disclosure", exc)
    if json_out:
        emit_json(fields)
        return
    for k, v in sorted(fields.items()):
        console.print(f"{k}: {json.dumps(v)}", highlight=False)


def register(root: typer.Typer) -> None:
    root.add_typer(credential_app, name="credential")
    root.add_typer(disclosure_app, name="disclosure")
