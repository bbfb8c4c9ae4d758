"""Queries over a peer's store: catalogue, inbox, grants, audit trails, lineage.

Read-only and index-driven: records are point reads (`dataset/<id>`), lists
are prefix scans of the `idx/` keys, and audit trails come from the ledger's
history index (every transaction that touched a key), so none of them scans
the chain. Each audit entry carries an RFC 9162 inclusion proof of its
transaction in its block. The privacy records (computation sessions,
transformation records, privacy budgets) are read by
`contracts.privacy_queries`.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sharechain.codec import decode_trusted
from sharechain.contracts import keys as k
from sharechain.contracts.access import AccessRequest, request_from_value
from sharechain.contracts.computations import computation_key
from sharechain.contracts.datasets import Dataset, dataset_from_value
from sharechain.contracts.grants import Grant, grant_from_value, grant_status
from sharechain.contracts.ids import KINDS as KINDS  # api/state_routes.py reads q.KINDS
from sharechain.contracts.membership import Proposal, proposal_from_value
from sharechain.contracts.operators import OPERATED, operator_of
from sharechain.contracts.profiles import RegisteredProfile, profile_from_value
from sharechain.contracts.risk import Alert, alert_from_value
from sharechain.crypto.merkle import path_from_levels, tree_levels
from sharechain.errors import NotFoundError
from sharechain.ledger.blocks import VALID, BlockHeader, TxResult, decode_header, result_leaf
from sharechain.ledger.identities import Organisation, org_from_value
from sharechain.ledger.proofs import TxProof
from sharechain.ledger.state import StateReader
from sharechain.ledger.store import HistoryEntry, Store
from sharechain.ledger.transactions import decode_transaction
from sharechain.ledger.validation import (
    BAD_ENCODING,
    BAD_SIGNATURE,
    SENDER_REMOVED,
    STALE_KEY,
    UNKNOWN_SENDER,
)

__all__ = [
    "AUDIT_BLOCK_BYTES",
    "AuditEntry",
    "AuditPage",
    "GrantView",
    "Lineage",
    "alerts",
    "audit",
    "audit_all",
    "audit_newest",
    "audit_page",
    "catalogue",
    "dataset",
    "grant",
    "grants",
    "inbox",
    "lineage",
    "organisations",
    "profile",
    "profiles",
    "proposals",
    "request",
    "requests",
    "resolve",
]

UNATTRIBUTED = (BAD_ENCODING, BAD_SIGNATURE, SENDER_REMOVED, STALE_KEY, UNKNOWN_SENDER)
"""Refusals that do not show the named sender signed: anyone can forge them in its name.

The ledger files them under the sender they name; an organisation's audit trail
leaves them out, so nobody can write into another member's trail."""


def resolve(store: Store, kind: str, prefix: str) -> str:
    """The full id of the `kind` whose hex id starts with `prefix` (unique)."""
    prefix = prefix.lower()
    if not prefix or any(c not in "0123456789abcdef" for c in prefix):
        raise NotFoundError(f"{prefix!r} is not a hex {kind} id or id prefix")
    found = [key.split("/", 1)[1] for key, _ in store.scan(f"{kind}/{prefix}")[:2]]
    if not found:
        head = store.head()
        at = "" if head is None else f" on this chain (at height {head.height})"
        raise NotFoundError(
            f"no {kind} id starts with {prefix}{at}; one committed through another node "
            "a moment ago may not have reached this one yet"
        )
    if len(found) > 1:
        raise NotFoundError(f"{prefix} is the prefix of several {kind} ids; give more digits")
    return found[0]


def _get(store: Store, key: str) -> Any:
    value = StateReader(store).get(key)
    if value is None:
        raise NotFoundError(f"no {key.replace('/', ' ', 1)}")
    return value


def dataset(store: Store, ds: str) -> Dataset:
    return dataset_from_value(_get(store, k.dataset_key(ds)))


