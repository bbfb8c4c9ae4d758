"""`sharechain audit DATASET | --grant ID | --org ORG`: who did what, when, with proof.

Every transaction that concerned the dataset, grant (and its request) or
organisation, refused attempts included, with its height, block time, sender
(with the operator who acted for it in a console: `hospital-a (alice)`) and
an RFC 9162 inclusion proof (verified here against the stored block hash
before it is shown).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from sharechain.api.wire import iso, to_json
from sharechain.cli.common import (
    DataDirOpt,
    JsonOpt,
    KeyOpt,
    NetworkOpt,
    NodeOpt,
    SignerOpt,
    emit_json,
    fail,
    print_table,
)
from sharechain.cli.target import Target, open_plane
from sharechain.ledger.blocks import VALID
from sharechain.text import terminal_safe

__all__ = ["register"]


def audit(
    dataset: Annotated[
        str | None, typer.Argument(help="Dataset id (or a unique prefix).", show_default=False)
    ] = None,
    grant: Annotated[str | None, typer.Option("--grant", help="A grant's trail.")] = None,
    org: Annotated[str | None, typer.Option("--org", help="An organisation's trail.")] = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
    as_org: SignerOpt = None,
) -> None:
    """The audit trail of a dataset, a grant or an organisation (every proof verified)."""
    if sum(x is not None for x in (dataset, grant, org)) != 1:
        fail("give exactly one of DATASET, --grant ID or --org ORG")
    with open_plane(data_dir, Target(node, network, key), as_org) as chain:
        if dataset is not None:
            entries = chain.audit(ds=chain.resolve("dataset", dataset))
        elif grant is not None:
            entries = chain.audit(grant_id=chain.resolve("grant", grant))
        else:
            entries = chain.audit(org=org)
    if json_out:
        emit_json([{**to_json(e), "proof_verified": True} for e in entries])
        return
    print_table(
        f"{len(entries)} transaction(s), every inclusion proof verified",
        ("height", "time", "sender", "type", "code", "tx"),
        (
            (
                str(e.height),
                iso(e.timestamp),
                terminal_safe(e.by),
                e.type,
                _code(e.code, e.reason),
                e.tx_id.hex()[:16],
            )
            for e in entries
        ),
    )


def _code(code: str, reason: str) -> str | Text:
    """A validation code, in red with its reason (another member's words, made safe) if refused."""
    if code == VALID.code:
        return code
    return Text.assemble((code, "red"), ": ", terminal_safe(reason))


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)
