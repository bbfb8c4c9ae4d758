"""`sharechain org propose|vote|remove|rotate-key|list`: consortium membership.

Admission and removal are proposals admins vote on; the threshold is the
governance setting `admission_votes` (default a majority of active admins).
`org propose --as ADMIN NEW-ORG --role member` without public keys generates
the new organisation's keys into this data directory (the development
consortium holds every key); give `--sign-key` and `--enc-key` (hex) for an
organisation that keeps its own keys. `rotate-key` replaces the key file only
after the chain accepted the rotation, so the old key is never lost early.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from sharechain.cli.backend import Backend, EmbeddedBackend
from sharechain.cli.common import (
    AsOrg,
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
    print_table,
)
from sharechain.cli.dataset_cmd import report
from sharechain.cli.remote import Target, open_backend
from sharechain.contracts import membership
from sharechain.contracts._fields import derive_id
from sharechain.contracts.views import to_json
from sharechain.crypto.keyfile import OrgKeys

__all__ = ["register"]


def _hex_key(text: str, name: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != 32:
        fail(f"{name} must be a 32-byte public key in hex (64 digits)")
    return value


def _submit_proposal(
    chain: Backend, as_org: str, payload: dict[str, Any], json_out: bool, message: str
) -> str:
    r = chain.submit(as_org, membership.PROPOSE, payload)
    pid = derive_id("proposal", r.tx_id)
    status = queries_status(chain, pid)
    report(r, json_out, message, proposal=pid, status=status)
    return status


def queries_status(chain: Backend, pid: str) -> str:
    return next(p.status for p in chain.proposals() if p.id == pid)


def propose_cmd(
    org: Annotated[str, typer.Argument(help="The organisation to admit.")],
    as_org: AsOrg,
    role: Annotated[
        list[str] | None, typer.Option("--role", help="member, supervisor or admin (repeatable).")
    ] = None,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    sign_key: Annotated[str | None, typer.Option(help="Its Ed25519 public key (hex).")] = None,
    enc_key: Annotated[str | None, typer.Option(help="Its X25519 public key (hex).")] = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Propose to admit an organisation (your vote counts as yes)."""
    with open_embedded(data_dir) as emb:
        keys = None
        if sign_key is None and enc_key is None:
            if emb.datadir.key_path(org).exists():
                fail(f"a key file for {org} already exists in {emb.datadir.path / 'keys'}")
            keys = OrgKeys.generate(org)
            pub, enc = keys.signing.public_key, keys.encryption_public
        elif sign_key is None or enc_key is None:
            fail("give both --sign-key and --enc-key, or neither (keys are then generated)")
        else:
            pub, enc = _hex_key(sign_key, "--sign-key"), _hex_key(enc_key, "--enc-key")
        payload = {
            "action": "admit",
            "org": org,
            "roles": role or ["member"],
            "name": name,
            "sign_key": pub,
            "enc_key": enc,
        }
        if keys is not None:
            emb.datadir.save_keys(keys)  # before submitting: a passed vote must find its key
        try:
            chain = EmbeddedBackend(emb)
            _submit_proposal(chain, as_org, payload, json_out, f"{as_org} proposed to admit {org}")
        except BaseException:
            if keys is not None:
                os.unlink(emb.datadir.key_path(org))
            raise


def remove_cmd(
    org: Annotated[str, typer.Argument(help="The organisation to remove.")],
    as_org: AsOrg,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """Propose to remove an organisation (its requests are cancelled, grants revoked)."""
    with open_backend(data_dir, Target(node, network, key), as_org) as chain:
        payload = {"action": "remove", "org": org}
        _submit_proposal(chain, as_org, payload, json_out, f"{as_org} proposed to remove {org}")


def vote_cmd(
    proposal: Annotated[str, typer.Argument(help="Proposal id (or a unique prefix).")],
    as_org: AsOrg,
    no: Annotated[bool, typer.Option("--no", help="Vote against.")] = False,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """Vote on a membership proposal (admins)."""
    with open_backend(data_dir, Target(node, network, key), as_org) as chain:
        pid = chain.resolve("proposal", proposal)
        r = chain.submit(as_org, membership.VOTE, {"proposal": pid, "approve": not no})
        status = queries_status(chain, pid)
    side = "against" if no else "for"
    report(r, json_out, f"{as_org} voted {side} proposal {pid[:12]}", proposal=pid, status=status)


def rotate_cmd(as_org: AsOrg, data_dir: DataDirOpt = None, json_out: JsonOpt = False) -> None:
    """Rotate an organisation's keys; from the next block the old key signs nothing valid."""
    with open_embedded(data_dir) as emb:
        new = OrgKeys.generate(as_org)
        msg = membership.rotation_message(as_org, new.signing.public_key, new.encryption_public)
        payload = {
            "sign_key": new.signing.public_key,
            "enc_key": new.encryption_public,
            "proof": new.signing.sign(membership.ROTATE_DOMAIN, msg),
        }
        r = emb.submit(as_org, membership.ROTATE, payload)
        emb.datadir.save_keys(new)
    report(
        r,
        json_out,
        f"{as_org} rotated its keys; the key file now holds the new ones",
        sign_key_id=new.sign_key_id.hex(),
    )


def list_cmd(
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
    as_org: SignerOpt = None,
) -> None:
    """Organisations and membership proposals."""
    with open_backend(data_dir, Target(node, network, key), as_org) as chain:
        orgs = chain.organisations()
        props = chain.proposals()
    if json_out:
        emit_json(
            {
                "organisations": [{**to_json(o), "sign_key_id": o.sign_key_id.hex()} for o in orgs],
                "proposals": to_json(props),
            }
        )
        return
    print_table(
        f"{len(orgs)} organisation(s)",
        ("id", "roles", "status", "since", "key id"),
        (
            (o.id, ", ".join(o.roles), o.status, str(o.since), o.sign_key_id.hex()[:16])
            for o in orgs
        ),
    )
    for p in props:
        console.print(
            f"proposal {p.id[:12]}: {p.action} {p.org} by {p.proposer}, {p.status} "
            f"(yes: {', '.join(p.yes) or '-'}; no: {', '.join(p.no) or '-'})",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    group = command_group("org", "Membership: propose, vote, remove, rotate-key, list.")
    group.command("propose")(propose_cmd)
    group.command("vote")(vote_cmd)
    group.command("remove")(remove_cmd)
    group.command("rotate-key")(rotate_cmd)
    group.command("list")(list_cmd)
    app.add_typer(group)