def request(store: Store, rid: str) -> AccessRequest:
    return request_from_value(_get(store, k.request_key(rid)))


def _ids(store: Store, kind: str, owner: str) -> list[str]:
    prefix = k.idx(kind, owner)
    return [key[len(prefix) :] for key, _ in store.scan(prefix)]


def catalogue(
    store: Store,
    *,
    owner: str | None = None,
    tag: str | None = None,
    classification: str | None = None,
    text: str | None = None,
    include_inactive: bool = False,
) -> list[Dataset]:
    """Datasets matching every filter given, in id order."""
    sets = [
        set(_ids(store, kind, value))
        for kind, value in (("ds-owner", owner), ("ds-tag", tag), ("ds-class", classification))
        if value
    ]
    reader = StateReader(store)
    if sets:
        ids = sorted(set.intersection(*sets))
        values: Iterable[Any] = (reader.get(k.dataset_key(i)) for i in ids)
    else:
        values = (v for _, v in reader.scan("dataset/"))
    needle = (text or "").lower()
    out = []
    for v in values:
        if v is None or (not include_inactive and v["status"] != "active"):
            continue
        hay = " ".join([v["title"], v["description"], *v["tags"]]).lower()
        if needle in hay:
            out.append(dataset_from_value(v))
    return out


def inbox(store: Store, org: str) -> list[AccessRequest]:
    """Open requests `org` may approve or reject."""
    value = StateReader(store).get(f"org/{org}")
    boxes = [org]
    if value is not None and "supervisor" in org_from_value(value).roles:
        boxes.append(k.SUPERVISOR_INBOX)
    ids = sorted({i for box in boxes for i in _ids(store, "inbox", box)})
    return [r for r in (request(store, i) for i in ids) if r.requester != org]


def requests(store: Store, *, org: str | None = None, ds: str | None = None) -> list[AccessRequest]:
    """Requests sent by `org` or made for dataset `ds`."""
    ids = _ids(store, "req-by-org", org) if org else _ids(store, "req-by-ds", ds or "")
    return [request(store, i) for i in ids]


@dataclass(frozen=True, slots=True)
class GrantView:
    """A grant with its effective status at the chain's head."""

    grant: Grant
    """The grant record."""
    status: str
    """`active`, `revoked`, `expired`, `suspended` or `used_up` at the head's block time."""


def _view(store: Store, value: Any) -> GrantView:
    head = store.head()
    now = head.timestamp if head else 0
    suspended = StateReader(store).get(k.suspended_key(value["grantee"])) is not None
    return GrantView(grant_from_value(value), grant_status(value, now, suspended))


def grant(store: Store, gid: str) -> GrantView:
    return _view(store, _get(store, k.grant_key(gid)))


def grants(store: Store, *, org: str | None = None, ds: str | None = None) -> list[GrantView]:
    """Grants held by `org`, or given on dataset `ds`."""
    ids = _ids(store, "grants-by-org", org) if org else _ids(store, "grants-by-ds", ds or "")
    return [grant(store, i) for i in ids]


def alerts(store: Store, *, open_only: bool = True) -> list[Alert]:
    reader = StateReader(store)
    if open_only:
        values = [reader.get(k.alert_key(i)) for i in _ids(store, "alerts-open", "all")]
    else:
        values = [v for _, v in reader.scan("alert/")]
    return sorted((alert_from_value(v) for v in values), key=lambda a: (a.height, a.id))


def organisations(store: Store) -> list[Organisation]:
    return [org_from_value(v) for _, v in StateReader(store).scan("org/")]


def profiles(store: Store) -> list[RegisteredProfile]:
    """Every registered masking profile."""
    return [profile_from_value(v) for _, v in StateReader(store).scan("profile/")]


def profile(store: Store, prefix: str) -> RegisteredProfile:
    """The masking profile whose digest (hex) starts with `prefix`."""
    found = [p for p in profiles(store) if p.digest.hex().startswith(prefix.lower())]
    if len(found) != 1:
        what = "no" if not found else "more than one"
        raise NotFoundError(f"{what} masking profile has a digest starting with {prefix!r}")
    return found[0]


