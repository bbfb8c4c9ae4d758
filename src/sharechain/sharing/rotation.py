"""Key rotation: move a dataset to a new key epoch; revocation rotates after it.

A rotation re-seals the payload under a fresh data key as the next key epoch,
deposits new custody material, commits `dataset.epoch`, copies the new blob
to the custodians, and only then destroys the old epoch's keys, shares and
blob everywhere: a key kept from before opens nothing sealed after it. The
old blob stays when another live dataset names it (a new version that kept
its predecessor's payload: `contracts.digests.live_users`).

Revoking a grant (`grant.revoke`, by the dataset's owner or a supervisor)
is enforced by the chain at once (every later release under it is refused);
the owner's side then rotates (`rotate_after_revoke`). Only a side holding
the owner's keys can: on the nodes, a supervisor's revocation leaves a note
that the owner should rotate. A revocation ends with the dataset on a new
key epoch or with `RotationBlockedError` naming who blocked it; a rotation
that fails before its epoch commits takes its deposits back (`undo_epoch`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sharechain.contracts.epochs import EPOCH
from sharechain.contracts.grants import REVOKE
from sharechain.crypto.stream import KEY_SIZE
from sharechain.errors import AccessDeniedError, IntegrityError, NotFoundError, SharechainError
from sharechain.sharing.custody import epoch_payload
from sharechain.sharing.ports import Deposit, Ports
from sharechain.sharing.publish import undo_epoch
from sharechain.sharing.records import Progress, Revoked, Rotated, RotationBlockedError

__all__ = ["revoke", "rotate", "rotate_after_revoke"]


def rotate(
    ports: Ports,
    owner: str,
    dataset: str,
    *,
    reason: str = "rotation",
    progress: Progress | None = None,
) -> Rotated:
    """Re-seal the dataset under a fresh key as its next key epoch; destroy the old one."""
    chain, blobs = ports.chain, ports.blobs
    ds = chain.dataset(dataset)
    if ds.owner != owner:
        raise AccessDeniedError(f"only the owner ({ds.owner}) rotates the keys of {dataset}")
    old = chain.key_epoch(dataset)
    old_key = ports.custodian.own_key(owner, dataset, old.epoch)
    new_key = ports.rng(KEY_SIZE)
    new = old.epoch + 1
    inline, digests = blobs.reseal(old, (old_key, new_key), ports.rng, progress)
    orgs = (owner, *old.holders)
    blob = b"" if inline else digests.ciphertext_sha256
    if digests.plaintext_sha256 != ds.plaintext_digest:
        undo_epoch(ports, dataset, new, (), blob)
        raise IntegrityError(f"dataset {dataset}'s payload no longer matches its plaintext digest")
    body = epoch_payload(
        dataset, new, digests, ds.custody, old.holders, old.threshold, reason=reason, inline=inline
    )
    ep = chain.sign(owner, EPOCH, body)
    try:
        deposit = Deposit(dataset, new, owner, new_key, old.holders, old.threshold)
        ports.custodian.deposit(deposit, ports.rng)
        chain.commit([ep])
    except BaseException:
        undo_epoch(ports, dataset, new, orgs, blob)
        raise
    # The new epoch is on the chain: what follows is tidying, and a node that fails at it
    # is named, not allowed to undo the rotation (each node also acts by itself).
    if not inline:
        with _tidying(ports, "copy the new blob to"):
            blobs.replicate(digests.ciphertext_sha256, old.holders, owner, after=ep.id)
    destroyed = 0
    with _tidying(ports, "destroy the old keys at"):
        destroyed = ports.custodian.destroy(dataset, old.epoch, orgs, after=ep.id)
    if not old.inline and not set(chain.live_users(old.ciphertext_digest)) - {dataset}:
        # Only when no other live dataset (a later version that kept the payload) names it.
        with _tidying(ports, "delete the old blob at"):
            blobs.delete(old.ciphertext_digest, orgs, after=ep.id)
    return Rotated(dataset, new, digests.ciphertext_sha256, ep.id, destroyed)


@contextmanager
def _tidying(ports: Ports, what: str) -> Iterator[None]:
    """A step after the new epoch committed: a failure is a warning naming the place."""
    try:
        yield
    except SharechainError as exc:
        ports.warn(
            f"[yellow]warning:[/] the new key epoch is on the chain, but could not {what} "
            f"every node: {exc}; nothing is released for an old epoch, so only leftovers remain"
        )


def rotate_after_revoke(ports: Ports, grant: str) -> Rotated | None:
    """What the owner's side does once a revocation is on the chain: a new key epoch.

    Returns None for a dataset the data plane never sealed (registered with digests
    only) or no longer active, and when this side cannot act as the owner (a note
    then says who should rotate). Raises `RotationBlockedError` naming who blocked
    the rotation.
    """
    chain = ports.chain
    g = chain.grant(grant).grant
    if g.status != "revoked":
        raise AccessDeniedError(f"grant {grant} is not revoked; revoke it first")
    if chain.dataset(g.dataset).status != "active":
        return None
    try:
        chain.key_epoch(g.dataset)
    except NotFoundError:
        return None  # registered with digests only: no payload to re-seal
    if not chain.holds_keys(g.owner):
        # Only the owner's side holds the data key; the chain still refuses every
        # release under the revoked grant.
        ports.warn(
            f"[yellow]note:[/] the key epoch of dataset {g.dataset} was not rotated: only "
            f"its owner ({g.owner}) can; run `sharechain dataset rotate-key {g.dataset} "
            f"--as {g.owner}` with its node"
        )
        return None
    try:
        return rotate(ports, g.owner, g.dataset, reason=f"grant {grant} revoked")
    except SharechainError as exc:
        raise RotationBlockedError(
            f"grant {grant} is revoked on the chain (no custodian releases under it any "
            f"more), but dataset {g.dataset} stays at its key epoch: the rotation was "
            f"blocked: {exc}. Run `sharechain dataset rotate-key {g.dataset} --as {g.owner}` "
            "once that is resolved",
            grant,
            g.dataset,
        ) from exc


def revoke(ports: Ports, by: str, grant: str, *, reason: str = "") -> Revoked:
    """Revoke `grant` (as its dataset's owner or a supervisor), then rotate the key epoch.

    Ends with the dataset on a new key epoch, or raises `RotationBlockedError` naming
    who blocked the rotation (the revocation itself stays on the chain).
    """
    (receipt,) = ports.chain.commit(
        [ports.chain.sign(by, REVOKE, {"grant": grant, "reason": reason})]
    )
    return Revoked(grant, receipt.tx_id, rotate_after_revoke(ports, grant))
