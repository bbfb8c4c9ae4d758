"""`sharechain profile register|show|list`: masking profiles on the chain.

A profile (YAML, see docs/privacy.md) is registered by its digest, which a
policy's `masking` field then names for a classification: a grant on such a
dataset releases only the masked version its owner produces under that
profile. `register` parses the file first (a bad profile never reaches the
chain) and prints the digest to put in the policy.
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
    fail,
    open_embedded,
    print_table,
)
from sharechain.cli.dataset_cmd import report
from sharechain.cli.target import Target, open_plane
from sharechain.contracts import PROFILE_REGISTER, queries
from sharechain.contracts.profiles import RegisteredProfile
from sharechain.privacy.profiles import ProfileError, load_profile, profile_digest, profile_form

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


def register(app: typer.Typer) -> None:
    group = command_group("profile", "Masking profiles: register, show, list.")
    group.command("register")(register_cmd)
    group.command("show")(show_cmd)
    group.command("list")(list_cmd)
    app.add_typer(group)
