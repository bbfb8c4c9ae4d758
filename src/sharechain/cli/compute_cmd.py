"""`sharechain psi offer|match`, `sharechain aggregate propose|join|submit|result`, and
`sharechain compute list|show`.

Joint computations, each organisation running its own side (`sharing.computing`):

- the holder: ``psi offer --dataset D --column C --file F --with CLIENT --as HOLDER``
  proposes the session (the file must be the dataset's registered content) and
  answers the client's request when it comes;
- the client: ``psi match --session S --file F --column C --out MATCHES --as CLIENT``;
- ``aggregate propose`` (the aggregator, a contributor too), ``aggregate join``,
  ``aggregate submit --value V ...`` (every party) and ``aggregate result``
  (the aggregator).

A side that waits longer than ``--timeout`` ends the session on the chain and
says so; errors never show the other party's inputs. ``compute list`` and
``compute show S`` read the sessions as the chain records them (a node shows
its caller the sessions it is a party to, a supervisor every one).
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn

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
    err_console,
    fail,
    handle_errors,
    print_table,
    shown,
)
from sharechain.cli.target import Target, open_plane
from sharechain.contracts import privacy_queries as pq
from sharechain.contracts.computations import Computation
from sharechain.errors import NotFoundError
from sharechain.sharing.computing import Computations
from sharechain.sharing.plane import Plane

__all__ = ["read_column", "register"]

SessionOpt = Annotated[str, typer.Option("--session", help="The computation session id.")]
FileOpt = Annotated[Path, typer.Option("--file", help="A CSV file with a header row.")]
ColumnOpt = Annotated[str, typer.Option("--column", help="The column holding the elements.")]
CaseOpt = Annotated[
    str, typer.Option("--case", help="fold (names, e-mails) or exact (case-sensitive ids).")
]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for the others, then end the session.")
]
ApprovalOpt = Annotated[
    bool,
    typer.Option("--approval/--no-approval", help="Whether a supervisor must approve first."),
]


def read_column(path: Path, column: str) -> list[str]:
    """The non-empty values of `column` in the CSV file `path`."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = csv.DictReader(f)
            names = rows.fieldnames or []
            if column not in names:
                fail(f"{path} has no column {column!r} (columns: {', '.join(names) or 'none'})")
            return [v for row in rows if (v := (row.get(column) or "").strip())]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        fail(f"cannot read {path} as CSV: {exc}")


@contextmanager
def _computations(
    data_dir: Path | None, target: Target, as_org: str, json_out: bool
) -> Iterator[tuple[Plane, Computations]]:
    with (
        open_plane(data_dir, target, as_org) as plane,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            console=err_console,
            transient=True,
            disable=json_out,
        ) as bar,
    ):
        tasks: dict[str, Any] = {}

        def progress(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=max(total, 1))
            bar.update(tasks[what], completed=done)

        with handle_errors(), plane.computations(progress) as comps:
            yield plane, comps


def _say(json_out: bool, text: str, **fields: Any) -> None:
    if json_out:
        emit_json(fields)
    else:
        console.print(text, highlight=False)


