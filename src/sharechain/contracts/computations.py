"""Joint computations on the chain: PSI and secure-aggregation sessions, governed like requests.

The private inputs never touch the chain; what it records is who computed what
with whom, under which limits, with which result size, and who received it::

    proposed --every party accepts (and a supervisor approves, if asked)--> open
    open     --each party commits its input (digest, size, proofs)-------> open
    open     --the proposer records the result----------------------------> done
    done     --each party acknowledges it (receipt)
    proposed | open --a party or a supervisor rejects--> rejected
    proposed | open --anyone involved, after the deadline--> expired

A PSI session has two parties: the *client* (it learns the intersection; the
proposer unless the payload names the other party as ``client``) and the
*holder* (it may name the ``dataset`` and ``column`` whose values it offers).
The client's set size is capped by the session (`max_set_size`): the OPRF lets
a client test any element it holds, so the cap, the supervisor's approval, a
hard cap of `MAX_SESSIONS_PER_WINDOW` PSI sessions per client per risk window
and the risk counters (every session counts like an access request against
the client, and a suspended organisation can neither propose nor be the
client) are the defence against probing. The client records the PSI result.

An aggregation session has three or more parties; the proposer aggregates.
Each party commits the SHA-256 of its Pedersen commitments;
for vectors of up to `MAX_CHECKED_VALUES` values it may also put the commitments
and their range proofs in the transaction, and the contract checks them (the
proof context is `rangeproof.session_context(session id, party, position)`).
A result records the intersection size, or the contributors and a digest of
the sums; it is refused if more parties dropped out than the session allows.

A supervisor's approval and a rejection may name the operator who decided
(``operator``, checked and recorded as `contracts.operators` says): the
console's buttons do.

State: ``computation/<id>``, the session and everything recorded about it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sharechain.contracts import _fields as f
from sharechain.contracts import operators, risk
from sharechain.contracts.codes import (
    BAD_PAYLOAD,
    BAD_STATE,
    DENIED,
    DUPLICATE,
    EXPIRED,
    SUSPENDED,
)
from sharechain.contracts.governance import governance
from sharechain.crypto import rangeproof
from sharechain.ledger.contract import BlockContext, ContractRegistry, Reject, State
from sharechain.ledger.transactions import SignedTransaction

__all__ = [
    "ACCEPT",
    "APPROVE",
    "CLOSE",
    "COMMIT",
    "MAX_CHECKED_VALUES",
    "MAX_SESSIONS_PER_WINDOW",
    "PROPOSE",
    "RECEIPT",
    "REJECT",
    "RESULT",
    "TX_TYPES",
    "Computation",
    "computation_from_value",
    "computation_key",
    "recorder",
    "registry",
]

PROPOSE = "computation.propose"
ACCEPT = "computation.accept"
APPROVE = "computation.approve"
REJECT = "computation.reject"
COMMIT = "computation.commit"
RESULT = "computation.result"
RECEIPT = "computation.receipt"
CLOSE = "computation.close"
TX_TYPES = (PROPOSE, ACCEPT, APPROVE, REJECT, COMMIT, RESULT, RECEIPT, CLOSE)

MAX_PARTIES = 64
MAX_CHECKED_VALUES = 16
MAX_DURATION = 7 * 24 * 3_600_000
MAX_LENGTH = 1_000_000
MAX_SESSIONS_PER_WINDOW = 32
"""PSI sessions one client may take part in per risk window (block time), whatever the holder."""


def computation_key(session: str) -> str:
    return f"computation/{session}"


@dataclass(frozen=True, slots=True)
class Computation:
    """A session as the chain records it (the fields the parties' tools act on)."""

    id: str
    """Hex id, derived from the proposal."""
    kind: str
    """``psi`` or ``aggregate``."""
    proposer: str
    """Who proposed (the aggregator of an aggregation)."""
    parties: tuple[str, ...]
    """Every party, proposer first."""
    client: str
    """The PSI client (learns the intersection); empty for an aggregation."""
    limits: Mapping[str, int]
    """``max_set_size``, or ``length``, ``bits`` and ``max_dropouts``."""
    status: str
    """``proposed``, ``open``, ``done``, ``rejected`` or ``expired``."""
    deadline: int
    """Block time (ms) after which the session can only be closed."""
    accepted: tuple[str, ...]
    """Parties that accepted."""
    committed: Mapping[str, tuple[bytes, int]]
    """Party -> (digest, size) of its committed input."""
    result: Mapping[str, Any] | None
    """What the result transaction recorded, once done."""
    raw: Mapping[str, Any]
    """The whole state value (purpose, input, approvals, receipts, heights)."""

    @property
    def holder(self) -> str:
        """The PSI party that is not the client."""
        return next(p for p in self.parties if p != self.client)

    @property
    def recorder(self) -> str:
        """Who records the result."""
        return recorder(self.raw)

    @property
    def ended(self) -> bool:
        """Rejected or expired: nothing more happens, its mailboxes are dropped."""
        return self.status in ("rejected", "expired")


def computation_from_value(v: Mapping[str, Any]) -> Computation:
    return Computation(
        id=v["id"],
        kind=v["kind"],
        proposer=v["proposer"],
        parties=tuple(v["parties"]),
        client=v.get("client", ""),
        limits=dict(v["limits"]),
        status=v["status"],
        deadline=v["deadline"],
        accepted=tuple(v["accepted"]),
        committed={k: (c["digest"], c["size"]) for k, c in v["commits"].items()},
        result=v["result"],
        raw=v,
    )


def recorder(value: Mapping[str, Any]) -> str:
    """Who records a session's result: the PSI client, or the aggregation's proposer."""
    who: str = value.get("client") or value["proposer"]
    return who


def _flag(p: Mapping[str, Any], name: str, default: bool) -> bool:
    value = p.get(name, default)
    if not isinstance(value, bool):
        raise Reject(BAD_PAYLOAD, f"{name} must be true or false")
    return value


def _limits(p: Mapping[str, Any], kind: str, parties: tuple[str, ...]) -> dict[str, int]:
    n = len(parties)
    if kind == "psi":
        if n != 2:
            raise Reject(BAD_PAYLOAD, "a PSI session has exactly two parties: client and holder")
        return {"max_set_size": f.integer(p, "max_set_size", low=1)}
    if kind != "aggregate":
        raise Reject(BAD_PAYLOAD, "kind must be 'psi' or 'aggregate'")
    if n < 3:
        raise Reject(BAD_PAYLOAD, "an aggregation session needs at least three parties")
    length = f.integer(p, "length", low=1)
    bits = f.integer(p, "bits", default=32, low=1)
    dropouts = f.integer(p, "max_dropouts", default=0)
    if length > MAX_LENGTH or bits > rangeproof.MAX_BITS or n << bits > 1 << 64:
        raise Reject(BAD_PAYLOAD, "length or bits too large (the sums must fit in 64 bits)")
    if dropouts > n - 3:
        raise Reject(BAD_PAYLOAD, f"max_dropouts must be at most {n - 3}: three must remain")
    scale = f.integer(p, "scale", default=0)
    if scale > 18:
        raise Reject(BAD_PAYLOAD, "scale (decimal places of the values) must be at most 18")
    return {"length": length, "bits": bits, "max_dropouts": dropouts, "scale": scale}


def _propose(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    p, me = stx.tx.payload, stx.tx.sender
    f.sender(state, me)
    if risk.is_suspended(state, me):
        raise Reject(SUSPENDED, f"{me} is suspended by a risk alert: no new computations")
    kind = f.text(p, "kind", limit=16)
    parties = f.texts(p, "parties", limit=MAX_PARTIES)
    if len(set(parties)) != len(parties) or not parties or parties[0] != me:
        raise Reject(BAD_PAYLOAD, "parties must be distinct and start with the proposer")
    for party in parties:
        org = f.organisation(state, party)
        if org is None or not org.active:
            raise Reject(DENIED, f"{party} is not an active member")
    limits = _limits(p, kind, parties)
    client = (f.text(p, "client", required=False, limit=64) or me) if kind == "psi" else ""
    if client and client not in parties:
        raise Reject(BAD_PAYLOAD, "the PSI client must be one of the two parties")
    if client and risk.is_suspended(state, client):
        raise Reject(SUSPENDED, f"{client} is suspended by a risk alert: no new computations")
    duration = f.integer(p, "duration", low=1)
    if duration > MAX_DURATION:
        raise Reject(BAD_PAYLOAD, f"duration must be at most {MAX_DURATION} ms")
    session = f.derive_id("computation", stx.id)
    counted = client or me
    if client:
        _count_psi_session(state, client, ctx)
    state.touch(computation_key(session))
    state.put(
        computation_key(session),
        {
            "id": session,
            "kind": kind,
            "proposer": me,
            "parties": list(parties),
            "purpose": f.text(p, "purpose"),
            "client": client,
            "input": {
                "dataset": f.text(p, "dataset", required=False, limit=128),
                "column": f.text(p, "column", required=False, limit=128),
            },
            "limits": limits,
            "approval_required": _flag(p, "supervisor_approval", True),
            "approved_by": "",
            "accepted": [me],
            "status": "proposed",
            "deadline": ctx.timestamp + duration,
            "commits": {},
            "result": None,
            "receipts": [],
            "height": ctx.height,
            "timestamp": ctx.timestamp,
            "tx_id": stx.id,
        },
    )
    # A session is a look at other members' data: it counts like an access request
    # against whoever learns from it (the PSI client, the aggregator).
    risk.count(state, counted, risk.REQUESTS, stx, ctx)


def _count_psi_session(state: State, client: str, ctx: BlockContext) -> None:
    window = governance(state).risk.window
    key = f"computation-count/{client}/{ctx.timestamp - ctx.timestamp % window}"
    n = (state.get(key) or 0) + 1
    if n > MAX_SESSIONS_PER_WINDOW:
        raise Reject(
            DENIED,
            f"{client} already took part in {MAX_SESSIONS_PER_WINDOW} PSI sessions in this "
            "risk window; wait for the next one",
        )
    state.put(key, n)


def _load(
    state: State, stx: SignedTransaction, ctx: BlockContext, *statuses: str
) -> dict[str, Any]:
    session = f.object_id(stx.tx.payload, "session")
    value = dict(f.load(state, computation_key(session), "computation"))
    if value["status"] not in statuses:
        raise Reject(BAD_STATE, f"computation {session} is {value['status']}")
    if value["status"] in ("proposed", "open") and ctx.timestamp > value["deadline"]:
        raise Reject(EXPIRED, f"computation {session} passed its deadline: close it")
    return value


def _party(value: Mapping[str, Any], org: str, doing: str) -> None:
    if org not in value["parties"]:
        raise Reject(DENIED, f"only a party of computation {value['id']} may {doing}")


def _open_if_ready(value: dict[str, Any]) -> None:
    ready = set(value["accepted"]) == set(value["parties"])
    if ready and (value["approved_by"] or not value["approval_required"]):
        value["status"] = "open"


def _accept(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    value = _load(state, stx, ctx, "proposed")
    me = stx.tx.sender
    _party(value, me, "accept it")
    if me in value["accepted"]:
        raise Reject(DUPLICATE, f"{me} already accepted computation {value['id']}")
    value["accepted"] = [*value["accepted"], me]
    _open_if_ready(value)
    state.put(computation_key(value["id"]), value)


def _approve(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    me = f.sender(state, stx.tx.sender)
    f.require_role(me, "supervisor", "approve computations")
    operator = operators.checked(stx.tx.payload)
    value = operators.recorded(_load(state, stx, ctx, "proposed"), me.id, operator)
    if not value["approval_required"] or value["approved_by"]:
        raise Reject(DUPLICATE, f"computation {value['id']} needs no (further) approval")
    value["approved_by"] = stx.tx.sender
    _open_if_ready(value)
    state.put(computation_key(value["id"]), value)


def _reject(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    me = f.sender(state, stx.tx.sender)
    operator = operators.checked(stx.tx.payload)
    value = operators.recorded(_load(state, stx, ctx, "proposed", "open"), me.id, operator)
    if me.id not in value["parties"]:
        f.require_role(me, "supervisor", "reject another members' computation")
    value["status"] = "rejected"
    value["rejected"] = {"by": me.id, "reason": f.text(stx.tx.payload, "reason", required=False)}
    state.put(computation_key(value["id"]), value)


def _check_proofs(value: Mapping[str, Any], me: str, p: Mapping[str, Any], digest: bytes) -> None:
    commitments, proofs = p.get("commitments"), p.get("proofs")
    if commitments is None and proofs is None:
        return
    length, bits = value["limits"]["length"], value["limits"]["bits"]
    if length > MAX_CHECKED_VALUES:
        raise Reject(BAD_PAYLOAD, f"the chain checks proofs of at most {MAX_CHECKED_VALUES} values")
    if (
        not isinstance(commitments, list | tuple)
        or not isinstance(proofs, list | tuple)
        or not len(commitments) == len(proofs) == length
        or not all(isinstance(x, bytes) for x in (*commitments, *proofs))
    ):
        raise Reject(BAD_PAYLOAD, f"commitments and proofs must be {length} byte strings each")
    if hashlib.sha256(b"".join(commitments)).digest() != digest:
        raise Reject(BAD_PAYLOAD, "digest is not the SHA-256 of the commitments")
    session = bytes.fromhex(value["id"])
    for i, (commitment, proof) in enumerate(zip(commitments, proofs, strict=True)):
        try:
            rangeproof.verify(commitment, proof, rangeproof.session_context(session, me, i), bits)
        except rangeproof.InvalidProofError as exc:
            raise Reject(BAD_PAYLOAD, f"value {i}: {exc}") from None


def _commit(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    value = _load(state, stx, ctx, "open")
    p, me = stx.tx.payload, stx.tx.sender
    _party(value, me, "commit an input")
    if me in value["commits"]:
        raise Reject(DUPLICATE, f"{me} already committed its input; a second one is refused")
    digest = f.digest(p, "digest")
    size = f.integer(p, "size")
    limits = value["limits"]
    if value["kind"] == "psi" and me == recorder(value) and size > limits["max_set_size"]:
        raise Reject(
            DENIED, f"a set of {size} is over this session's cap of {limits['max_set_size']}"
        )
    if value["kind"] == "aggregate":
        if size != limits["length"]:
            raise Reject(BAD_PAYLOAD, f"this session takes {limits['length']} values per party")
        _check_proofs(value, me, p, digest)
    entry = {"digest": digest, "size": size, "height": ctx.height, "tx_id": stx.id}
    value["commits"] = {**value["commits"], me: entry}
    state.put(computation_key(value["id"]), value)


def _result(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    value = _load(state, stx, ctx, "open")
    p, me = stx.tx.payload, stx.tx.sender
    if me != recorder(value):
        raise Reject(DENIED, "only the PSI client or the aggregator (proposer) records the result")
    committed = value["commits"]
    if value["kind"] == "psi":
        if len(committed) != 2:
            raise Reject(BAD_STATE, "both parties must commit before a PSI result")
        found = f.integer(p, "intersection_size")
        if found > min(c["size"] for c in committed.values()):
            raise Reject(BAD_PAYLOAD, "the intersection cannot be larger than either set")
        result: dict[str, Any] = {"intersection_size": found}
    else:
        contributors = f.texts(p, "contributors", limit=MAX_PARTIES)
        if set(contributors) != set(committed) or len(contributors) != len(committed):
            raise Reject(BAD_PAYLOAD, "contributors must be exactly the parties that committed")
        dropped = len(value["parties"]) - len(contributors)
        if dropped > value["limits"]["max_dropouts"]:
            raise Reject(BAD_STATE, f"{dropped} parties dropped out: the session has no result")
        result = {"contributors": list(contributors), "sums_digest": f.digest(p, "sums_digest")}
    value["status"] = "done"
    value["result"] = {**result, "height": ctx.height, "timestamp": ctx.timestamp}
    state.put(computation_key(value["id"]), value)


def _receipt(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    value = _load(state, stx, ctx, "done")
    me = stx.tx.sender
    _party(value, me, "acknowledge its result")
    if me in value["receipts"]:
        raise Reject(DUPLICATE, f"{me} already acknowledged this result")
    value["receipts"] = [*value["receipts"], me]
    state.put(computation_key(value["id"]), value)


def _close(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    session = f.object_id(stx.tx.payload, "session")
    value = dict(f.load(state, computation_key(session), "computation"))
    me = f.sender(state, stx.tx.sender)
    if me.id not in value["parties"]:
        f.require_role(me, "supervisor", "close another members' computation")
    if value["status"] not in ("proposed", "open"):
        raise Reject(BAD_STATE, f"computation {session} is {value['status']}")
    if ctx.timestamp <= value["deadline"]:
        raise Reject(
            BAD_STATE, f"computation {session} runs until {value['deadline']} (block time)"
        )
    missing = [p for p in value["parties"] if p not in value["commits"]]
    value["status"] = "expired"
    value["expired"] = {"by": me.id, "without_input": missing, "height": ctx.height}
    state.put(computation_key(session), value)


def registry() -> ContractRegistry:
    return ContractRegistry(
        {
            PROPOSE: _propose,
            ACCEPT: _accept,
            APPROVE: _approve,
            REJECT: _reject,
            COMMIT: _commit,
            RESULT: _result,
            RECEIPT: _receipt,
            CLOSE: _close,
        }
    )
