"""Grants: the permission a satisfied request turns into, and its use.

A grant names one grantee, one dataset, a purpose, and an expiry in block time
(valid while the block time is before `expires_at`, so every peer agrees to
the millisecond). Using it is recorded on the chain:

- a key-release receipt (`grant.key-release`) says that the data key of key
  epoch E was released, wrapped to the grantee, as a wrapped key with digest
  D. The releasing custodian (owner, holder, or supervisor under supervisor
  custody) or the grantee acknowledging receipt sends it. It must name the
  grantee, counts against `max_uses` (shares of a threshold release carry the
  same `session` and count once), and is refused when the grant is revoked,
  expired, suspended or used up;
- a read receipt (`grant.read`) is signed by the grantee after it has checked
  the data against the dataset's digest.

A grant whose request carries a masking profile (the policy's, by digest)
never releases the raw dataset's key: until the owner records the masked
version (`dataset.transform`, `contracts/transforms.py`) every release is
refused with `masked`; afterwards the grant's `dataset` is the masked version
(`source` keeps the raw one) and a release must name that dataset.

The owner or a supervisor may revoke a grant (`grant.revoke`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sharechain.contracts import _fields as f
from sharechain.contracts import budgets, operators, risk
from sharechain.contracts.codes import (
    BAD_STATE,
    DENIED,
    DIGEST_MISMATCH,
    EXPIRED,
    MASKED,
    NO_KEY,
    NOT_FOUND,
    REVOKED,
    SUSPENDED,
    USED_UP,
    WRONG_GRANTEE,
)
from sharechain.contracts.epochs import epoch_key
from sharechain.contracts.keys import dataset_key, grant_key, idx, index_items, revoke
from sharechain.contracts.profiles import profile_key
from sharechain.ledger.contract import BlockContext, ContractRegistry, Reject, State
from sharechain.ledger.transactions import SignedTransaction

__all__ = [
    "KEY_RELEASE",
    "READ",
    "REVOKE",
    "Grant",
    "grant_from_value",
    "grant_status",
    "registry",
    "usable_grant_of",
    "waiting_for_mask",
]

KEY_RELEASE = "grant.key-release"
READ = "grant.read"
REVOKE = "grant.revoke"


@dataclass(frozen=True, slots=True)
class Grant:
    """Permission for one organisation to obtain one dataset's key."""

    id: str
    """Hex id, derived from the transaction that satisfied the policy."""
    request: str
    """The request it answers."""
    dataset: str
    """The dataset."""
    grantee: str
    """The only organisation the key may be released to."""
    owner: str
    """The dataset's owner."""
    purpose: str
    """The purpose approved."""
    fields: tuple[str, ...]
    """Columns requested (empty: all)."""
    masking: str
    """Digest (hex) of the masking profile of the only release it allows (empty: none)."""
    issued_at: int
    """Block time of issue (ms)."""
    expires_at: int
    """Block time from which the grant is expired (ms)."""
    max_uses: int
    """Most key releases; 0 is unlimited."""
    uses: int
    """Key releases so far."""
    reads: int
    """Read receipts so far."""
    status: str
    """`active` or `revoked` (expiry and suspension are computed, see `grant_status`)."""
    approvals: tuple[str, ...]
    """Organisations whose approvals satisfied the policy."""
    auto_rule: str
    """The auto-approval rule that granted it, or empty."""
    height: int
    """Block height of issue."""
    source: str = ""
    """For a masked grant whose masked version exists: the raw dataset (`dataset` is the masked)."""
    masking_tx: bytes = b""
    """For a masked grant: the `profile.register` transaction (the owner reads the rules there)."""


def grant_from_value(v: Any) -> Grant:
    return Grant(
        id=v["id"],
        request=v["request"],
        dataset=v["dataset"],
        grantee=v["grantee"],
        owner=v["owner"],
        purpose=v["purpose"],
        fields=tuple(v["fields"]),
        masking=v["masking"],
        issued_at=v["issued_at"],
        expires_at=v["expires_at"],
        max_uses=v["max_uses"],
        uses=v["uses"],
        reads=v["reads"],
        status=v["status"],
        approvals=tuple(v["approvals"]),
        auto_rule=v["auto_rule"],
        height=v["height"],
        source=v.get("source", ""),
        masking_tx=v.get("masking_tx", b""),
    )


