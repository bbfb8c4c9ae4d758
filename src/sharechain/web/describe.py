"""Chain records told in words: policies, transactions field by field, audit trails.

Pure functions over what `contracts.queries` and the ledger return, plus the
one read they need that the queries do not give: a committed transaction's
own envelope (to show its payload).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sharechain.api.wire import iso
from sharechain.codec import decode_trusted
from sharechain.contracts.operators import OPERATOR
from sharechain.contracts.policies import JOINT, Policy
from sharechain.contracts.queries import AuditEntry, audit_newest
from sharechain.errors import NotFoundError, SharechainError
from sharechain.ledger.proofs import prove_tx, verify_tx_proof
from sharechain.ledger.store import Store, TxLocation
from sharechain.ledger.transactions import SignedTransaction, decode_transaction
from sharechain.web.charts import Mark, timeline
from sharechain.web.guard import RefusedError

__all__ = [
    "OPERATOR_FIELD",
    "TRAIL_LIMIT",
    "Event",
    "TxView",
    "duration_words",
    "events",
    "marks",
    "payload_rows",
    "policy_words",
    "trail_view",
    "transaction",
]

OPERATOR_FIELD = OPERATOR
"""Payload field naming the console operator who took an action (`contracts.operators`)."""

TRAIL_LIMIT = 500
"""Entries of an audit trail one page of the console shows (the newest first)."""

_KINDS = {
    "access.request": "request",
    "access.approve": "approval",
    "access.reject": "rejection",
    "grant.key-release": "release",
    "grant.read": "read",
    "grant.revoke": "revocation",
    "dataset.purge": "purge",
    "dataset.transform": "release",
    "computation.propose": "request",
    "computation.accept": "approval",
    "computation.approve": "approval",
    "computation.reject": "rejection",
    "computation.commit": "input",
    "computation.result": "result",
    "computation.receipt": "read",
    "computation.close": "revocation",
}
_UNITS = (("w", 7 * 86_400_000), ("d", 86_400_000), ("h", 3_600_000), ("min", 60_000))


def duration_words(ms: int) -> str:
    for unit, size in _UNITS:
        if ms >= size and ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms / 1000:g} s"


def policy_words(policy: Policy) -> tuple[str, ...]:
    """The policy as sentences an approver reads."""
    a = policy.approval
    out = [
        "The owner and one supervisor must both approve."
        if a.mode == JOINT
        else f"Any {a.k} of {', '.join(a.of)} must approve."
    ]
    out.append(
        f"Allowed purposes: {', '.join(policy.purposes)}."
        if policy.purposes
        else "Any purpose may be given."
    )
    out.append(f"A grant lasts at most {duration_words(policy.max_duration)}.")
    out.append(
        f"At most {policy.max_uses} key release(s) per grant."
        if policy.max_uses
        else "Key releases per grant are not limited."
    )
    for classification, profile in policy.masking:
        out.append(f"{classification.capitalize()} data is released masked ({profile}).")
    for rule in policy.auto_approve:
        out.append(f"Granted at once when {rule}.")
    return tuple(out)


def _cell(value: Any) -> str:
    if isinstance(value, bytes):
        text = value.hex()
        return text if len(text) <= 64 else f"{text[:64]}\u2026 ({len(value)} bytes)"
    text = str(value)
    return text if len(text) <= 300 else text[:300] + "\u2026"


def payload_rows(payload: Mapping[str, Any], prefix: str = "") -> tuple[tuple[str, str], ...]:
    """(field path, text) rows of a payload, nested maps flattened with dots."""
    rows: list[tuple[str, str]] = []
    for key in sorted(payload, key=str):
        value = payload[key]
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows.extend(payload_rows(value, f"{name}."))
        elif isinstance(value, list | tuple):
            rows.append((name, ", ".join(_cell(v) for v in value) or "(none)"))
        else:
            rows.append((name, _cell(value)))
    return tuple(rows)


def _envelope(store: Store, height: int, index: int, cache: dict[int, Any]) -> SignedTransaction:
    if height not in cache:
        data = store.block_bytes(height)
        if data is None:
            raise NotFoundError(f"no block {height} on this node")
        cache[height] = decode_trusted(data)
    block = cache[height]
    return decode_transaction(block["txs"][index])


@dataclass(frozen=True, slots=True)
class TxView:
    """A committed transaction as its page shows it."""

    tx: SignedTransaction
    """The envelope, decoded."""
    where: TxLocation
    """Block, position and validation code."""
    reason: str
    """Why it was refused (empty when valid)."""
    rows: tuple[tuple[str, str], ...]
    """The payload field by field."""
    proof: tuple[tuple[str, str], ...]
    """The inclusion proof's figures."""
    verified: str
    """`verified`, or why the proof does not verify."""


