"""Access requests: ask, approve, reject; a grant when the policy is met.

A member asks for a dataset for a purpose and a duration
(`access.request`). The dataset's policy says who must approve (the rule is
copied into the request, so a later policy change does not move the goalposts):

- `owner+supervisor`: the owner and one supervisor other than the owner;
- `k-of-n`: any `k` of the named organisations.

A request may name a registered masking profile (`masking`, its digest): the
grant then releases only the masked version made under that profile, exactly
as when the policy names one for the dataset's classification. Where the
policy already names a profile, a request may only name that same one (a
requester cannot trade the owner's masking for a weaker one).

The requester never approves its own request. The approval that satisfies the
policy issues the grant in the same transaction (so in the same block); an
auto-approval rule that holds issues it with the request. Any approver may
reject; the requester may cancel while the request is open.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sharechain.contracts import _fields as f
from sharechain.contracts import grants, operators, risk
from sharechain.contracts.codes import (
    BAD_EXPRESSION,
    BAD_PAYLOAD,
    BAD_STATE,
    DENIED,
    DUPLICATE,
    NOT_FOUND,
)
from sharechain.contracts.keys import (
    SUPERVISOR_INBOX,
    UNINDEXED,
    close_request,
    dataset_key,
    idx,
    request_key,
)
from sharechain.contracts.policies import (
    JOINT,
    RuleCrashError,
    auto_approved,
    policy_from_mapping,
)
from sharechain.contracts.profiles import profile_key
from sharechain.ledger.contract import BlockContext, ContractRegistry, Reject, State
from sharechain.ledger.identities import Organisation
from sharechain.ledger.transactions import SignedTransaction

__all__ = [
    "APPROVE",
    "CANCEL",
    "REJECT",
    "REQUEST",
    "AccessRequest",
    "registry",
    "request_from_value",
]

REQUEST = "access.request"
APPROVE = "access.approve"
REJECT = "access.reject"
CANCEL = "access.cancel"


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """A member's request for access to a dataset."""

    id: str
    """Hex id, derived from the requesting transaction."""
    dataset: str
    """The dataset asked for."""
    owner: str
    """Its owner."""
    requester: str
    """The asking organisation."""
    purpose: str
    """Why (must be one the policy allows)."""
    duration: int
    """How long the grant should last, ms of block time."""
    fields: tuple[str, ...]
    """Columns asked for (empty: all)."""
    justification: str
    """Free text for the approvers."""
    status: str
    """`open`, `granted`, `rejected` or `cancelled`."""
    approvals: tuple[tuple[str, str], ...]
    """(organisation, capacity) pairs; capacity `owner`, `supervisor` or `named`."""
    grant: str
    """The grant issued, or empty."""
    created_at: int
    """Block time of the request (ms)."""
    height: int
    """Its block height."""
    masking: str = ""
    """Digest (hex) of the masking profile the grant will release under (empty: none)."""


def request_from_value(v: Any) -> AccessRequest:
    return AccessRequest(
        id=v["id"],
        dataset=v["dataset"],
        owner=v["owner"],
        requester=v["requester"],
        purpose=v["purpose"],
        duration=v["duration"],
        fields=tuple(v["fields"]),
        justification=v["justification"],
        status=v["status"],
        approvals=tuple((a["org"], a["as"]) for a in v["approvals"]),
        grant=v["grant"],
        created_at=v["created_at"],
        height=v["height"],
        masking=v.get("masking", ""),
    )