def proposals(store: Store) -> list[Proposal]:
    return [proposal_from_value(v) for _, v in StateReader(store).scan("proposal/")]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One transaction in an audit trail."""

    tx_id: bytes
    """The transaction id."""
    height: int
    """Block height."""
    index: int
    """Position in the block."""
    timestamp: int
    """Block time (ms)."""
    type: str
    """Transaction type."""
    sender: str
    """Sending organisation."""
    code: str
    """Validation code (refused attempts are in the trail too)."""
    reason: str
    """Why it was refused; empty when valid."""
    proof: TxProof | None
    """Inclusion proof of the transaction in its block."""
    operator: str = ""
    """The sender's person who took the action (console actions; `contracts.operators`)."""

    @property
    def by(self) -> str:
        """The sender, with its operator when one is named: `hospital-a (alice)`."""
        return f"{self.sender} ({self.operator})" if self.operator else self.sender

    def to_json(self) -> dict[str, Any]:
        return {
            "tx_id": self.tx_id.hex(),
            "height": self.height,
            "index": self.index,
            "timestamp": self.timestamp,
            "type": self.type,
            "sender": self.sender,
            "operator": self.operator,
            "code": self.code,
            "reason": self.reason,
            "proof": None if self.proof is None else self.proof.to_json(),
        }


@dataclass(frozen=True)  # no slots: `result_leaves` is cached in the instance dict
class _BlockView:
    header: BlockHeader
    tx_ids: list[bytes]
    reasons: list[str]
    txs: list[bytes]
    codes: list[str]
    size: int
    """Bytes of the stored block."""

    @functools.cached_property
    def tx_tree(self) -> list[list[bytes]]:
        """The levels of the block's transactions tree (built once per block an audit
        reads: each entry's path is then a lookup)."""
        return tree_levels(self.tx_ids)

    @functools.cached_property
    def results_tree(self) -> list[list[bytes]]:
        """The levels of the block's results tree (built once per block an audit reads)."""
        return tree_levels(
            [
                result_leaf(t, TxResult(c, r))
                for t, c, r in zip(self.tx_ids, self.codes, self.reasons, strict=True)
            ]
        )


def _block_view(store: Store, height: int) -> _BlockView:
    # Our own store's bytes: decode without the canonical and shape checks of
    # `decode_block` (they dominate an audit query on large blocks).
    data = store.block_bytes(height)
    if data is None:  # pragma: no cover - history rows always have their block
        raise NotFoundError(f"block {height} is missing from the store")
    value = decode_trusted(data)
    return _BlockView(
        decode_header(value["header"]),
        [hashlib.sha256(t).digest() for t in value["txs"]],
        [r[1] for r in value["results"]],
        value["txs"],
        [r[0] for r in value["results"]],
        len(data),
    )


def _operator(block: _BlockView, index: int, type: str, code: str) -> str:
    """The operator a console action names (decoded only for the types that record one)."""
    if code != VALID.code or type not in OPERATED:
        return ""
    payload = decode_transaction(block.txs[index], tx_id=block.tx_ids[index]).tx.payload
    return operator_of(type, payload, valid=True)


AUDIT_BLOCK_BYTES = 32 << 20
"""Bytes of blocks one page of an audit trail reads at most (`audit_page`): each
entry's block is decoded and its transactions hashed, about 9 ms for a block of
1.5 MiB, so a trail of 10,000 entries in as many large blocks cost a minute and
a half of CPU per request (threat 48). Past it the page ends and says where the
trail goes on."""


@dataclass(frozen=True, slots=True)
class AuditPage:
    """Entries of an audit trail, oldest first, and where the trail goes on."""

    entries: list[AuditEntry]
    next: tuple[int, int] | None
    """(height, index) of the trail's next transaction: ask again from there
    (`start`); None when the page ends the trail."""