def offer_cmd(
    dataset: Annotated[str, typer.Option("--dataset", help="The dataset whose column is offered.")],
    column: ColumnOpt,
    file: FileOpt,
    client: Annotated[str, typer.Option("--with", help="The client (it learns the matches).")],
    as_org: AsOrg,
    max_set_size: Annotated[int, typer.Option(help="Cap on the client's set.")] = 10_000,
    purpose: Annotated[str, typer.Option(help="Why (kept on the chain).")] = "blacklist match",
    case: CaseOpt = "fold",
    approval: ApprovalOpt = True,
    timeout: TimeoutOpt = 600.0,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """Offer a dataset column to a client for a private match, then answer its request."""
    values = read_column(file, column)
    with _computations(data_dir, Target(node, network, key), as_org, json_out) as (plane, comps):
        ds = plane.dataset(plane.resolve("dataset", dataset))
        if ds.owner != as_org:
            fail(f"dataset {ds.id[:12]} belongs to {ds.owner}; only its owner offers it")
        if hashlib.sha256(file.read_bytes()).digest() != ds.plaintext_digest:
            fail(f"{file} is not the registered content of dataset {ds.id[:12]}")
        sid = comps.psi_offer(
            as_org,
            client,
            max_set_size=max_set_size,
            purpose=purpose,
            dataset=ds.id,
            column=column,
            supervisor_approval=approval,
        )
        if not json_out:
            err_console.print(f"session {sid}: waiting for {shown(client)}'s request")
        done = comps.psi_answer(as_org, sid, values, case=_case(case), timeout=timeout)
    _say(
        json_out,
        f"answered session {sid}: {done.client_set_size} element(s) from {shown(client)}, "
        f"{done.holder_set_size} offered",
        session=sid,
        client_set_size=done.client_set_size,
        holder_set_size=done.holder_set_size,
    )


def _case(case: str) -> Any:
    if case not in ("fold", "exact"):
        fail(f"--case is fold or exact, not {case!r}")
    return case


def match_cmd(
    session: SessionOpt,
    file: FileOpt,
    column: ColumnOpt,
    out: Annotated[Path, typer.Option("--out", help="Where the matches go (a new file).")],
    as_org: AsOrg,
    case: CaseOpt = "fold",
    timeout: TimeoutOpt = 600.0,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """Match a file's column against the holder's set; the matches are written to --out."""
    if out.exists():
        fail(f"{out} exists; matches are never written over a file")
    values = read_column(file, column)
    with _computations(data_dir, Target(node, network, key), as_org, json_out) as (_, comps):
        found = comps.psi_match(as_org, session, values, case=_case(case), timeout=timeout)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(m + "\n" for m in found.matches)
    _say(
        json_out,
        f"{len(found.matches)} of your {found.client_set_size} element(s) are in the holder's "
        f"set of {found.holder_set_size}; written to {out}",
        session=session,
        matches=len(found.matches),
        client_set_size=found.client_set_size,
        holder_set_size=found.holder_set_size,
        out=str(out),
    )


def propose_cmd(
    parties: Annotated[list[str], typer.Option("--with", help="Another party (repeat).")],
    as_org: AsOrg,
    length: Annotated[int, typer.Option(help="Values per party.")] = 1,
    bits: Annotated[int, typer.Option(help="Each value is proved below 2^bits.")] = 32,
    scale: Annotated[int, typer.Option(help="Decimal places of the values.")] = 2,
    max_dropouts: Annotated[int, typer.Option(help="Parties that may drop out.")] = 0,
    purpose: Annotated[str, typer.Option(help="Why (kept on the chain).")] = "joint average",
    approval: ApprovalOpt = True,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """Propose a secure aggregation; you aggregate and contribute too."""
    with _computations(data_dir, Target(node, network, key), as_org, json_out) as (_, comps):
        sid = comps.aggregate_propose(
            as_org,
            [as_org, *parties],
            length=length,
            bits=bits,
            scale=scale,
            max_dropouts=max_dropouts,
            purpose=purpose,
            supervisor_approval=approval,
        )
    _say(json_out, f"proposed aggregation {sid}", session=sid)


def join_cmd(
    session: SessionOpt,
    as_org: AsOrg,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """Accept a computation session as one of its parties."""
    with _computations(data_dir, Target(node, network, key), as_org, json_out) as (_, comps):
        comps.join(as_org, session)
    _say(json_out, f"{as_org} joined {session}", session=session, joined=as_org)


def submit_cmd(
    session: SessionOpt,
    values: Annotated[list[str], typer.Option("--value", help="A value (repeat, in order).")],
    as_org: AsOrg,
    timeout: TimeoutOpt = 600.0,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """Contribute your values (masked, committed, range-proved); wait for the sums."""
    with _computations(data_dir, Target(node, network, key), as_org, json_out) as (_, comps):
        got = comps.aggregate_submit(as_org, session, values, timeout=timeout)
    if got is None:
        _say(json_out, f"submitted to {session}; run `aggregate result`", session=session)
    else:
        _show(json_out, got)


def result_cmd(
    session: SessionOpt,
    as_org: AsOrg,
    grace: Annotated[
        float, typer.Option(help="Seconds before the silent count as dropped.")
    ] = 60.0,
    timeout: TimeoutOpt = 600.0,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """As the aggregator: collect the submissions, unmask, record and send the sums."""
    with _computations(data_dir, Target(node, network, key), as_org, json_out) as (_, comps):
        got = comps.aggregate_result(as_org, session, grace=grace, timeout=timeout)
    _show(json_out, got)


def _show(json_out: bool, got: Any) -> None:
    sums, means = [str(s) for s in got.sums], [str(m) for m in got.means]
    _say(
        json_out,
        f"sums {', '.join(sums)}; means {', '.join(means)} over {len(got.contributors)} "
        f"contributor(s) ({', '.join(got.contributors)})"
        + (f"; dropped: {', '.join(got.dropped)}" if got.dropped else ""),
        session=got.session,
        sums=sums,
        means=means,
        contributors=list(got.contributors),
        dropped=list(got.dropped),
    )


def _sessions(plane: Plane, party: str | None) -> list[Computation]:
    if plane.embedded is not None:
        return pq.computations(plane.embedded.store, party=party)
    assert plane.client is not None
    return plane.client.computations(party=party, limit=10_000)


def _session(plane: Plane, prefix: str) -> Computation:
    if plane.embedded is not None:
        return pq.computation(plane.embedded.store, plane.resolve("computation", prefix))
    assert plane.client is not None
    if len(prefix) == 64:
        return plane.client.computation(prefix.lower())
    found = [c for c in _sessions(plane, None) if c.id.startswith(prefix.lower())]
    if len(found) != 1:
        what = "no" if not found else "more than one"
        raise NotFoundError(f"{what} computation you may read has an id starting with {prefix!r}")
    return found[0]


def _record(c: Computation) -> dict[str, Any]:
    raw = c.raw
    fields = ("purpose", "approval_required", "approved_by", "receipts", "height")
    return {
        "id": c.id,
        "kind": c.kind,
        "proposer": c.proposer,
        "parties": list(c.parties),
        "client": c.client,
        "limits": dict(c.limits),
        "status": c.status,
        "deadline": c.deadline,
        "accepted": list(c.accepted),
        "committed": {p: size for p, (_, size) in c.committed.items()},
        "result": to_json(dict(c.result)) if c.result is not None else None,
        **{name: to_json(raw[name]) for name in fields},
        "rejected": raw.get("rejected"),
    }


def _approval(c: Computation) -> str:
    if not c.raw["approval_required"]:
        return "not required"
    return f"by {c.raw['approved_by']}" if c.raw["approved_by"] else "waiting"


def list_cmd(
    party: Annotated[
        str | None, typer.Option(help="Only sessions this organisation takes part in.")
    ] = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
    as_org: SignerOpt = None,
) -> None:
    """Computation sessions, newest first (a node lists its caller's; a supervisor's, all)."""
    with open_plane(data_dir, Target(node, network, key), as_org) as plane:
        found = _sessions(plane, party)
    if json_out:
        emit_json([_record(c) for c in found])
        return
    print_table(
        f"{len(found)} computation(s)",
        ("id", "kind", "parties", "status", "approval", "purpose"),
        (
            (c.id[:12], c.kind, ", ".join(c.parties), c.status, _approval(c), c.raw["purpose"])
            for c in found
        ),
    )


def show_cmd(
    session: Annotated[str, typer.Argument(help="Session id (or a unique prefix of it).")],
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
    as_org: SignerOpt = None,
) -> None:
    """One computation session as the chain records it."""
    with open_plane(data_dir, Target(node, network, key), as_org) as plane:
        record = _record(_session(plane, session))
    if json_out:
        emit_json(record)
        return
    for name, value in record.items():
        text = ", ".join(value) if isinstance(value, list) else str(value)
        console.print(f"{name}: {shown(text)}", highlight=False)


def register(app: typer.Typer) -> None:
    psi = command_group("psi", "Private set intersection: offer (holder), match (client).")
    psi.command("offer")(offer_cmd)
    psi.command("match")(match_cmd)
    app.add_typer(psi)
    agg = command_group("aggregate", "Secure aggregation: propose, join, submit, result.")
    agg.command("propose")(propose_cmd)
    agg.command("join")(join_cmd)
    agg.command("submit")(submit_cmd)
    agg.command("result")(result_cmd)
    app.add_typer(agg)
    compute = command_group("compute", "Computation sessions (PSI, aggregation): list, show.")
    compute.command("list")(list_cmd)
    compute.command("show")(show_cmd)
    app.add_typer(compute)