def _request(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    me = f.sender(state, stx.tx.sender)
    f.require_role(me, "member", "request access")
    p = stx.tx.payload
    ds_id = f.object_id(p, "dataset")
    purpose = f.text(p, "purpose", limit=256)
    duration = f.integer(p, "duration", low=1)
    fields = f.texts(p, "fields")
    justification = f.text(p, "justification", required=False)
    ds = f.load(state, dataset_key(ds_id), "dataset")
    if ds["status"] != "active":
        hint = f"; request the latest version {ds['next']}" if ds["next"] else ""
        raise Reject(BAD_STATE, f"dataset {ds_id} is {ds['status']}{hint}")
    if ds["owner"] == me.id:
        raise Reject(DENIED, "the owner needs no grant on its own dataset")
    if ds.get("masked_for"):
        raise Reject(
            DENIED,
            f"dataset {ds_id} is the masked release made for grant {ds['masked_for']['grant']}; "
            f"request its source {ds['parents'][0]} instead",
        )
    pol = ds["policy"]
    masking = _masking(state, p, pol, ds)
    if pol["purposes"] and purpose not in pol["purposes"]:
        raise Reject(DENIED, f"purpose {purpose!r} is not among {', '.join(pol['purposes'])}")
    if duration > pol["max_duration"]:
        raise Reject(DENIED, f"duration {duration} ms exceeds the policy's {pol['max_duration']}")
    if fields:  # most requests ask for every column: no set of the schema's to build
        columns = {c for c, _ in ds["schema"]}
        unknown = [x for x in fields if x not in columns]
        if unknown:
            raise Reject(BAD_PAYLOAD, f"dataset {ds_id} has no column(s) {', '.join(unknown)}")
    rid = f.derive_id("request", stx.id)
    inbox = (
        [ds["owner"], SUPERVISOR_INBOX]
        if pol["approval"] == JOINT
        else [o for o in pol["approval"]["of"] if o != me.id]
    )
    req = {
        "id": rid,
        "dataset": ds_id,
        "owner": ds["owner"],
        "requester": me.id,
        "purpose": purpose,
        "duration": duration,
        "fields": list(fields),
        "justification": justification,
        "status": "open",
        "approvals": [],
        "grant": "",
        "approval": pol["approval"],
        "masking": masking,
        "max_uses": pol["max_uses"],
        "inbox": inbox,
        "created_at": ctx.timestamp,
        "height": ctx.height,
        "tx_id": stx.id,
    }
    state.touch(request_key(rid))
    f.add_index(state, idx("req-by-org", me.id, rid))
    f.add_index(state, idx("req-by-ds", ds_id, rid))
    risk.count(state, me.id, risk.REQUESTS, stx, ctx)
    rule = pol["auto_approve"] and _auto_rule(
        pol,
        {
            "request": {
                "purpose": purpose,
                "duration": duration,
                "fields": list(fields),
                "justification": justification,
                "masking": masking,
            },
            "requester": {"org": me.id, "roles": list(me.roles), "name": me.name},
            "dataset": {
                "id": ds_id,
                "owner": ds["owner"],
                "tags": ds["tags"],
                "classification": ds["classification"],
                "title": ds["title"],
            },
        },
    )
    if rule:
        req["grant"] = grants.issue(state, req, [], rule, stx, ctx)
        close_request(state, req, "granted", f"auto-approved by rule {rule}", ctx, "policy")
        return
    for org in inbox:
        f.add_index(state, idx("inbox", org, rid))
    state.put(request_key(rid), req)


def _masking(state: State, p: Any, pol: dict[str, Any], ds: dict[str, Any]) -> str:
    """The profile (hex) the grant will release under: the one asked for, or the policy's."""
    required = dict(pol["masking"]).get(ds["classification"], "")
    asked = f.digest(p, "masking", required=False)
    if not asked:
        return str(required)
    if state.get(profile_key(asked)) is None:
        raise Reject(
            NOT_FOUND,
            f"masking profile {asked.hex()} is not registered; register it first "
            "(`sharechain profile register FILE`)",
        )
    if required and asked.hex() != required:
        raise Reject(
            DENIED,
            f"the policy of dataset {ds['id']} requires masking profile {required} for "
            f"{ds['classification']} data; ask for that one or name none",
        )
    return asked.hex()


def _auto_rule(pol: dict[str, Any], variables: dict[str, Any]) -> str | None:
    try:
        return auto_approved(policy_from_mapping(pol), variables)
    except RuleCrashError as exc:
        raise Reject(BAD_EXPRESSION, str(exc)) from None


def _capacity(req: dict[str, Any], me: Organisation) -> str:
    """In what capacity `me` may approve or reject `req`; refuses if none."""
    if me.id == req["requester"]:
        raise Reject(DENIED, "a requester cannot approve or reject its own request")
    approval = req["approval"]
    if approval == JOINT:
        if me.id == req["owner"]:
            return "owner"
        if me.has_role("supervisor"):
            return "supervisor"
        raise Reject(DENIED, f"only the owner ({req['owner']}) or a supervisor may decide")
    if me.id in approval["of"]:
        return "named"
    raise Reject(DENIED, f"only {', '.join(approval['of'])} may decide on this request")


def _open(state: State, stx: SignedTransaction, by: str, operator: str = "") -> dict[str, Any]:
    """A copy of the open request the payload names, with `operator` recorded for `by`
    (`operators.recorded`: one copy, which the caller may change)."""
    rid = f.object_id(stx.tx.payload, "request")
    stored = f.load(state, request_key(rid), "request")
    state.touch(dataset_key(stored["dataset"]))
    if stored["status"] != "open":
        raise Reject(BAD_STATE, f"request {rid} is already {stored['status']}")
    return operators.recorded(stored, by, operator)


def _satisfied(req: dict[str, Any]) -> bool:
    approval = req["approval"]
    got = [a["as"] for a in req["approvals"]]
    if approval == JOINT:
        return "owner" in got and "supervisor" in got
    return len(got) >= int(approval["any"])


def _approve(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    me = f.sender(state, stx.tx.sender)
    operator = operators.checked(stx.tx.payload)
    req = _open(state, stx, me.id, operator)
    capacity = _capacity(req, me)
    approvals = req["approvals"]
    # list membership, not `any(...)` over a generator: the same test, a third of the cost
    if me.id in [a["org"] for a in approvals]:
        raise Reject(DUPLICATE, f"{me.id} has already approved request {req['id']}")
    if capacity == "supervisor" and "supervisor" in [a["as"] for a in approvals]:
        raise Reject(DUPLICATE, "a supervisor has already approved this request")
    req["approvals"] = [*approvals, {"org": me.id, "as": capacity, "height": ctx.height}]
    inbox_entry = SUPERVISOR_INBOX if capacity == "supervisor" else me.id
    state.delete(idx("inbox", inbox_entry, req["id"]))
    req["inbox"] = [o for o in req["inbox"] if o != inbox_entry]
    if _satisfied(req):
        orgs = [a["org"] for a in req["approvals"]]
        req["grant"] = grants.issue(state, req, orgs, "", stx, ctx)
        close_request(state, req, "granted", "the policy's approvals are complete", ctx, me.id)
    else:
        state.put(request_key(req["id"]), req)


def _reject(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    me = f.sender(state, stx.tx.sender)
    operator = operators.checked(stx.tx.payload)
    req = _open(state, stx, me.id, operator)
    _capacity(req, me)
    reason = f.text(stx.tx.payload, "reason", required=False)
    state.touch(f"org/{req['requester']}")
    close_request(state, req, "rejected", reason, ctx, me.id)


def _cancel(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    f.sender(state, stx.tx.sender)
    req = _open(state, stx, stx.tx.sender)
    if req["requester"] != stx.tx.sender:
        raise Reject(DENIED, f"only the requester ({req['requester']}) may cancel")
    close_request(state, req, "cancelled", "cancelled by the requester", ctx, stx.tx.sender)


def registry() -> ContractRegistry:
    return ContractRegistry(
        {REQUEST: _request, APPROVE: _approve, REJECT: _reject, CANCEL: _cancel},
        unindexed=UNINDEXED,
    )