def _entries(
    store: Store, rows: Iterable[HistoryEntry], proofs: bool, block_bytes: int | None
) -> tuple[list[AuditEntry], tuple[int, int] | None]:
    """The entries of `rows`, and the position of the first left out for `block_bytes`
    (None: all in). At least one block is read, so a page always makes progress."""
    block: _BlockView | None = None  # one block at a time: the rows go in height order
    read = 0
    out: list[AuditEntry] = []
    for row in sorted(set(rows), key=lambda r: (r.height, r.index)):
        loc = store.tx_location(row.tx_id)
        if loc is None:  # pragma: no cover - history rows always have a tx row
            continue
        if block is None or block.header.height != row.height:
            if block_bytes is not None and block is not None and read >= block_bytes:
                return out, (row.height, row.index)
            block = _block_view(store, row.height)
            read += block.size
        proof = None
        if proofs:
            proof = TxProof(
                row.tx_id,
                row.height,
                row.index,
                len(block.tx_ids),
                tuple(path_from_levels(block.tx_tree, row.index)),
                block.header,
                loc.code,
                block.reasons[row.index],
                # The code is proved too: its path to the header's results root.
                tuple(path_from_levels(block.results_tree, row.index)),
            )
        out.append(
            AuditEntry(
                row.tx_id,
                row.height,
                row.index,
                block.header.timestamp,
                loc.type,
                loc.sender,
                loc.code,
                block.reasons[row.index],
                proof,
                _operator(block, row.index, loc.type, loc.code),
            )
        )
    return out, None


def _trail_keys(
    store: Store,
    ds: str | None,
    grant_id: str | None,
    org: str | None,
    computation_id: str | None,
) -> tuple[list[str], bool]:
    """The history keys of the trail asked for (NotFoundError if its record is not), and
    whether it is an organisation's (the first of the four given is the one)."""
    if ds is not None:
        dataset(store, ds)
        return [k.dataset_key(ds)], False
    if grant_id is not None:
        g = grant(store, grant_id).grant
        return [k.request_key(g.request), k.grant_key(grant_id)], False
    if org is not None:
        _get(store, f"org/{org}")
        return [f"org/{org}"], True
    if computation_id is not None:
        _get(store, computation_key(computation_id))
        return [computation_key(computation_id)], False
    raise ValueError("audit needs a dataset, a grant, an organisation or a computation")


def _rows(
    store: Store, keys: list[str], limit: int, start: tuple[int, int]
) -> tuple[list[HistoryEntry], tuple[int, int] | None]:
    """The first `limit` rows of the keys' merged history from `start`, and the position
    after the last one if the history may go on (None: it ends there)."""
    lists = [store.history(key, limit, start) for key in keys]
    rows = sorted({r for rows in lists for r in rows}, key=lambda r: (r.height, r.index))
    cut = [(part[-1].height, part[-1].index) for part in lists if len(part) >= limit]
    if cut:  # a key's rows past its limit are unknown: the merge stops at its last
        last = min(cut)
        rows = [r for r in rows if (r.height, r.index) <= last]
    if len(rows) > limit:
        rows = rows[:limit]
    elif not cut:
        return rows, None
    return rows, (rows[-1].height, rows[-1].index + 1)


def audit_newest(
    store: Store,
    *,
    ds: str | None = None,
    computation_id: str | None = None,
    limit: int = 500,
    before: tuple[int, int] | None = None,
) -> AuditPage:
    """The newest `limit` entries of a dataset's or a session's audit trail before
    position `before` (None: up to the newest), oldest first, without proofs and
    without a bound on the blocks read (a node's own console); `next` is the
    position to ask for entries before (None: the page starts the trail)."""
    (key,), _ = _trail_keys(store, ds, None, None, computation_id)
    rows = store.history_before(key, limit + 1, before)  # one more: are there older ones?
    older = None
    if len(rows) > limit:
        rows = rows[1:]
        older = (rows[0].height, rows[0].index)
    entries, _ = _entries(store, rows, False, None)
    return AuditPage(entries, older)


