"""The console's pages: overview, blocks and transactions, catalogue, datasets, inbox, organisation.

(The privacy and checkpoint pages are in `web/privacy.py` and `web/checkpoints.py`.)

Every page reads through `sharechain.contracts.queries` over the node's own
store, the functions behind the REST API's read endpoints, and shows what the
node's organisation may read there: a member sees the audit trails of its own
datasets, a supervisor every trail and the risk alerts.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from sharechain.codec import decode_trusted
from sharechain.contracts import queries as q
from sharechain.contracts.epochs import epoch_from_value, epoch_prefix
from sharechain.contracts.governance import governance
from sharechain.contracts.keys import suspended_key
from sharechain.contracts.risk import KEY_RELEASES, REQUESTS
from sharechain.errors import NotFoundError
from sharechain.ledger.state import StateReader
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import decode_transaction
from sharechain.node.service import Node
from sharechain.web import charts, describe
from sharechain.web.console import console_of
from sharechain.web.guard import PREFIX, RefusedError, session_of
from sharechain.web.privacy import dataset_privacy

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
_Text = Annotated[str, Query(max_length=256)]
PAGE_ROWS = 100
BLOCK_ROWS = 25
INBOX_ROWS = 50


def _found(exc: NotFoundError) -> RefusedError:
    return RefusedError(404, str(exc))


def _block_row(node: Node, height: int) -> dict[str, Any]:
    data = node.store.block_bytes(height)
    if data is None:
        raise RefusedError(404, f"no block {height} on this node (height {node.ledger.height})")
    value = decode_trusted(data)
    h = value["header"]
    meta = node.store.block_meta(height)
    return {
        "height": height,
        "hash": meta.hash.hex() if meta else "",
        "timestamp": h["timestamp"],
        "orderer": h["orderer"],
        "txs": len(value["txs"]),
        "value": value,
    }


@router.get(PREFIX, response_class=HTMLResponse)
@router.get(f"{PREFIX}/", response_class=HTMLResponse)
def overview(request: Request) -> Response:
    console = console_of(request)
    node = console.node
    store = node.store
    status = node.status()
    head = status["height"]
    tps, latency = console.sampler_rates()
    return console.render(
        request,
        "overview.html",
        page="overview",
        status=status,
        attestations=node.attestation_status(),
        members=q.organisations(store),
        blocks=[_block_row(node, h) for h in range(head, max(-1, head - 8), -1)],
        transactions=store.tx_count(),
        checkpoint_size=_checkpoint_size(request),
        tps_chart=charts.line_chart(tps, label="transactions per second", unit="tx/s"),
        latency_chart=charts.line_chart(latency, label="mean block commit time", unit="ms"),
    )


def _checkpoint_size(request: Request) -> int:
    """Blocks the node's latest quorum checkpoint covers (0: none yet; none made here)."""
    cosigner = getattr(request.app.state, "cosigner", None)
    return 0 if cosigner is None else int(cosigner.latest_size())


@router.get(f"{PREFIX}/blocks", response_class=HTMLResponse)
def blocks(request: Request, before: int | None = None, find: _Text = "") -> Response:
    console = console_of(request)
    node = console.node
    find = find.strip().lower()
    if find:
        if find.isdigit():
            return RedirectResponse(f"{PREFIX}/blocks/{int(find)}", 303)
        if len(find) == 64 and all(c in "0123456789abcdef" for c in find):
            return RedirectResponse(f"{PREFIX}/txs/{find}", 303)
        raise RefusedError(400, f"{find[:80]!r} is neither a block height nor a transaction id")
    top = node.ledger.height if before is None else min(before - 1, node.ledger.height)
    rows = [_block_row(node, h) for h in range(top, max(-1, top - BLOCK_ROWS), -1)]
    older = rows[-1]["height"] if rows and rows[-1]["height"] > 0 else None
    return console.render(request, "blocks.html", page="blocks", rows=rows, older=older)


@router.get(f"{PREFIX}/blocks/{{height}}", response_class=HTMLResponse)
def block(request: Request, height: int) -> Response:
    console = console_of(request)
    row = _block_row(console.node, height)
    txs = []
    for raw, (code, reason) in zip(row["value"]["txs"], row["value"]["results"], strict=True):
        stx = decode_transaction(raw)
        txs.append({"id": stx.id.hex(), "type": stx.tx.type, "sender": stx.tx.sender,
                    "code": code, "reason": reason})  # fmt: skip
    header = row["value"]["header"]
    return console.render(request, "block.html", page="blocks", row=row, header=header, txs=txs)


@router.get(f"{PREFIX}/txs/{{tx_id}}", response_class=HTMLResponse)
def transaction(request: Request, tx_id: str) -> Response:
    console = console_of(request)
    try:
        raw = bytes.fromhex(tx_id)
        if len(raw) != 32:
            raise ValueError
        view = describe.transaction(console.node.store, raw)
    except ValueError:
        raise RefusedError(400, f"{tx_id[:80]!r} is not a 64-digit transaction id") from None
    except NotFoundError as exc:
        raise _found(exc) from None
    return console.render(request, "tx.html", page="blocks", view=view)


