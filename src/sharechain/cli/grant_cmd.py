"""`sharechain grant list|revoke`: the grants access requests earned."""

from __future__ import annotations

from typing import Annotated

import typer

from sharechain.api.wire import iso, to_json
from sharechain.cli.common import (
    AsOrg,
    DataDirOpt,
    JsonOpt,
    KeyOpt,
    NetworkOpt,
    NodeOpt,
    SignerOpt,
    command_group,
    emit_json,
    fail,
    print_table,
)
from sharechain.cli.dataset_cmd import report
from sharechain.cli.target import Target, open_plane
from sharechain.contracts import grants

__all__ = ["register"]


def list_cmd(
    org: Annotated[str | None, typer.Option(help="Grants held by this organisation.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Grants on this dataset.")] = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
    as_org: SignerOpt = None,
) -> None:
    """An organisation's grants, or a dataset's, with their status at the head."""
    with open_plane(data_dir, Target(node, network, key), as_org) as chain:
        if org:
            found = chain.grants(org=org)
        elif dataset:
            found = chain.grants(ds=chain.resolve("dataset", dataset))
        else:
            fail("give --org ORG or --dataset ID")
    if json_out:
        emit_json(to_json(found))
        return
    print_table(
        f"{len(found)} grant(s)",
        ("id", "dataset", "grantee", "purpose", "expires", "uses", "status"),
        (
            (
                v.grant.id[:12],
                v.grant.dataset[:12],
                v.grant.grantee,
                v.grant.purpose,
                iso(v.grant.expires_at),
                f"{v.grant.uses}/{v.grant.max_uses or '∞'}",
                v.status,
            )
            for v in found
        ),
    )


def revoke_cmd(
    grant: Annotated[str, typer.Argument(help="Grant id (or a unique prefix).")],
    as_org: AsOrg,
    reason: Annotated[str, typer.Option(help="Why (kept on the chain).")] = "",
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """Revoke a grant (the dataset's owner or a supervisor); the dataset gets a new key epoch."""
    with open_plane(data_dir, Target(node, network, key), as_org) as chain:
        gid = chain.resolve("grant", grant)
        r = chain.submit(as_org, grants.REVOKE, {"grant": gid, "reason": reason})
        chain.rotate_after_revoke(as_org, gid)  # data plane: the dataset moves to a new epoch
    report(r, json_out, f"{as_org} revoked grant {gid[:12]}", grant=gid)


def register(app: typer.Typer) -> None:
    group = command_group("grant", "Grants: list, revoke.")
    group.command("list")(list_cmd)
    group.command("revoke")(revoke_cmd)
    app.add_typer(group)
