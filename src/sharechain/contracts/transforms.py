"""Masked releases: the provider's transformation of a dataset for one grant.

A grant issued under a masking profile (the policy names it by digest for
the dataset's classification) never releases the raw dataset's key. The
owner masks the raw table on its own side and records the result with
`dataset.transform`, which does three things in one transaction:

- registers the masked output as a *derived dataset* of the source (lineage:
  `parents` is the source, `transformation` says which profile and grant),
  owned by the owner, in `owner` custody, marked `masked_for` the grant so
  nobody can request it; its first key epoch (`dataset.epoch`) follows in the
  same block, as for any registration;
- keeps the *transformation record* (`transform/<grant>`, also in the grant):
  the source's plaintext digest, the profile digest, the output's digest, the
  achieved `k`, `l` and suppressed-row count, and the epsilon spent;
- points the grant at the masked dataset (`dataset`; `source` keeps the raw
  one) and adds the epsilon to the grantee's privacy budget on the source
  (`contracts/budgets.py`; a transform over the budget is refused).

Payload: `grant`; `profile` (the digest, 32 bytes); `source_digest`;
`plaintext_digest`, `ciphertext_digest`, `segment_root` (32 bytes each) and
`size` of the sealed masked output; `k`, `l` (0: no l-diversity target),
`suppressed`, `rows` (rows released); `epsilon` (fraction text); optional
`schema` (`[column, type]` pairs of the output). Only the grant's owner may
send it, once per grant, while the grant is neither revoked nor expired; the
achieved `k` and `l` must meet the profile's targets, and `epsilon` must be
what the profile's noised columns spend.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Final

from sharechain.contracts import _fields as f
from sharechain.contracts import budgets
from sharechain.contracts.codes import (
    BAD_PAYLOAD,
    BAD_STATE,
    DENIED,
    DIGEST_MISMATCH,
    DUPLICATE,
    EXPIRED,
    REVOKED,
)
from sharechain.contracts.datasets import create_dataset, dataset_content
from sharechain.contracts.grants import grant_status
from sharechain.contracts.keys import UNINDEXED, dataset_key, grant_key, idx
from sharechain.contracts.profiles import profile_key
from sharechain.ledger.contract import BlockContext, ContractRegistry, Reject, State
from sharechain.ledger.transactions import SignedTransaction

__all__ = ["TRANSFORM", "registry", "transform_key"]

TRANSFORM: Final = "dataset.transform"


def transform_key(grant: str) -> str:
    return f"transform/{grant}"


def _masked_grant(state: State, stx: SignedTransaction, ctx: BlockContext) -> dict[str, Any]:
    """The grant to transform for: the sender's, masked, not served yet, still usable."""
    gid = f.object_id(stx.tx.payload, "grant")
    g = dict(f.load(state, grant_key(gid), "grant"))
    if g["owner"] != stx.tx.sender:
        raise Reject(DENIED, f"only the dataset's owner ({g['owner']}) masks for grant {gid}")
    if not g["masking"]:
        raise Reject(BAD_STATE, f"grant {gid} names no masking profile; nothing to transform")
    if g.get("source"):
        raise Reject(DUPLICATE, f"grant {gid} already has its masked version {g['dataset']}")
    status = grant_status(g, ctx.timestamp, suspended=False)
    if status in (REVOKED, EXPIRED):
        raise Reject(status, f"grant {gid} is {status}; no masked version is made for it")
    return g


def _record(p: Any, g: dict[str, Any], form: Any, source: dict[str, Any]) -> dict[str, Any]:
    """The transformation record, checked against the profile and the source."""
    profile = f.digest(p, "profile")
    if profile.hex() != g["masking"]:
        raise Reject(
            BAD_PAYLOAD, f"grant {g['id']} names profile {g['masking']}, not {profile.hex()}"
        )
    source_digest = f.digest(p, "source_digest")
    if source_digest != source["plaintext_digest"]:
        raise Reject(
            DIGEST_MISMATCH,
            f"source_digest {source_digest.hex()} is not the plaintext of dataset {source['id']}",
        )
    k = f.integer(p, "k", low=1)
    l_div = f.integer(p, "l", default=0)
    if k < form["k"] or (form["l"] is not None and l_div < form["l"]):
        raise Reject(
            BAD_PAYLOAD,
            f"achieved k={k}, l={l_div} miss the profile's targets k={form['k']}, l={form['l']}",
        )
    text = f.text(p, "epsilon", limit=64)
    expected = budgets.form_epsilon(form)
    try:
        epsilon = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise Reject(BAD_PAYLOAD, f"epsilon must be a fraction like 3/2, not {text!r}") from None
    if epsilon != expected:
        raise Reject(BAD_PAYLOAD, f"epsilon {epsilon} is not the profile's {expected}")
    return {
        "grant": g["id"],
        "source": source["id"],
        "source_digest": source_digest,
        "profile": profile,
        "output_digest": f.digest(p, "plaintext_digest"),
        "k": k,
        "l": l_div,
        "suppressed": f.integer(p, "suppressed"),
        "rows": f.integer(p, "rows"),
        "epsilon": str(epsilon),
    }


def _transform(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    f.sender(state, stx.tx.sender)
    p = stx.tx.payload
    g = _masked_grant(state, stx, ctx)
    source = f.load(state, dataset_key(g["dataset"]), "dataset")
    if source["status"] == "purged":
        raise Reject(BAD_STATE, f"dataset {source['id']} was purged")
    form = f.load(state, profile_key(bytes.fromhex(g["masking"])), "masking profile")["form"]
    record = _record(p, g, form, source)
    budgets.check_budget(
        state, source["id"], g["grantee"], source["policy"], Fraction(record["epsilon"])
    )
    content = dataset_content(
        state,
        {
            "title": f"{source['title']} (masked for {g['grantee']})"[:256],
            "description": f"masked release of {source['id']} for grant {g['id']}",
            "schema": p.get("schema", []),
            "classification": source["classification"],
            "plaintext_digest": p.get("plaintext_digest"),
            "ciphertext_digest": p.get("ciphertext_digest"),
            "segment_root": p.get("segment_root"),
            "size": p.get("size"),
            "custody": "owner",
            "holders": [g["owner"]],
            "policy": {"approval": {"any": 1, "of": [g["owner"]]}, "purposes": [g["purpose"]]},
        },
        None,
    )
    masked = create_dataset(
        state,
        stx,
        ctx,
        content,
        parents=[source["id"]],
        transformation=f"masked under profile {g['masking']} for grant {g['id']}",
        masked_for={"grant": g["id"], "grantee": g["grantee"]},
    )
    f.add_index(state, idx("children", source["id"], masked["id"]))
    record = {**record, "dataset": masked["id"], "height": ctx.height, "tx_id": stx.id}
    state.put(transform_key(g["id"]), record)
    state.touch(dataset_key(source["id"]))
    state.touch(f"org/{g['grantee']}")
    budgets.spend(state, source["id"], g["grantee"], Fraction(record["epsilon"]), ctx.height)
    g.update(source=source["id"], dataset=masked["id"], transform=record)
    state.put(grant_key(g["id"]), g)
    f.add_index(state, idx("grants-by-ds", masked["id"], g["id"]))


def registry() -> ContractRegistry:
    return ContractRegistry({TRANSFORM: _transform}, unindexed=UNINDEXED)
