"""Key epochs: which sealed payload, under which key generation, a dataset serves now.

A dataset's payload is sealed under a data key of some *epoch*. The first epoch
(1) is the one registered with the dataset; revoking a grant or rotating the key
moves the dataset to the next epoch: the owner re-seals the same plaintext under
a fresh key, so keys released under an old epoch open nothing published after it.

`dataset.epoch` records an epoch (payload: `dataset`, `epoch`,
`ciphertext_digest`, `segment_root`, `custody`, `holders`, `threshold`, optional
`inline` ciphertext and `reason`):

- epoch 1 confirms the registration: its digests, custody and holders must be
  the dataset record's own. The data plane always sends it, because it carries
  what the dataset record has no field for: the threshold of a `threshold`
  custody split and, for a small payload, the ciphertext itself (`inline`,
  which is then on the chain and needs no blob store);
- epoch `n + 1` follows epoch `n` and rotates: a new ciphertext digest, the
  same plaintext (the dataset record's plaintext digest still describes it), and
  the same holders (the dataset record names who may release keys).

Only the owner sends it, and not for a retired or purged dataset. Each epoch is
kept at `epoch/<dataset>/<epoch, 12 digits>`, so the last key under the prefix
is the current one; every `dataset.epoch` touches `dataset/<id>` and so shows in
the dataset's audit trail.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

from sharechain.contracts import _fields as f
from sharechain.contracts import digests
from sharechain.contracts.codes import BAD_PAYLOAD, BAD_STATE, DENIED, DIGEST_MISMATCH
from sharechain.contracts.keys import dataset_key
from sharechain.errors import AccessDeniedError
from sharechain.ledger.contract import BlockContext, ContractRegistry, Reject, State
from sharechain.ledger.transactions import SignedTransaction

__all__ = [
    "EPOCH",
    "MAX_INLINE",
    "KeyEpoch",
    "check_deposit",
    "current_epoch",
    "epoch_from_value",
    "epoch_key",
    "epoch_prefix",
    "registry",
]

EPOCH = "dataset.epoch"
MAX_INLINE: Final = 1 << 20
"""Largest ciphertext a `dataset.epoch` may carry; nodes choose smaller (64 KiB default)."""


@dataclass(frozen=True, slots=True)
class KeyEpoch:
    """One key epoch of a dataset as the chain records it."""

    dataset: str
    """The dataset."""
    epoch: int
    """1 for the registered payload, then 2, 3, ... after each rotation."""
    ciphertext_digest: bytes
    """SHA-256 of the sealed payload of this epoch (its blob address)."""
    segment_root: bytes
    """RFC 6962 root over the sealed payload's segments."""
    custody: str
    """`owner`, `supervisor` or `threshold`."""
    holders: tuple[str, ...]
    """Organisations holding this epoch's key or key shares."""
    threshold: int
    """Shares needed to rebuild the key (`threshold` custody); 1 otherwise."""
    inline: bytes
    """The sealed payload itself when it travels on the chain; empty otherwise."""
    reason: str
    """Why the epoch began (`published`, `grant <id> revoked`, `rotation`, ...)."""
    by: str
    """The organisation that recorded it (the owner)."""
    height: int
    """Block height."""
    timestamp: int
    """Block time (ms)."""


def epoch_prefix(ds: str) -> str:
    return f"epoch/{ds}/"


def epoch_key(ds: str, epoch: int) -> str:
    return f"{epoch_prefix(ds)}{epoch:012d}"


def epoch_from_value(v: Any) -> KeyEpoch:
    return KeyEpoch(
        dataset=v["dataset"],
        epoch=v["epoch"],
        ciphertext_digest=v["ciphertext_digest"],
        segment_root=v["segment_root"],
        custody=v["custody"],
        holders=tuple(v["holders"]),
        threshold=v["threshold"],
        inline=v["inline"],
        reason=v["reason"],
        by=v["by"],
        height=v["height"],
        timestamp=v["timestamp"],
    )


def current_epoch(state: Any, ds: str) -> KeyEpoch | None:
    """The latest epoch of `ds` (any object with `scan(prefix)`), or None before the first."""
    last = None
    for _, value in state.scan(epoch_prefix(ds)):
        last = value
    return None if last is None else epoch_from_value(last)


