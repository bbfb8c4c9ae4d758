"""`sharechain request create|approve|reject|list|show`: access requests.

`request list --as ORG` is ORG's inbox (open requests it may decide);
`--mine` lists the requests ORG sent. A grant is issued by the approval that
completes the policy, in the same block. A grant under a masking profile then
needs its masked version: the approving command produces it when it can act
as the owner (embedded, or the owner's own tools), and `request show` says
whether it is still waiting for it.
"""

from __future__ import annotations

from typing import Annotated

import typer

from sharechain.api.wire import to_json
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
    print_table,
)
from sharechain.cli.dataset_cmd import report
from sharechain.cli.masking_opts import MaskingOpt, resolve_profile
from sharechain.cli.profile_cmd import produce_masked
from sharechain.cli.target import Target, open_plane
from sharechain.contracts import access
from sharechain.contracts.policies import PolicyError, parse_duration
from sharechain.sharing.records import derive_id

__all__ = ["register"]

ReqArg = Annotated[str, typer.Argument(help="Request id (or a unique prefix of it).")]


def create_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset id (or a unique prefix).")],
    as_org: AsOrg,
    purpose: Annotated[str, typer.Option(help="Why the data is needed, e.g. treatment.")],
    duration: Annotated[
        str | None, typer.Option(help="How long, e.g. 7d, 12h, 90m (default 1d).")
    ] = None,
    days: Annotated[
        int | None, typer.Option("--days", min=1, help="How long, in days (same as --duration Nd).")
    ] = None,
    field: Annotated[
        list[str] | None, typer.Option("--field", help="Only this column (repeatable).")
    ] = None,
    justification: Annotated[str, typer.Option(help="Free text for the approvers.")] = "",
    masking: MaskingOpt = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """Ask for access to a dataset (with --masking: only a masked version of it)."""
    if duration is not None and days is not None:
        fail("give either --duration or --days, not both")
    try:
        ms = parse_duration(f"{days}d" if days is not None else duration or "1d")
    except PolicyError as exc:
        fail(f"--duration: {exc}")
    with open_plane(data_dir, Target(node, network, key), as_org) as chain:
        ds = chain.resolve("dataset", dataset)
        payload = {
            "dataset": ds,
            "purpose": purpose,
            "duration": ms,
            "fields": field or [],
            "justification": justification,
        }
        if masking is not None:
            payload["masking"] = resolve_profile(chain, masking)
        r = chain.submit(as_org, access.REQUEST, payload)
        rid = derive_id("request", r.tx_id)
        req = chain.request(rid)
        if req.grant:  # issue 15: an auto-approved masked grant gets its masked version
            produce_masked(chain, as_org, req.grant)
    ids = {"request": rid, "status": req.status}
    if req.grant:
        ids["grant"] = req.grant
    report(r, json_out, f"{as_org} requested dataset {ds[:12]}", **ids)


def _decide(
    kind: str,
    request: str,
    as_org: str,
    payload: dict[str, str],
    data_dir: DataDirOpt,
    json_out: bool,
    target: Target,
) -> None:
    with open_plane(data_dir, target, as_org) as chain:
        rid = chain.resolve("request", request)
        r = chain.submit(as_org, kind, {"request": rid, **payload})
        req = chain.request(rid)
        if req.grant:  # issue 15: the owner's side masks the dataset for a masked grant
            produce_masked(chain, as_org, req.grant)
    ids = {"request": rid, "status": req.status}
    if req.grant:
        ids["grant"] = req.grant
    verb = "approved" if kind == access.APPROVE else "rejected"
    report(r, json_out, f"{as_org} {verb} request {rid[:12]}", **ids)


def approve_cmd(
    request: ReqArg,
    as_org: AsOrg,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """Approve a request (as the owner, a supervisor or a named approver)."""
    _decide(access.APPROVE, request, as_org, {}, data_dir, json_out, Target(node, network, key))


def reject_cmd(
    request: ReqArg,
    as_org: AsOrg,
    reason: Annotated[str, typer.Option(help="Why (the requester reads it).")] = "",
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """Reject a request."""
    target = Target(node, network, key)
    _decide(access.REJECT, request, as_org, {"reason": reason}, data_dir, json_out, target)


def list_cmd(
    as_org: Annotated[
        str | None, typer.Option("--as", help="The inbox of this organisation.")
    ] = None,
    mine: Annotated[bool, typer.Option("--mine", help="Requests --as sent instead.")] = False,
    dataset: Annotated[str | None, typer.Option(help="Requests for this dataset.")] = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """An approver's inbox, an organisation's requests, or a dataset's."""
    with open_plane(data_dir, Target(node, network, key), as_org) as chain:
        if dataset:
            found = chain.requests(ds=chain.resolve("dataset", dataset))
        elif as_org and mine:
            found = chain.requests(org=as_org)
        elif as_org:
            found = chain.inbox(as_org)
        else:
            fail("give --as ORG (its inbox), --as ORG --mine, or --dataset ID")
    if json_out:
        emit_json(to_json(found))
        return
    print_table(
        f"{len(found)} request(s)",
        ("id", "dataset", "requester", "purpose", "status", "approvals"),
        (
            (
                q.id[:12],
                q.dataset[:12],
                q.requester,
                q.purpose,
                q.status,
                ", ".join(f"{o} ({a})" for o, a in q.approvals),
            )
            for q in found
        ),
    )


def show_cmd(
    request: ReqArg,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
    as_org: SignerOpt = None,
) -> None:
    """One request: its terms, approvals, grant and masking state."""
    with open_plane(data_dir, Target(node, network, key), as_org) as chain:
        q = chain.request(chain.resolve("request", request))
        grant = chain.grant(q.grant).grant if q.grant else None
    from sharechain.sharing.masked import masking_state  # pyarrow, numpy: only here

    masking = masking_state(grant) if grant is not None else "-"
    if json_out:
        emit_json({**to_json(q), "masking_profile": q.masking, "masking": masking})
        return
    approvals = ", ".join(f"{o} ({a})" for o, a in q.approvals) or "-"
    console.print(
        f"request [bold]{q.id}[/] {q.status}\ndataset {q.dataset} of {q.owner}\n"
        f"requester {q.requester}, purpose {q.purpose}\napprovals {approvals}\n"
        f"masking profile {q.masking or '-'}\ngrant {q.grant or '-'}\nmasking: {masking}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    group = command_group("request", "Access requests: create, approve, reject, list.")
    group.command("create")(create_cmd)
    group.command("approve")(approve_cmd)
    group.command("reject")(reject_cmd)
    group.command("list")(list_cmd)
    group.command("show")(show_cmd)
    app.add_typer(group)
