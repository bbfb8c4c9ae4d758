"""Membership: admitting and removing organisations by admin vote; key rotation.

An admin proposes to admit an organisation (its id, roles and public keys) or
to remove one (`org.propose`); admins vote (`org.vote`), the proposer's own
vote counting as yes. When the yes votes reach the governance setting
`admission_votes` (default: a majority of the active admins, the organisation
to be removed not counted) the proposal executes in that transaction; when
enough admins vote no that it can no longer pass, it fails.

Removal marks the organisation's `org/<id>` record `removed` (the ledger then
refuses everything it signs), cancels its open requests and those for its
own datasets, and revokes its grants. Key rotation (`org.rotate-key`) is
signed with the current key and carries a proof of possession of the new one;
from the next transaction on the old key signs nothing valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sharechain.codec import encode
from sharechain.contracts import _fields as f
from sharechain.contracts import operators
from sharechain.contracts.codes import BAD_PAYLOAD, BAD_STATE, DENIED, DUPLICATE, NOT_FOUND
from sharechain.contracts.governance import governance
from sharechain.contracts.keys import cancel_requests, index_items, proposal_key, revoke_grants
from sharechain.crypto.signing import verify
from sharechain.errors import InvalidSignatureError
from sharechain.ledger.contract import BlockContext, ContractRegistry, Reject, State
from sharechain.ledger.identities import ROLES, Organisation, check_org_id, org_key, org_to_value
from sharechain.ledger.transactions import SignedTransaction

__all__ = [
    "PROPOSE",
    "ROTATE",
    "ROTATE_DOMAIN",
    "VOTE",
    "Proposal",
    "proposal_from_value",
    "registry",
    "rotation_message",
]

PROPOSE = "org.propose"
VOTE = "org.vote"
ROTATE = "org.rotate-key"
ROTATE_DOMAIN = b"sharechain/rotate-key/v1\x00"
ACTIONS = ("admit", "remove")


@dataclass(frozen=True, slots=True)
class Proposal:
    """A vote on admitting or removing an organisation."""

    id: str
    """Hex id, derived from the proposing transaction."""
    action: str
    """`admit` or `remove`."""
    org: str
    """The organisation concerned."""
    roles: tuple[str, ...]
    """Roles it will have (admission)."""
    proposer: str
    """The admin that proposed it."""
    yes: tuple[str, ...]
    """Admins voting for (the proposer included)."""
    no: tuple[str, ...]
    """Admins voting against."""
    status: str
    """`open`, `passed` or `failed`."""
    height: int
    """Block height of the proposal."""


def proposal_from_value(v: Any) -> Proposal:
    return Proposal(
        id=v["id"],
        action=v["action"],
        org=v["org"],
        roles=tuple(v["roles"]),
        proposer=v["proposer"],
        yes=tuple(v["yes"]),
        no=tuple(v["no"]),
        status=v["status"],
        height=v["height"],
    )


def rotation_message(org: str, sign_key: bytes, enc_key: bytes) -> bytes:
    """What the new signing key signs to prove its holder asked for the rotation."""
    return encode([org, sign_key, enc_key])


def _admin(state: State, stx: SignedTransaction) -> Organisation:
    me = f.sender(state, stx.tx.sender)
    f.require_role(me, "admin", "propose or vote on membership")
    return me


def _key(p: Any, name: str, size: int = 32) -> bytes:
    value = p.get(name)
    if not isinstance(value, bytes) or len(value) != size:
        raise Reject(BAD_PAYLOAD, f"{name} must be a {size}-byte public key")
    return value


def _propose(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    me = _admin(state, stx)
    p = stx.tx.payload
    action = p.get("action")
    if action not in ACTIONS:
        raise Reject(BAD_PAYLOAD, "action must be admit or remove")
    try:
        target = check_org_id(p.get("org", ""))
    except ValueError as exc:
        raise Reject(BAD_PAYLOAD, str(exc)) from None
    existing = f.organisation(state, target)
    state.touch(org_key(target))
    value: dict[str, Any] = {
        "id": f.derive_id("proposal", stx.id),
        "action": action,
        "org": target,
        "roles": [],
        "proposer": me.id,
        "yes": [me.id],
        "no": [],
        "status": "open",
        "height": ctx.height,
        "timestamp": ctx.timestamp,
        "tx_id": stx.id,
    }
    if action == "admit":
        if existing is not None:
            raise Reject(DUPLICATE, f"organisation id {target} is already taken")
        roles = f.texts(p, "roles", limit=3)
        if not roles or any(r not in ROLES for r in roles) or len(set(roles)) != len(roles):
            raise Reject(BAD_PAYLOAD, f"roles must be distinct, among {', '.join(ROLES)}")
        value.update(
            roles=list(roles),
            sign_key=_key(p, "sign_key"),
            enc_key=_key(p, "enc_key"),
            name=f.text(p, "name", required=False),
        )
    else:
        if existing is None or not existing.active:
            raise Reject(NOT_FOUND, f"{target} is not an active organisation")
        if target == me.id:
            raise Reject(DENIED, "an admin cannot propose its own removal")
    state.touch(proposal_key(value["id"]))
    _tally(state, value, ctx)


def _vote(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    me = _admin(state, stx)
    pid = f.object_id(stx.tx.payload, "proposal")
    yes = stx.tx.payload.get("approve", True)
    if not isinstance(yes, bool):
        raise Reject(BAD_PAYLOAD, "approve must be true or false")
    operator = operators.checked(stx.tx.payload)
    value = operators.recorded(f.load(state, proposal_key(pid), "proposal"), me.id, operator)
    state.touch(org_key(value["org"]))
    if value["status"] != "open":
        raise Reject(BAD_STATE, f"proposal {pid} has already {value['status']}")
    if me.id == value["org"]:
        raise Reject(DENIED, "an organisation cannot vote on its own removal")
    if me.id in value["yes"] or me.id in value["no"]:
        raise Reject(DUPLICATE, f"{me.id} has already voted on proposal {pid}")
    side = "yes" if yes else "no"
    value[side] = [*value[side], me.id]
    _tally(state, value, ctx)


def _tally(state: State, value: dict[str, Any], ctx: BlockContext) -> None:
    admins = {o.id for o in f.active_with_role(state, "admin")} - {value["org"]}
    need = governance(state).votes_needed(len(admins))
    yes = len(admins & set(value["yes"]))
    no = len(admins & set(value["no"]))
    if yes >= need:
        value["status"] = "passed"
        _execute(state, value, ctx)
    elif len(admins) - no < need:
        value["status"] = "failed"
    state.put(proposal_key(value["id"]), value)


def _execute(state: State, value: dict[str, Any], ctx: BlockContext) -> None:
    target = value["org"]
    if value["action"] == "admit":
        org = Organisation(
            target,
            tuple(value["roles"]),
            value["sign_key"],
            value["enc_key"],
            "active",
            ctx.height,
            value["name"],
        )
        state.put(org_key(target), org_to_value(org))
        return
    record = f.load(state, org_key(target), "organisation")
    state.put(org_key(target), {**record, "status": "removed", "since": ctx.height})
    by = f"proposal {value['id']}"
    cancel_requests(state, "req-by-org", target, f"{target} was removed", ctx, by)
    revoke_grants(state, "grants-by-org", target, by, f"{target} was removed", ctx)
    # Requests for its own datasets can no longer gather the owner's approval.
    # Grants already issued on them stay: that sharing was approved lawfully.
    for ds in index_items(state, "ds-owner", target):
        cancel_requests(
            state, "req-by-ds", ds, f"{target}, the dataset's owner, was removed", ctx, by
        )


def _rotate(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    me = f.sender(state, stx.tx.sender)
    p = stx.tx.payload
    sign_key, enc_key = _key(p, "sign_key"), _key(p, "enc_key")
    proof = _key(p, "proof", 64)
    if sign_key == me.sign_key:
        raise Reject(BAD_PAYLOAD, "the new signing key is the current one")
    try:
        verify(sign_key, proof, ROTATE_DOMAIN, rotation_message(me.id, sign_key, enc_key))
    except InvalidSignatureError:
        raise Reject(
            DENIED, "proof is not a signature by the new key (proof of possession)"
        ) from None
    record = f.load(state, org_key(me.id), "organisation")
    state.put(
        org_key(me.id), {**record, "sign_key": sign_key, "enc_key": enc_key, "since": ctx.height}
    )


def registry() -> ContractRegistry:
    return ContractRegistry({PROPOSE: _propose, VOTE: _vote, ROTATE: _rotate})