def _page(
    store: Store,
    keys: list[str],
    own: bool,
    proofs: bool,
    limit: int,
    start: tuple[int, int],
    block_bytes: int | None,
) -> AuditPage:
    rows, more = _rows(store, keys, limit, start)
    entries, stopped = _entries(store, rows, proofs, block_bytes)
    if own:  # an organisation's trail
        entries = [e for e in entries if e.code not in UNATTRIBUTED]
    return AuditPage(entries, stopped or more)


def audit_page(
    store: Store,
    *,
    ds: str | None = None,
    grant_id: str | None = None,
    org: str | None = None,
    computation_id: str | None = None,
    proofs: bool = True,
    limit: int = 10_000,
    start: tuple[int, int] = (0, 0),
    block_bytes: int | None = AUDIT_BLOCK_BYTES,
) -> AuditPage:
    """A page of the audit trail of a dataset, a grant (with its request), an
    organisation or a session: at most `limit` entries from position `start`
    (height, index) on, reading at most about `block_bytes` of blocks (None: no
    bound); `next` says where the trail goes on.

    An organisation's trail holds what it signed and what changed its standing;
    refusals that prove no signature of it (`UNATTRIBUTED`) are not its own.
    """
    keys, own = _trail_keys(store, ds, grant_id, org, computation_id)
    return _page(store, keys, own, proofs, limit, start, block_bytes)


def audit(
    store: Store,
    *,
    ds: str | None = None,
    grant_id: str | None = None,
    org: str | None = None,
    computation_id: str | None = None,
    proofs: bool = True,
    limit: int = 10_000,
) -> list[AuditEntry]:
    """The first `limit` entries of an audit trail (`audit_page`, without a bound on the
    blocks read: for a node's own console and the embedded store)."""
    keys, own = _trail_keys(store, ds, grant_id, org, computation_id)
    return _page(store, keys, own, proofs, limit, (0, 0), None).entries


def audit_all(
    store: Store, *, ds: str | None = None, grant_id: str | None = None, org: str | None = None
) -> list[AuditEntry]:
    """A whole audit trail, with proofs, page after page (the embedded store)."""
    keys, own = _trail_keys(store, ds, grant_id, org, None)
    out: list[AuditEntry] = []
    start: tuple[int, int] | None = (0, 0)
    while start is not None:
        page = _page(store, keys, own, True, 10_000, start, None)
        out += page.entries
        start = page.next
    return out


@dataclass(frozen=True, slots=True)
class Lineage:
    """A dataset's lineage graph: versions and derivations around it."""

    root: str
    """The dataset asked about."""
    nodes: tuple[Dataset, ...]
    """Every dataset reachable through parents, children and versions."""
    edges: tuple[tuple[str, str, str], ...]
    """(from, to, kind): kind `derived` (parent to child) or `version` (old to new)."""


def lineage(store: Store, ds: str, *, depth: int = 64) -> Lineage:
    """Ancestors and descendants of `ds`, through derivations and versions."""
    seen: dict[str, Dataset] = {}
    edges: set[tuple[str, str, str]] = set()
    frontier = [ds]
    for _ in range(depth):
        nxt: list[str] = []
        for i in frontier:
            if i in seen:
                continue
            d = seen[i] = dataset(store, i)
            links = [(p, i, "derived") for p in d.parents if p not in (d.previous,)]
            links += [(i, c, "derived") for c in _ids(store, "children", i)]
            if d.previous:
                links.append((d.previous, i, "version"))
            if d.next:
                links.append((i, d.next, "version"))
            for a, b, kind in links:
                edges.add((a, b, kind))
                nxt.extend(x for x in (a, b) if x not in seen)
        if not nxt:
            break
        frontier = nxt
    return Lineage(ds, tuple(seen[i] for i in sorted(seen)), tuple(sorted(edges)))