def transaction(store: Store, tx_id: bytes) -> TxView:
    """A transaction with its inclusion proof, checked here against this node's block hash."""
    where = store.tx_location(tx_id)
    if where is None:
        raise NotFoundError(f"transaction {tx_id.hex()} is not committed on this node")
    cache: dict[int, Any] = {}
    stx = _envelope(store, where.height, where.index, cache)
    reason = cache[where.height]["results"][where.index][1]
    proof = prove_tx(store, tx_id)
    meta = store.block_meta(where.height)
    try:
        verify_tx_proof(proof, None if meta is None else meta.hash)
        verified = "verified"
    except SharechainError as exc:
        verified = f"does not verify: {exc}"
    figures = (
        ("block", str(proof.height)),
        ("leaf index", f"{proof.leaf_index} of {proof.tree_size}"),
        ("tx root", proof.header.tx_root.hex()),
        ("header hash", proof.header_hash.hex()),
        *((f"audit path {i}", p.hex()) for i, p in enumerate(proof.audit_path)),
    )
    return TxView(stx, where, reason, payload_rows(stx.tx.payload), figures, verified)


@dataclass(frozen=True, slots=True)
class Event:
    """An audit-trail entry with what its envelope says."""

    entry: AuditEntry
    """The entry from `contracts.queries.audit`."""
    kind: str
    """Timeline category (see `charts.Mark`)."""
    operator: str
    """The console operator who took the action (checked by its contract), or empty."""
    detail: str
    """A short summary of the payload."""

    @property
    def time(self) -> str:
        return iso(self.entry.timestamp)

    def mark(self) -> Mark:
        who = f" ({self.operator})" if self.operator else ""
        text = f"{self.time} {self.entry.type} by {self.entry.sender}{who}: {self.entry.code}"
        return Mark(self.entry.timestamp, self.kind, text)


def _detail(payload: Mapping[str, Any]) -> str:
    keep = ("purpose", "reason", "to", "epoch", "approve", "note", "title", "kind", "size",
            "intersection_size")  # fmt: skip
    return "; ".join(f"{k} {_cell(payload[k])}" for k in keep if payload.get(k) not in (None, ""))


def events(store: Store, entries: Iterable[AuditEntry]) -> tuple[Event, ...]:
    """The entries with their kind, operator and a payload summary."""
    cache: dict[int, Any] = {}
    out: list[Event] = []
    for e in entries:
        payload = _envelope(store, e.height, e.index, cache).tx.payload
        out.append(Event(e, _KINDS.get(e.type, "other"), e.operator, _detail(payload)))
    return tuple(out)


def marks(found: Sequence[Event]) -> tuple[Mark, ...]:
    return tuple(e.mark() for e in found)


def trail_view(
    store: Store, before: str | None, *, ds: str | None = None, computation_id: str | None = None
) -> dict[str, Any]:
    """What a page shows of a dataset's or a session's audit trail: its newest
    `TRAIL_LIMIT` entries before `before` ("height.index", from the page's "Older
    entries" link; None: up to the newest) as `trail`, their `timeline`, and
    `trail_older` (the link to the entries before them, None at the trail's start)
    and `trail_paged` (whether this page is an older one)."""
    position = None
    if before is not None:
        height, dot, index = before.partition(".")
        if not (dot and height.isdigit() and index.isdigit() and len(before) <= 40):
            raise RefusedError(
                400, f"trail_before={before[:40]!r} is not a position: give height.index"
            )
        position = (int(height), int(index))
    page = audit_newest(
        store, ds=ds, computation_id=computation_id, limit=TRAIL_LIMIT, before=position
    )
    trail = events(store, page.entries)
    return {
        "trail": trail,
        "timeline": timeline(marks(trail)),
        "trail_older": None if page.next is None else f"{page.next[0]}.{page.next[1]}",
        "trail_paged": position is not None,
    }