def grant_status(v: Any, timestamp: int, suspended: bool) -> str:
    """`active`, `revoked`, `expired`, `suspended` or `used_up` at block time `timestamp`."""
    if v["status"] == "revoked":
        return REVOKED
    if timestamp >= v["expires_at"]:
        return EXPIRED
    if suspended:
        return SUSPENDED
    if v["max_uses"] and v["uses"] >= v["max_uses"]:
        return USED_UP
    return "active"


def usable_grant_of(state: State, org: str, ds: str, ctx: BlockContext) -> str | None:
    """Id of a grant `org` holds on `ds` that is neither revoked nor expired nor suspended."""
    suspended = risk.is_suspended(state, org)
    for gid in index_items(state, "grants-by-org", org):
        v = state.get(grant_key(gid))
        if (
            v is not None
            and v["dataset"] == ds
            and not waiting_for_mask(v)
            and grant_status(v, ctx.timestamp, suspended) in ("active", USED_UP)
        ):
            return gid
    return None


def waiting_for_mask(v: Any) -> bool:
    """Whether a masked grant still waits for its masked version (nothing may be released)."""
    return bool(v["masking"]) and not v.get("source")


def _check_masked(state: State, v: dict[str, Any], named: str, epoch: int) -> None:
    """A masked grant releases only the masked version's keys; refuse anything else."""
    if waiting_for_mask(v):
        raise Reject(
            MASKED,
            f"grant {v['id']} releases only a masked version of dataset {v['dataset']}, which "
            f"its owner ({v['owner']}) has not produced yet; ask again once the owner's node "
            "has committed dataset.transform",
        )
    if named != v["dataset"]:
        raise Reject(
            MASKED,
            f"grant {v['id']} releases only the masked version {v['dataset']} made for it, "
            f"not {named or 'an unnamed dataset'} (the raw dataset is {v['source']})",
        )
    if state.get(epoch_key(named, epoch)) is None:
        raise Reject(NOT_FOUND, f"dataset {named} has no key epoch {epoch}")


_REFUSALS = {
    REVOKED: "grant {id} was revoked",
    EXPIRED: "grant {id} expired at block time {expires_at}",
    SUSPENDED: "the grants of {grantee} are suspended by a risk alert until a supervisor clears it",
    USED_UP: "grant {id} has used all of its {max_uses} key releases",
}


def _check(state: State, v: dict[str, Any], ctx: BlockContext, *, counting: bool) -> None:
    status = grant_status(v, ctx.timestamp, risk.is_suspended(state, v["grantee"]))
    if status == USED_UP and not counting:
        return
    if status != "active":
        raise Reject(status, _REFUSALS[status].format(**v))


def _load(state: State, stx: SignedTransaction) -> dict[str, Any]:
    gid = f.object_id(stx.tx.payload, "grant")
    v = dict(f.load(state, grant_key(gid), "grant"))
    state.touch(dataset_key(v["dataset"]))
    state.touch(f"org/{v['grantee']}")
    return v


