"""Datasets: what a provider shares, described on the chain.

A dataset record holds the data's fingerprints (plaintext digest, ciphertext
digest, segment Merkle root, size), its description (title, tags, schema,
classification), where its key lives (custody mode and holders) and the policy
that governs access. The payload itself stays off the chain.

A new version is a new record linked to the previous one; a derived dataset
names its parents and the transformation (lineage); retiring stops new
requests; purging (crypto-shredding: the data plane destroys the keys and
blobs) revokes every grant but keeps the record, marked purged, for audit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sharechain.contracts import _fields as f
from sharechain.contracts import digests
from sharechain.contracts.codes import BAD_EXPRESSION, BAD_PAYLOAD, BAD_STATE, DENIED, NOT_FOUND
from sharechain.contracts.governance import governance
from sharechain.contracts.keys import cancel_requests, dataset_key, idx, revoke_grants
from sharechain.contracts.policies import (
    CLASSIFICATIONS,
    Policy,
    PolicyError,
    RuleError,
    policy_from_mapping,
    policy_to_value,
)
from sharechain.contracts.profiles import profile_key
from sharechain.ledger.contract import BlockContext, ContractRegistry, Reject, State
from sharechain.ledger.transactions import SignedTransaction

__all__ = [
    "CUSTODY_MODES",
    "DERIVE",
    "POLICY",
    "PURGE",
    "REGISTER",
    "RETIRE",
    "VERSION",
    "Dataset",
    "create_dataset",
    "dataset_content",
    "dataset_from_value",
    "policy_value",
    "registry",
]

REGISTER = "dataset.register"
VERSION = "dataset.version"
DERIVE = "dataset.derive"
RETIRE = "dataset.retire"
PURGE = "dataset.purge"
POLICY = "dataset.policy"
CUSTODY_MODES = ("owner", "supervisor", "threshold")
STATUSES = ("active", "superseded", "retired", "purged")


@dataclass(frozen=True, slots=True)
class Dataset:
    """A dataset as the chain records it."""

    id: str
    """Hex id, derived from the registering transaction."""
    owner: str
    """The providing organisation."""
    title: str
    """Short name."""
    description: str
    """Free text."""
    tags: tuple[str, ...]
    """Catalogue tags."""
    schema: tuple[tuple[str, str], ...]
    """(column, type) pairs for tabular data; empty otherwise."""
    classification: str
    """`public`, `internal`, `confidential` or `secret`."""
    plaintext_digest: bytes
    """SHA-256 of the plaintext."""
    ciphertext_digest: bytes
    """SHA-256 of the ciphertext."""
    size: int
    """Plaintext size in bytes."""
    segment_root: bytes
    """Merkle root over the ciphertext segments (empty if unknown)."""
    custody: str
    """Who holds the data key: `owner`, `supervisor` or `threshold`."""
    holders: tuple[str, ...]
    """Organisations holding the key or key shares."""
    policy: Policy
    """The sharing policy."""
    status: str
    """`active`, `superseded` (a newer version exists), `retired` or `purged`."""
    version: int
    """1 for a first registration, then 2, 3, ..."""
    previous: str
    """Id of the previous version, or empty."""
    next: str
    """Id of the next version, or empty."""
    parents: tuple[str, ...]
    """Datasets this one was derived from."""
    transformation: str
    """How it was derived from its parents."""
    created_at: int
    """Block time of registration (ms)."""
    height: int
    """Block height of registration."""
    tx_id: bytes
    """The registering transaction."""
    masked_for: str = ""
    """For a masked version (`dataset.transform`): the one grant it was made for."""


def dataset_from_value(v: Any) -> Dataset:
    return Dataset(
        id=v["id"],
        owner=v["owner"],
        title=v["title"],
        description=v["description"],
        tags=tuple(v["tags"]),
        schema=tuple((c, t) for c, t in v["schema"]),
        classification=v["classification"],
        plaintext_digest=v["plaintext_digest"],
        ciphertext_digest=v["ciphertext_digest"],
        size=v["size"],
        segment_root=v["segment_root"],
        custody=v["custody"],
        holders=tuple(v["holders"]),
        policy=policy_from_mapping(v["policy"]),
        status=v["status"],
        version=v["version"],
        previous=v["previous"],
        next=v["next"],
        parents=tuple(v["parents"]),
        transformation=v["transformation"],
        created_at=v["created_at"],
        height=v["height"],
        tx_id=v["tx_id"],
        masked_for=v["masked_for"]["grant"] if "masked_for" in v else "",
    )


def _schema(p: dict[str, Any]) -> list[list[str]]:
    schema = p.get("schema", [])
    if not isinstance(schema, list) or not all(
        isinstance(c, list | tuple) and len(c) == 2 and all(isinstance(x, str) and x for x in c)
        for c in schema
    ):
        raise Reject(BAD_PAYLOAD, "schema must be a list of [column, type] pairs")
    if len({c[0] for c in schema}) != len(schema):
        raise Reject(BAD_PAYLOAD, "schema names a column twice")
    return [[c, t] for c, t in schema]


def policy_value(state: State, raw: Any) -> dict[str, Any]:
    """Validate a policy map (or the governance default) into its canonical form."""
    if raw is None:
        raw = governance(state).default_policy
    try:
        value = policy_to_value(policy_from_mapping(raw))
    except PolicyError as exc:
        code = BAD_EXPRESSION if isinstance(exc, RuleError) else BAD_PAYLOAD
        raise Reject(code, f"policy: {exc}") from None
    for cls, digest in value["masking"].items():
        if state.get(profile_key(bytes.fromhex(digest))) is None:
            raise Reject(
                NOT_FOUND,
                f"policy: masking.{cls} names profile {digest}, which is not registered; "
                "register it first (`sharechain profile register FILE`)",
            )
    return value


_DESCRIPTIVE = (
    "title",
    "description",
    "tags",
    "schema",
    "classification",
    "custody",
    "holders",
    "policy",
)


def dataset_content(state: State, p: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
    """The describable fields of a dataset; a new version inherits unset ones from `base`."""
    q = dict(p)
    if base is not None:
        q = {**{k: base[k] for k in _DESCRIPTIVE}, **{k: p[k] for k in _DESCRIPTIVE if k in p}}
    out = {
        "title": f.text(q, "title", limit=256),
        "description": f.text(q, "description", required=False),
        "tags": sorted(set(f.texts(q, "tags", limit=32))),
        "schema": _schema(q),
        "classification": q.get("classification", "internal"),
        "plaintext_digest": f.digest(p, "plaintext_digest"),
        "ciphertext_digest": f.digest(p, "ciphertext_digest"),
        "size": f.integer(p, "size"),
        "segment_root": f.digest(p, "segment_root", required=False),
        "custody": q.get("custody", "owner"),
        "holders": list(f.texts(q, "holders", limit=64)),
    }
    if out["classification"] not in CLASSIFICATIONS:
        raise Reject(BAD_PAYLOAD, f"classification must be one of {', '.join(CLASSIFICATIONS)}")
    if out["custody"] not in CUSTODY_MODES:
        raise Reject(BAD_PAYLOAD, f"custody must be one of {', '.join(CUSTODY_MODES)}")
    for holder in out["holders"]:
        o = f.organisation(state, holder)
        if o is None or not o.active:
            raise Reject(NOT_FOUND, f"holder {holder} is not an active organisation")
    out["policy"] = policy_value(state, q.get("policy"))
    return out


def create_dataset(
    state: State, stx: SignedTransaction, ctx: BlockContext, content: dict[str, Any], **links: Any
) -> dict[str, Any]:
    ds = f.derive_id("dataset", stx.id)
    record = {
        "id": ds,
        "owner": stx.tx.sender,
        **content,
        "status": "active",
        "version": 1,
        "previous": "",
        "next": "",
        "parents": [],
        "transformation": "",
        "created_at": ctx.timestamp,
        "height": ctx.height,
        "tx_id": stx.id,
        **links,
    }
    digests.claim(
        state, record["ciphertext_digest"], ds, record["owner"], previous=record["previous"]
    )
    state.put(dataset_key(ds), record)
    state.touch(dataset_key(ds))
    f.add_index(state, idx("ds-owner", stx.tx.sender, ds))
    f.add_index(state, idx("ds-class", record["classification"], ds))
    for tag in record["tags"]:
        f.add_index(state, idx("ds-tag", tag, ds))
    return record


def _owned(state: State, stx: SignedTransaction, doing: str) -> dict[str, Any]:
    ds = f.object_id(stx.tx.payload, "dataset")
    value = dict(f.load(state, dataset_key(ds), "dataset"))
    if value["owner"] != stx.tx.sender:
        raise Reject(DENIED, f"only the owner ({value['owner']}) may {doing} dataset {ds}")
    return value


def _register(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    me = f.sender(state, stx.tx.sender)
    f.require_role(me, "member", "register datasets")
    create_dataset(state, stx, ctx, dataset_content(state, dict(stx.tx.payload), None))


def _version(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    f.sender(state, stx.tx.sender)
    old = _owned(state, stx, "version")
    if old["status"] != "active":
        raise Reject(
            BAD_STATE,
            f"dataset {old['id']} is {old['status']}; version the latest "
            "active one" + (f" ({old['next']})" if old["next"] else ""),
        )
    content = dataset_content(state, dict(stx.tx.payload), old)
    new = create_dataset(
        state,
        stx,
        ctx,
        content,
        version=old["version"] + 1,
        previous=old["id"],
        parents=old["parents"],
        transformation=old["transformation"],
    )
    state.put(dataset_key(old["id"]), {**old, "status": "superseded", "next": new["id"]})


def _derive(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    from sharechain.contracts.grants import usable_grant_of  # lineage needs grants

    me = f.sender(state, stx.tx.sender)
    f.require_role(me, "member", "derive datasets")
    p = dict(stx.tx.payload)
    parents = f.texts(p, "parents", limit=64)
    if not parents or len(set(parents)) != len(parents):
        raise Reject(BAD_PAYLOAD, "parents must list one or more distinct dataset ids")
    transformation = f.text(p, "transformation")
    for parent in parents:
        value = f.load(state, dataset_key(parent), "dataset")
        if value["status"] == "purged":
            raise Reject(BAD_STATE, f"parent {parent} was purged")
        if value["owner"] != me.id and usable_grant_of(state, me.id, parent, ctx) is None:
            raise Reject(DENIED, f"{me.id} neither owns {parent} nor holds a usable grant on it")
    new = create_dataset(
        state,
        stx,
        ctx,
        dataset_content(state, p, None),
        parents=list(parents),
        transformation=transformation,
    )
    for parent in parents:
        f.add_index(state, idx("children", parent, new["id"]))


def _retire(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    f.sender(state, stx.tx.sender)
    value = _owned(state, stx, "retire")
    if value["status"] in ("retired", "purged"):
        raise Reject(BAD_STATE, f"dataset {value['id']} is already {value['status']}")
    value["status"] = "retired"
    value["retired"] = {"height": ctx.height, "timestamp": ctx.timestamp}
    state.put(dataset_key(value["id"]), value)
    cancel_requests(state, "req-by-ds", value["id"], "dataset retired", ctx, stx.tx.sender)


def _purge(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    me = f.sender(state, stx.tx.sender)
    ds = f.object_id(stx.tx.payload, "dataset")
    reason = f.text(stx.tx.payload, "reason", required=False)
    value = dict(f.load(state, dataset_key(ds), "dataset"))
    if value["owner"] != me.id and not me.has_role("supervisor"):
        raise Reject(DENIED, f"only the owner ({value['owner']}) or a supervisor may purge")
    if value["status"] == "purged":
        raise Reject(BAD_STATE, f"dataset {ds} is already purged")
    value["status"] = "purged"
    value["purged"] = {
        "by": me.id,
        "reason": reason,
        "height": ctx.height,
        "timestamp": ctx.timestamp,
    }
    state.put(dataset_key(ds), value)
    cancel_requests(state, "req-by-ds", ds, "dataset purged", ctx, me.id)
    revoke_grants(state, "grants-by-ds", ds, me.id, "dataset purged", ctx)


def _set_policy(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    f.sender(state, stx.tx.sender)
    value = _owned(state, stx, "change the policy of")
    if value["status"] in ("retired", "purged"):
        raise Reject(BAD_STATE, f"dataset {value['id']} is {value['status']}")
    if "policy" not in stx.tx.payload:
        raise Reject(BAD_PAYLOAD, "policy is required")
    value["policy"] = policy_value(state, stx.tx.payload["policy"])
    state.put(dataset_key(value["id"]), value)


def registry() -> ContractRegistry:
    return ContractRegistry(
        {
            REGISTER: _register,
            VERSION: _version,
            DERIVE: _derive,
            RETIRE: _retire,
            PURGE: _purge,
            POLICY: _set_policy,
        }
    )