@router.get(f"{PREFIX}/datasets", response_class=HTMLResponse)
def catalogue(
    request: Request,
    text: _Text = "",
    owner: _Text = "",
    tag: _Text = "",
    status: _Text = "active",
) -> Response:
    console = console_of(request)
    store = console.node.store
    found = q.catalogue(
        store,
        owner=owner or None,
        tag=tag or None,
        text=text or None,
        include_inactive=status != "active",
    )
    if status not in ("", "any", "active"):
        found = [d for d in found if d.status == status]
    # htmx asks for the results alone while the operator types.
    template = "catalogue_rows.html" if request.headers.get("hx-request") else "catalogue.html"
    return console.render(
        request,
        template,
        page="catalogue",
        rows=found[:PAGE_ROWS],
        total=len(found),
        owners=[o.id for o in q.organisations(store)],
        statuses=("active", "superseded", "retired", "purged", "any"),
        text=text,
        owner=owner,
        tag=tag,
        status=status,
    )


def _may_read_trail(node: Node, owner: str) -> bool:
    return node.org == owner or "supervisor" in node.roles(node.org)


@router.get(f"{PREFIX}/datasets/{{ds}}", response_class=HTMLResponse)
def dataset(
    request: Request, ds: str, trail_before: Annotated[str | None, Query(max_length=256)] = None
) -> Response:
    console = console_of(request)
    node = console.node
    store = node.store
    try:
        record = q.dataset(store, q.resolve(store, "dataset", ds))
        lineage = q.lineage(store, record.id)
    except NotFoundError as exc:
        raise _found(exc) from None
    versions = sorted(
        (n for n in lineage.nodes if n.version and _same_line(lineage, record.id, n.id)),
        key=lambda n: n.version,
    )
    epochs = [epoch_from_value(v) for _, v in StateReader(store).scan(epoch_prefix(record.id))]
    grants = q.grants(store, ds=record.id)
    readable = _may_read_trail(node, record.owner)
    trail = describe.trail_view(store, trail_before, ds=record.id) if readable else {}
    if not readable:
        grants = [g for g in grants if g.grant.grantee == node.org]
    return console.render(
        request,
        "dataset.html",
        page="catalogue",
        ds=record,
        policy=describe.policy_words(record.policy),
        versions=versions,
        graph=charts.lineage_graph(lineage, href=f"{PREFIX}/datasets/"),
        epochs=epochs,
        grants=grants,
        may_revoke=readable,
        readable=readable,
        **trail,
        privacy=dataset_privacy(store, record) if readable else None,
    )


def _same_line(lineage: q.Lineage, a: str, b: str) -> bool:
    """Whether `b` is a version of `a` (linked through version edges only)."""
    seen, frontier = {a}, [a]
    while frontier:
        x = frontier.pop()
        for u, v, kind in lineage.edges:
            if kind == "version" and x in (u, v):
                y = v if x == u else u
                if y not in seen:
                    seen.add(y)
                    frontier.append(y)
    return b in seen


def _risk(store: Store, org: str) -> dict[str, Any]:
    reader = StateReader(store)
    settings = governance(reader).risk  # type: ignore[arg-type]  # a reader is a read-only state
    head = store.head()
    now = head.timestamp if head else 0
    start = now - now % settings.window
    count = {
        kind: reader.get(f"risk/count/{org}/{kind}/{start}") or 0
        for kind in (REQUESTS, KEY_RELEASES)
    }
    return {
        "requests": count[REQUESTS],
        "max_requests": settings.max_requests,
        "releases": count[KEY_RELEASES],
        "max_releases": settings.max_key_releases,
        "suspended": reader.get(suspended_key(org)) is not None,
    }


@router.get(f"{PREFIX}/inbox", response_class=HTMLResponse)
def inbox(request: Request) -> Response:
    console = console_of(request)
    node = console.node
    store = node.store
    items = []
    waiting = q.inbox(store, node.org)
    for req in waiting[:INBOX_ROWS]:
        ds = q.dataset(store, req.dataset)
        items.append(
            {
                "req": req,
                "ds": ds,
                "policy": describe.policy_words(ds.policy),
                "risk": _risk(store, req.requester),
                "duration": describe.duration_words(req.duration),
            }
        )
    supervisor = "supervisor" in node.roles(node.org)
    alerts = q.alerts(store) if supervisor else []
    return console.render(
        request,
        "inbox.html",
        page="inbox",
        items=items,
        waiting=len(waiting),
        alerts=alerts,
        supervisor=supervisor,
    )


@router.get(f"{PREFIX}/org", response_class=HTMLResponse)
def organisation(request: Request) -> Response:
    console = console_of(request)
    node = console.node
    store = node.store
    session = session_of(request)
    members = q.organisations(store)
    me = next((m for m in members if m.id == node.org), None)
    return console.render(
        request,
        "org.html",
        page="org",
        me=me,
        members=members,
        proposals=q.proposals(store),
        admin_org="admin" in node.roles(node.org),
        operators=console.accounts.all() if session.role == "admin" else (),
    )