def _key_release(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    me = f.sender(state, stx.tx.sender)
    p = stx.tx.payload
    to = f.text(p, "to", limit=64)
    epoch = f.integer(p, "epoch")
    wrapped = f.digest(p, "wrapped_key_digest")
    # Shares of one threshold release name a common session and count once;
    # a release without a session is a use of its own and needs no marker.
    session = f.text(p, "session", required=False, limit=128)
    named = f.text(p, "dataset", required=False, limit=64)
    v = _load(state, stx)
    ds = state.get(dataset_key(v["dataset"]))
    assert ds is not None  # a grant's dataset record is never deleted
    custodian = (
        me.id == ds["owner"]
        or me.id in ds["holders"]
        or (ds["custody"] == "supervisor" and me.has_role("supervisor"))
    )
    if not custodian and me.id != v["grantee"]:
        raise Reject(DENIED, f"{me.id} neither holds the key of {ds['id']} nor is the grantee")
    if to != v["grantee"]:
        raise Reject(WRONG_GRANTEE, f"grant {v['id']} is for {v['grantee']}, not {to}")
    session_key = f"keyrel/{v['id']}/{session}"
    new_session = not session or state.get(session_key) is None
    _check(state, v, ctx, counting=new_session)
    if v["masking"]:
        _check_masked(state, v, named, epoch)
    elif named and named != v["dataset"]:
        raise Reject(DENIED, f"grant {v['id']} is for dataset {v['dataset']}, not {named}")
    if new_session:
        v["uses"] += 1
        if session:
            state.put(session_key, {"epoch": epoch, "height": ctx.height})
        risk.count(state, v["grantee"], risk.KEY_RELEASES, stx, ctx)
    v["last_release"] = {
        "by": me.id,
        "to": to,
        "epoch": epoch,
        "wrapped_key_digest": wrapped,
        "session": session,
        "height": ctx.height,
        "timestamp": ctx.timestamp,
    }
    state.put(grant_key(v["id"]), v)


def _read(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    me = f.sender(state, stx.tx.sender)
    digest = f.digest(stx.tx.payload, "digest")
    v = _load(state, stx)
    if me.id != v["grantee"]:
        raise Reject(DENIED, f"only the grantee ({v['grantee']}) signs read receipts")
    _check(state, v, ctx, counting=False)
    if v["uses"] == 0:
        raise Reject(NO_KEY, f"no key was released under grant {v['id']} yet")
    ds = state.get(dataset_key(v["dataset"]))
    assert ds is not None
    if digest != ds["plaintext_digest"] and digest != ds["ciphertext_digest"]:
        raise Reject(DIGEST_MISMATCH, f"digest {digest.hex()} is not the data of {ds['id']}")
    v["reads"] += 1
    state.put(grant_key(v["id"]), v)


def _revoke(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    me = f.sender(state, stx.tx.sender)
    reason = f.text(stx.tx.payload, "reason", required=False)
    operator = operators.checked(stx.tx.payload)
    v = operators.recorded(_load(state, stx), me.id, operator)
    if me.id != v["owner"] and not me.has_role("supervisor"):
        raise Reject(DENIED, f"only the owner ({v['owner']}) or a supervisor may revoke")
    if v["status"] == "revoked":
        raise Reject(BAD_STATE, f"grant {v['id']} is already revoked")
    revoke(state, v, me.id, reason, ctx)


def issue(
    state: State,
    req: dict[str, Any],
    approvals: list[str],
    rule: str,
    stx: SignedTransaction,
    ctx: BlockContext,
) -> str:
    """Issue the grant a satisfied request earns (called by the access contract).

    A masked grant is refused (`over_budget`) when its profile's epsilon no
    longer fits the grantee's privacy budget on the dataset.
    """
    masking: dict[str, Any] = {}
    if req["masking"]:
        profile = f.load(state, profile_key(bytes.fromhex(req["masking"])), "masking profile")
        ds = f.load(state, dataset_key(req["dataset"]), "dataset")
        epsilon = budgets.form_epsilon(profile["form"])
        budgets.check_budget(state, req["dataset"], req["requester"], ds["policy"], epsilon)
        masking["masking_tx"] = profile["tx_id"]
    gid = f.derive_id("grant", stx.id)
    state.put(
        grant_key(gid),
        {
            "id": gid,
            "request": req["id"],
            "dataset": req["dataset"],
            "grantee": req["requester"],
            "owner": req["owner"],
            "purpose": req["purpose"],
            "fields": req["fields"],
            "masking": req["masking"],
            "issued_at": ctx.timestamp,
            "expires_at": ctx.timestamp + req["duration"],
            "max_uses": req["max_uses"],
            "uses": 0,
            "reads": 0,
            "status": "active",
            "approvals": approvals,
            "auto_rule": rule,
            "height": ctx.height,
            "tx_id": stx.id,
            **masking,
        },
    )
    state.touch(grant_key(gid))
    state.touch(f"org/{req['requester']}")
    f.add_index(state, idx("grants-by-org", req["requester"], gid))
    f.add_index(state, idx("grants-by-ds", req["dataset"], gid))
    return gid


def registry() -> ContractRegistry:
    return ContractRegistry({KEY_RELEASE: _key_release, READ: _read, REVOKE: _revoke})