def check_deposit(state: Any, ds: str, epoch: int, depositor: str, custodian: str) -> None:
    """Raise `AccessDeniedError` unless `depositor` may fill `custodian`'s key slot of `ds`/`epoch`.

    A node keeps a key (or share) only when the dataset's owner deposits it,
    only if the node's organisation is the owner or a custodian the epoch names,
    and only for an epoch on the chain or the very next one (a rotation deposits
    before it records the epoch; its custodians are then the dataset's holders,
    which the next epoch must name). Slots are written once, so a deposit by
    anyone else would squat the slot and make the owner's rotation fail. A
    dataset not on the chain yet takes deposits for epoch 1 only: publishing
    deposits before it registers, and nobody knows the id before the owner
    signs. `state` is anything with `get` and `scan` (a `StateReader`).
    """
    record = state.get(dataset_key(ds))
    if record is None:
        if epoch != 1:
            raise AccessDeniedError(
                f"dataset {ds} is not on this node's chain; only keys of its first epoch "
                "may be deposited before it is registered"
            )
        return
    if record["status"] == "purged":
        raise AccessDeniedError(f"dataset {ds} is purged; no node keeps keys of it")
    recorded = state.get(epoch_key(ds, epoch))
    if recorded is not None:
        owner, holders = recorded["by"], recorded["holders"]
    else:
        current = current_epoch(state, ds)
        expected = 1 if current is None else current.epoch + 1
        if epoch != expected or record["status"] == "retired":
            raise AccessDeniedError(
                f"epoch {epoch} of dataset {ds} is neither on the chain nor its next key epoch "
                f"({expected}, and only while the dataset is not retired)"
            )
        owner, holders = record["owner"], record["holders"]
    if depositor != owner:
        raise AccessDeniedError(f"only the owner ({owner}) deposits keys of dataset {ds}")
    if custodian != owner and custodian not in holders:
        names = ", ".join(holders) or "none but the owner"
        raise AccessDeniedError(
            f"{custodian} is not a custodian of dataset {ds} at epoch {epoch} (custodians: {names})"
        )


def _epoch(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    me = f.sender(state, stx.tx.sender)
    p = stx.tx.payload
    ds_id = f.object_id(p, "dataset")
    epoch = f.integer(p, "epoch", low=1)
    cipher = f.digest(p, "ciphertext_digest")
    root = f.digest(p, "segment_root")
    holders = list(f.texts(p, "holders", limit=64))
    threshold = f.integer(p, "threshold", default=1, low=1)
    reason = f.text(p, "reason", required=False, limit=256)
    inline = p.get("inline", b"")
    if not isinstance(inline, bytes) or len(inline) > MAX_INLINE:
        raise Reject(BAD_PAYLOAD, f"inline must be a sealed payload of at most {MAX_INLINE} bytes")
    if inline and hashlib.sha256(inline).digest() != cipher:
        raise Reject(DIGEST_MISMATCH, "the inline ciphertext does not hash to ciphertext_digest")
    ds = f.load(state, dataset_key(ds_id), "dataset")
    if ds["owner"] != me.id:
        raise Reject(DENIED, f"only the owner ({ds['owner']}) records key epochs of {ds_id}")
    if ds["status"] in ("retired", "purged"):
        raise Reject(BAD_STATE, f"dataset {ds_id} is {ds['status']}; its keys no longer rotate")
    if p.get("custody", ds["custody"]) != ds["custody"] or holders != list(ds["holders"]):
        raise Reject(BAD_PAYLOAD, "custody and holders must be the dataset's own")
    if ds["custody"] == "threshold" and not 2 <= threshold <= len(holders):
        raise Reject(BAD_PAYLOAD, f"threshold must be 2..{len(holders)} (the holders)")
    if ds["custody"] != "threshold" and threshold != 1:
        raise Reject(BAD_PAYLOAD, "threshold applies only to threshold custody")
    current = current_epoch(state, ds_id)
    expected = 1 if current is None else current.epoch + 1
    if epoch != expected:
        raise Reject(BAD_STATE, f"the next key epoch of {ds_id} is {expected}, not {epoch}")
    if epoch == 1 and (cipher != ds["ciphertext_digest"] or root != ds["segment_root"]):
        raise Reject(DIGEST_MISMATCH, "epoch 1 must carry the registered digests")
    if current is not None and cipher == current.ciphertext_digest:
        raise Reject(BAD_STATE, "a new epoch needs a new sealed payload (a fresh key and salt)")
    if not inline:  # a payload on the chain is in no blob store: nothing to delete
        digests.claim(state, cipher, ds_id, me.id)
    state.put(
        epoch_key(ds_id, epoch),
        {
            "dataset": ds_id,
            "epoch": epoch,
            "ciphertext_digest": cipher,
            "segment_root": root,
            "custody": ds["custody"],
            "holders": holders,
            "threshold": threshold,
            "inline": inline,
            "reason": reason,
            "by": me.id,
            "height": ctx.height,
            "timestamp": ctx.timestamp,
        },
    )


def registry() -> ContractRegistry:
    return ContractRegistry({EPOCH: _epoch})
