"""`sharechain profile register|show|list|produce`: masking profiles on the chain.

A profile (YAML, see docs/privacy.md) is registered by its digest, which a
policy's `masking` field then names for a classification: a grant on such a
dataset releases only the masked version its owner produces under that
profile. `register` parses the file first (a bad profile never reaches the
chain) and prints the digest to put in the policy. `produce GRANT` makes a
masked grant's masked version when the approving command could not (the
table did not fit the profile, the command was interrupted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sharechain.cli.common import (
    AsOrg,
    DataDirOpt,
    JsonOpt,
    KeyOpt,
    NetworkOpt,
    NodeOpt,
    command_group,
    console,
    emit_json,
    err_console,
    fail,
    open_embedded,
    print_table,
)
from sharechain.cli.dataset_cmd import report
from sharechain.cli.target import Target, open_plane
from sharechain.contracts import PROFILE_REGISTER, queries
from sharechain.contracts.profiles import RegisteredProfile
from sharechain.errors import SharechainError
from sharechain.privacy.profiles import ProfileError, load_profile, profile_digest, profile_form
from sharechain.sharing.plane import Plane

__all__ = ["register"]


def _json(p: RegisteredProfile) -> dict[str, Any]:
    return {
        "digest": p.digest.hex(),
        "name": p.name,
        "owner": p.owner,
        "height": p.height,
        "tx_id": p.tx_id.hex(),
        "profile": p.form,
    }


def register_cmd(
    file: Annotated[Path, typer.Argument(help="The masking profile (YAML).")],
    as_org: AsOrg,
    name: Annotated[
        str | None, typer.Option(help="A name for people (default: file stem).")
    ] = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """Register a masking profile; prints the digest a policy's `masking` names."""
    try:
        profile = load_profile(file)
    except (OSError, ProfileError) as exc:
        fail(f"profile {file}: {exc}")
    payload = {"name": name or file.stem, "profile": profile_form(profile)}
    with open_plane(data_dir, Target(node, network, key), as_org) as chain:
        r = chain.submit(as_org, PROFILE_REGISTER, payload)
    digest = profile_digest(profile).hex()
    report(r, json_out, f"{as_org} registered masking profile {payload['name']}", digest=digest)


def show_cmd(
    digest: Annotated[str, typer.Argument(help="Profile digest (or a unique prefix).")],
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """One registered profile: who registered it, and its rules."""
    with open_embedded(data_dir) as emb:
        p = queries.profile(emb.store, digest)
    if json_out:
        emit_json(_json(p))
        return
    console.print(
        f"[bold]{p.name}[/] {p.digest.hex()}\nregistered by {p.owner} in block {p.height}\n"
        f"k {p.form['k']}, l {p.form['l'] or '-'}, suppress {p.form['suppress']}\n"
        f"quasi-identifiers: {', '.join(p.form['quasi_identifiers']) or '-'}\n"
        f"sensitive: {', '.join(p.form['sensitive']) or '-'}",
        highlight=False,
    )
    print_table(
        "columns",
        ("column", "rule"),
        ((c, ", ".join(f"{k}={v}" for k, v in rule.items())) for c, rule in p.form["columns"]),
    )


def list_cmd(data_dir: DataDirOpt = None, json_out: JsonOpt = False) -> None:
    """Every registered masking profile."""
    with open_embedded(data_dir) as emb:
        found = queries.profiles(emb.store)
    if json_out:
        emit_json([_json(p) for p in found])
        return
    print_table(
        f"{len(found)} masking profile(s)",
        ("digest", "name", "owner", "k", "l", "block"),
        (
            (
                p.digest.hex()[:16],
                p.name,
                p.owner,
                str(p.form["k"]),
                str(p.form["l"] or "-"),
                str(p.height),
            )
            for p in found
        ),
    )


def produce_masked(plane: Plane, org: str, gid: str) -> None:
    """Produce a masked grant's masked version; a failure leaves the grant waiting, said."""
    try:
        made = plane.produce_masked(org, gid)
    except SharechainError as exc:
        err_console.print(
            f"[yellow]warning:[/] the masked version for grant {gid[:12]} was not produced: "
            f"{exc}; the grant releases nothing until it is (`sharechain profile produce "
            f"{gid[:12]} --as OWNER`)",
            highlight=False,
        )
        return
    if made is not None:
        r = made.report
        console.print(
            f"masked version {made.dataset[:12]} of {made.source[:12]} produced for grant "
            f"{gid[:12]}: {r.rows_out} row(s), k {r.k}, l {r.l or '-'}, {r.suppressed} "
            f"suppressed, epsilon {r.epsilon_total}",
            highlight=False,
        )


def produce_cmd(
    grant: Annotated[str, typer.Argument(help="Grant id (or a unique prefix).")],
    as_org: AsOrg,
    data_dir: DataDirOpt = None,
) -> None:
    """Produce a masked grant's masked version now (embedded; nodes do it by themselves)."""
    with open_plane(data_dir, Target(), as_org) as plane:
        gid = plane.resolve("grant", grant)
        if plane.embedded is None:
            fail("on the nodes the owner's node produces masked versions by itself")
        made = plane.produce_masked(as_org, gid)
    if made is None:
        fail(f"nothing to produce for grant {gid[:12]}: no masking, done already, or unusable")
    r = made.report
    console.print(
        f"masked version {made.dataset} produced for grant {gid}: {r.rows_out} row(s), "
        f"k {r.k}, l {r.l or '-'}, {r.suppressed} suppressed, epsilon {r.epsilon_total}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    group = command_group("profile", "Masking profiles: register, show, list.")
    group.command("register")(register_cmd)
    group.command("show")(show_cmd)
    group.command("list")(list_cmd)
    group.command("produce")(produce_cmd)
    app.add_typer(group)
