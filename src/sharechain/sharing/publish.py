"""Publishing: seal a file under a fresh data key, keep the key per custody, register it.

The steps, the same on the embedded default and on the nodes:

1. choose the key holders (`custody.plan_custody`) from the organisations the
   chain records, and a fresh data key;
2. seal the file (a streaming AEAD) into the owner's blob store, or keep the
   sealed bytes for the chain itself when the file is small;
3. sign `dataset.register` and the first `dataset.epoch` (the dataset's id
   comes from the registration's transaction id);
4. deposit the owner's key and the custodians' keys or shares, then submit
   both transactions: one block records the dataset and its first key epoch;
5. copy the blob to the custodians' stores, so the grantee can fetch while
   the owner is offline.

When a step before the commit fails, what was deposited and stored is
taken back on every node reached (`Custodian.undo`, `undo_epoch`); a node
that refuses or does not answer is named to the operator as pending cleanup.
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from pathlib import Path

from sharechain.contracts.datasets import REGISTER
from sharechain.contracts.epochs import EPOCH
from sharechain.crypto.stream import DEFAULT_SEGMENT_SIZE, KEY_SIZE
from sharechain.errors import ConfigError, SharechainError
from sharechain.sharing.custody import epoch_payload, plan_custody, register_payload
from sharechain.sharing.ports import Deposit, Ports, Seal
from sharechain.sharing.records import Listing, Progress, Published, derive_id

__all__ = ["check_source", "publish", "undo_epoch"]


def publish(
    ports: Ports,
    owner: str,
    source: Path,
    listing: Listing,
    *,
    inline_limit: int | None = None,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    progress: Progress | None = None,
) -> Published:
    """Seal `source` and register it as a dataset of `owner`; one block records both."""
    check_source(source)
    chain, blobs = ports.chain, ports.blobs
    holders, t = plan_custody(
        chain.organisations(), owner, listing.custody, listing.holders, listing.threshold
    )
    key = ports.rng(KEY_SIZE)
    limit = blobs.inline_limit if inline_limit is None else inline_limit
    inline, digests = blobs.seal(
        Seal(source, key, holders, segment_size, limit), ports.rng, progress
    )
    register = register_payload(
        digests,
        title=listing.title,
        description=listing.description,
        tags=listing.tags,
        classification=listing.classification,
        schema=listing.schema,
        policy=listing.policy,
        custody=listing.custody,
        holders=holders,
    )
    reg = chain.sign(owner, REGISTER, register)
    ds = derive_id("dataset", reg.id)
    body = epoch_payload(
        ds, 1, digests, listing.custody, holders, t, reason="published", inline=inline
    )
    ep = chain.sign(owner, EPOCH, body)
    try:
        ports.custodian.deposit(Deposit(ds, 1, owner, key, holders, t), ports.rng)
        chain.commit([reg, ep])
    except BaseException:
        undo_epoch(ports, ds, 1, (owner, *holders), b"" if inline else digests.ciphertext_sha256)
        raise
    if not inline:
        blobs.replicate(digests.ciphertext_sha256, holders, owner, after=ep.id)
    return Published(ds, 1, digests, listing.custody, holders, t, bool(inline), reg.id)


def check_source(source: Path) -> None:
    """Refuse, before any work, a file that cannot be published: missing, unreadable, or
    not a regular file (a device such as `/dev/zero`, a pipe or a directory has no fixed
    size to seal and register, and could be endless)."""
    try:
        mode = source.stat().st_mode
        if stat.S_ISREG(mode):
            with source.open("rb"):
                return
    except OSError as exc:
        raise ConfigError(f"cannot publish {source}: {exc.strerror or exc}") from None
    kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
    raise ConfigError(
        f"cannot publish {source}: it is {kind}; publish a regular file (copy a device's or "
        "a pipe's data into a file first)"
    )


def undo_epoch(
    ports: Ports, dataset: str, epoch: int, orgs: Sequence[str], blob: bytes
) -> tuple[str, ...]:
    """Take back the key material and blob of an epoch whose transaction did not commit.

    Every place reached is cleaned; what could not be (a node that refused or did not
    answer) is returned, one line each, and told to the operator as pending cleanup.
    """
    pending = list(ports.custodian.undo(dataset, epoch, orgs))
    if blob:
        try:
            ports.blobs.delete(blob, orgs, after=None)
        except SharechainError as exc:
            pending.append(str(exc))
    for line in pending:
        ports.warn(
            f"[yellow]pending cleanup:[/] key epoch {epoch} of dataset {dataset} never "
            f"committed, so nothing is released for it, but {line}; its slot there stays "
            "taken until that node's operator removes it"
        )
    return tuple(pending)
