"""The data plane's orchestrator: publish, release keys, fetch, rotate, revoke, purge.

These functions tie the sealed payloads (`crypto.stream`), the key wraps
(`crypto.hpke`), the key shares (`crypto.shamir`), the blob store and the
per-organisation vaults to the chain. The chain is the gate in every custody
mode: a custodian's node wraps a key for a grantee only as part of a
`grant.key-release` transaction, and delivers the wrapped key only once the
chain has accepted that transaction (a refused one is recorded with its code,
and the wrap is thrown away).

- `publish`: seal a file under a fresh data key (blob store, or on the chain
  itself when it is small), keep the key per custody mode, and register the
  dataset with its first key epoch in one block.
- `release_key`: one custodian's node releases its key (or share) for a grant.
- `fetch`: the grantee has the custodians release, rebuilds the key, opens the
  payload into a temporary file, checks every digest against the chain, moves
  it into place and signs a read receipt.
- `rotate` / `revoke`: move a dataset to a new key epoch (re-seal under a new
  key, new custody material, old key and blob destroyed).
- `purge`: record the purge, then destroy every key, share, delivery and blob.

Each function takes an `Embedded` data directory and the organisation(s) acting;
each organisation's key material is touched only through its own `Vault` and
`Inbox`. The per-organisation steps are also public functions over one
organisation's keys, its vault and a chain view (a `Store`): `plan_custody`,
`custody_material`, `wrap_release`, `open_release`, `combine_secrets`,
`check_digests`. A node (`sharechain.node.delivery`) and a remote client
(`sharechain.sharing.remote`) run the same steps over the REST API.
Decisions are written down in docs/sharing.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from sharechain.contracts import queries
from sharechain.contracts.epochs import EPOCH, KeyEpoch, current_epoch
from sharechain.crypto.stream import DEFAULT_SEGMENT_SIZE, KEY_SIZE, StreamDigests
from sharechain.errors import (
    AccessDeniedError,
    InsufficientSharesError,
    IntegrityError,
    NotFoundError,
    TransactionRejectedError,
)
from sharechain.ledger.blocks import decode_block
from sharechain.ledger.state import StateReader
from sharechain.ledger.transactions import decode_transaction
from sharechain.sharing.custody import (
    CUSTODY_MODES,
    KeyRelease,
    check_digests,
    combine_secrets,
    custody_material,
    dataset_id,
    encryption_key,
    epoch_payload,
    key_epoch,
    open_release,
    plan_custody,
    register_payload,
    release_context,
    release_payload,
    wrap_release,
)
from sharechain.sharing.embedded import Embedded
from sharechain.sharing.shredding import shred_here
from sharechain.storage import sealing
from sharechain.storage.blobs import BlobStore
from sharechain.storage.vault import Access, Inbox, Vault, record

__all__ = [
    "CUSTODY_MODES",
    "DEFAULT_INLINE_LIMIT",
    "Fetched",
    "KeyRelease",
    "Published",
    "Purged",
    "Revoked",
    "Rotated",
    "current_key_epoch",
    "fetch",
    "publish",
    "purge",
    "release_key",
    "revoke",
    "rotate",
    "rotate_after_revoke",
    "shred",
]

DEFAULT_INLINE_LIMIT: Final = 64 * 1024
"""Payloads up to this size (plaintext bytes) travel sealed on the chain, not as blobs."""

Progress = Callable[[int], None]
"""Called with the number of bytes just processed (for progress bars)."""


@dataclass(frozen=True, slots=True)
class Published:
    """A dataset registered with its sealed payload and key custody."""

    dataset: str
    """The new dataset id."""
    epoch: int
    """Its key epoch (1)."""
    digests: StreamDigests
    """Fingerprints recorded on the chain."""
    custody: str
    """Custody mode."""
    holders: tuple[str, ...]
    """Organisations holding the key or its shares."""
    threshold: int
    """Shares needed (threshold custody), else 1."""
    inline: bool
    """Whether the sealed payload travels on the chain instead of the blob store."""
    tx_id: bytes
    """The `dataset.register` transaction."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """A payload fetched, decrypted and verified against the chain."""

    grant: str
    """The grant used."""
    dataset: str
    """The dataset."""
    epoch: int
    """Key epoch of the payload opened."""
    path: Path
    """Where the plaintext now is."""
    digests: StreamDigests
    """Fingerprints computed while opening (equal to the chain's)."""
    releases: tuple[KeyRelease, ...]
    """The key releases it took."""
    read_tx: bytes
    """The read receipt (`grant.read`) signed by the grantee."""


@dataclass(frozen=True, slots=True)
class Rotated:
    """A dataset moved to a new key epoch."""

    dataset: str
    """The dataset."""
    epoch: int
    """The new key epoch."""
    ciphertext_digest: bytes
    """Digest of the newly sealed payload."""
    tx_id: bytes
    """The `dataset.epoch` transaction."""
    destroyed: int
    """Vault entries of the old epoch destroyed."""


@dataclass(frozen=True, slots=True)
class Revoked:
    """A revoked grant and the key rotation that followed."""

    grant: str
    """The grant."""
    tx_id: bytes
    """The `grant.revoke` transaction."""
    rotated: Rotated | None
    """The new key epoch of the dataset (None if the data plane never sealed it)."""


@dataclass(frozen=True, slots=True)
class Purged:
    """A dataset crypto-shredded."""

    dataset: str
    """The dataset."""
    tx_id: bytes
    """The `dataset.purge` transaction (the record that stays)."""
    keys_destroyed: int
    """Vault entries destroyed across organisations."""
    blobs_deleted: int
    """Blobs deleted."""


# --- small helpers ------------------------------------------------------------------------------


def _vault(emb: Embedded, org: str) -> Vault:
    return Vault(emb.datadir.path, emb.keys(org))


def _inbox(emb: Embedded, org: str) -> Inbox:
    return Inbox(emb.datadir.path, org)


def _blobs(emb: Embedded) -> BlobStore:
    return BlobStore(emb.datadir.blob_dir)


_release_context = release_context


def current_key_epoch(emb: Embedded, ds: str) -> KeyEpoch:
    """The dataset's current key epoch; `NotFoundError` if the data plane never sealed it."""
    return key_epoch(emb.store, ds)


def _encryption_key(emb: Embedded, org: str) -> bytes:
    return encryption_key(queries.organisations(emb.store), org)


def _rejected(receipt_code: str, reason: str, tx_id: bytes) -> TransactionRejectedError:
    return TransactionRejectedError(receipt_code, reason, tx_id)


def _plan_custody(
    emb: Embedded,
    owner: str,
    custody: str,
    holders: Sequence[str] | None,
    threshold: int | None,
) -> tuple[tuple[str, ...], int]:
    return plan_custody(queries.organisations(emb.store), owner, custody, holders, threshold)


def _store_custody(
    emb: Embedded, owner: str, ds: str, epoch: int, key: bytes, holders: Sequence[str], t: int
) -> None:
    """The owner keeps the key; custodians get the key (or one share each) in their vaults."""
    _vault(emb, owner).put(ds, epoch, "key", key)
    for holder, kind, secret in custody_material(key, owner, holders, t, emb.rng):
        _vault(emb, holder).put(ds, epoch, kind, secret)


def _destroy_custody(emb: Embedded, ds: str, epoch: int | None, orgs: Sequence[str]) -> int:
    return sum(_vault(emb, org).destroy(ds, epoch) for org in dict.fromkeys(orgs))


# --- publish ------------------------------------------------------------------------------------


def publish(
    emb: Embedded,
    owner: str,
    source: Path,
    *,
    title: str,
    description: str = "",
    tags: Sequence[str] = (),
    classification: str = "internal",
    schema: Sequence[tuple[str, str]] = (),
    policy: Mapping[str, Any] | None = None,
    custody: str = "owner",
    holders: Sequence[str] | None = None,
    threshold: int | None = None,
    inline_limit: int | None = None,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    progress: Progress | None = None,
) -> Published:
    """Seal `source` and register it as a dataset of `owner`; one block records both."""
    holders_, t = _plan_custody(emb, owner, custody, holders, threshold)
    limit = int(emb.datadir.settings.get("inline_limit", DEFAULT_INLINE_LIMIT))
    limit = limit if inline_limit is None else inline_limit
    key = emb.rng(KEY_SIZE)
    epoch = 1
    store = _blobs(emb)
    inline, digests = sealing.seal_source(
        store, key, source, epoch, segment_size, emb.rng, progress, limit
    )
    register = register_payload(
        digests,
        title=title,
        description=description,
        tags=tags,
        classification=classification,
        schema=schema,
        policy=policy,
        custody=custody,
        holders=holders_,
    )
    reg_tx = emb.sign(owner, "dataset.register", register)
    ds = dataset_id(reg_tx.id)
    epoch_body = epoch_payload(
        ds, epoch, digests, custody, holders_, t, reason="published", inline=inline
    )
    epoch_tx = emb.sign(owner, EPOCH, epoch_body)
    try:
        _store_custody(emb, owner, ds, epoch, key, holders_, t)
        receipts = emb.submit_raw([reg_tx.raw, epoch_tx.raw], orderer=owner)
        for r in receipts:
            if not r.ok:
                raise _rejected(r.code, r.reason, r.tx_id)
    except BaseException:
        _destroy_custody(emb, ds, None, (owner, *holders_))
        if not inline:
            store.delete(digests.ciphertext_sha256)
        raise
    return Published(ds, epoch, digests, custody, holders_, t, bool(inline), reg_tx.id)


# --- key release and fetch ----------------------------------------------------------------------


def release_key(emb: Embedded, custodian: str, grant: str, *, to: str, session: str) -> KeyRelease:
    """`custodian`'s node releases its key (or share) of the grant's dataset to `to`.

    The node wraps its secret to `to`'s encryption key with the dataset, epoch, grant,
    session and custodian bound into the wrap, and submits `grant.key-release` with the
    wrap's digest. The chain checks the grant on its copy (grantee, revoked, expired,
    suspended, used up) and records the outcome either way; the wrap reaches `to`'s
    inbox only when the chain accepted it. A refusal raises `AccessDeniedError` carrying
    the chain's code and reason.
    """
    view = queries.grant(emb.store, grant)
    ds = view.grant.dataset
    epoch = current_key_epoch(emb, ds)
    wrapped = wrap_release(
        _vault(emb, custodian), _encryption_key(emb, to), epoch, grant=grant, session=session
    )
    payload = release_payload(grant, to, epoch.epoch, wrapped, session)
    digest = payload["wrapped_key_digest"]
    receipt = emb.submit(custodian, "grant.key-release", payload, check=False)
    if not receipt.ok:
        raise AccessDeniedError(
            f"{custodian} did not release the key of grant {grant} to {to}: the chain refused "
            f"({receipt.code}: {receipt.reason}); the refusal is recorded in block "
            f"{receipt.height}"
        )
    if not wrapped:
        raise AccessDeniedError(
            f"{custodian} no longer holds the key of dataset {ds} at epoch {epoch.epoch} "
            "(destroyed by a purge); nothing was released"
        )
    _inbox(emb, to).deliver(ds, epoch.epoch, grant, session, custodian, wrapped)
    return KeyRelease(grant, custodian, to, epoch.epoch, session, digest, receipt.tx_id)


def _chain_wrapped_digest(emb: Embedded, tx_id: bytes) -> bytes:
    """The wrapped-key digest the committed key-release transaction `tx_id` carries."""
    loc = emb.store.tx_location(tx_id)
    data = None if loc is None else emb.store.block_bytes(loc.height)
    if loc is None or data is None:
        raise NotFoundError(f"key release {tx_id.hex()} is not on this node's chain")
    raw = decode_block(data, check_canonical=False).txs[loc.index]
    digest = decode_transaction(raw).tx.payload["wrapped_key_digest"]
    assert isinstance(digest, bytes)
    return digest


def _collect(emb: Embedded, grantee: str, ds: str, release: KeyRelease) -> bytes:
    """Take a release from the grantee's inbox, check it against the chain, unwrap it."""
    wrapped = _inbox(emb, grantee).collect(
        ds, release.epoch, release.grant, release.session, release.custodian
    )
    chain_digest = _chain_wrapped_digest(emb, release.tx_id)
    return open_release(wrapped, emb.keys(grantee), release, ds, chain_digest)


def _obtain_key(
    emb: Embedded,
    grantee: str,
    grant: str,
    epoch: KeyEpoch,
    offline: frozenset[str],
) -> tuple[bytes, tuple[KeyRelease, ...]]:
    """Have the custodians release; rebuild the data key from what they gave."""
    session = emb.rng(16).hex()
    releases: list[KeyRelease] = []
    secrets: list[bytes] = []
    for custodian in epoch.holders:
        if len(secrets) >= epoch.threshold:
            break
        if custodian in offline:
            continue
        try:
            release = release_key(emb, custodian, grant, to=grantee, session=session)
        except AccessDeniedError:
            _inbox(emb, grantee).clear(epoch.dataset, grant, session)
            raise
        releases.append(release)
        secrets.append(_collect(emb, grantee, epoch.dataset, release))
    _inbox(emb, grantee).clear(epoch.dataset, grant, session)
    if len(secrets) < epoch.threshold:
        raise InsufficientSharesError(
            f"only {len(secrets)} of the {epoch.threshold} key shares needed for dataset "
            f"{epoch.dataset} could be released (offline: {', '.join(sorted(offline))}); "
            "retry when more holders are online"
        )
    return combine_secrets(secrets, epoch.threshold), tuple(releases)


def fetch(
    emb: Embedded,
    grantee: str,
    grant: str,
    out: Path,
    *,
    progress: Progress | None = None,
    offline: frozenset[str] = frozenset(),
) -> Fetched:
    """Obtain the key under `grant`, open the payload into `out`, verify, sign a read receipt.

    `offline` names organisations whose nodes do not answer (a threshold fetch then
    asks the other holders). Nothing is written at `out` unless every check passes.
    """
    view = queries.grant(emb.store, grant)
    ds = queries.dataset(emb.store, view.grant.dataset)
    epoch = current_key_epoch(emb, ds.id)
    key, releases = _obtain_key(emb, grantee, grant, epoch, offline)

    def check(got: StreamDigests) -> None:  # before the plaintext is renamed into place
        record(Access(grantee, "decrypt", "plaintext", ds.id, epoch.epoch, ds.plaintext_digest))
        check_digests(ds, epoch, got)

    try:
        opened = sealing.open_to_file(
            _source(emb, epoch), key, epoch.epoch, out, progress=progress, check=check
        )
    finally:
        del key
    # The root matched, so the stream is the one the chain names by this digest.
    digests = replace(opened, ciphertext_sha256=epoch.ciphertext_digest)
    receipt = emb.submit(grantee, "grant.read", {"grant": grant, "digest": ds.plaintext_digest})
    return Fetched(grant, ds.id, epoch.epoch, out, digests, releases, receipt.tx_id)


def _source(emb: Embedded, epoch: KeyEpoch) -> sealing.Source:
    if epoch.inline:
        return sealing.Source(data=epoch.inline)
    path = _blobs(emb).path(epoch.ciphertext_digest)
    if not path.is_file():
        raise NotFoundError(
            f"the sealed payload of dataset {epoch.dataset} (epoch {epoch.epoch}, blob "
            f"{epoch.ciphertext_digest.hex()}) is not in {emb.datadir.blob_dir}"
        )
    return sealing.Source(path=path)


# --- rotation, revocation, purge ----------------------------------------------------------------


def rotate(
    emb: Embedded,
    owner: str,
    dataset: str,
    *,
    reason: str = "rotation",
    progress: Progress | None = None,
) -> Rotated:
    """Re-seal the dataset under a fresh key as its next key epoch; destroy the old one."""
    ds = queries.dataset(emb.store, dataset)
    if ds.owner != owner:
        raise AccessDeniedError(f"only the owner ({ds.owner}) rotates the keys of {dataset}")
    old = current_key_epoch(emb, dataset)
    old_key = _vault(emb, owner).get(dataset, old.epoch, "key")
    new_key = emb.rng(KEY_SIZE)
    new_epoch = old.epoch + 1
    store = _blobs(emb)
    inline, digests = sealing.reseal(
        _source(emb, old), old_key, old.epoch, new_key, new_epoch, store, emb.rng, progress
    )
    if digests.plaintext_sha256 != ds.plaintext_digest:
        raise IntegrityError(f"dataset {dataset}'s payload no longer matches its plaintext digest")
    body = epoch_payload(
        dataset,
        new_epoch,
        digests,
        ds.custody,
        old.holders,
        old.threshold,
        reason=reason,
        inline=inline,
    )
    orgs = (owner, *old.holders)
    try:
        _store_custody(emb, owner, dataset, new_epoch, new_key, old.holders, old.threshold)
        receipt = emb.submit(owner, EPOCH, body)
    except BaseException:
        _destroy_custody(emb, dataset, new_epoch, orgs)
        if not inline:
            store.delete(digests.ciphertext_sha256)
        raise
    destroyed = _destroy_custody(emb, dataset, old.epoch, orgs)
    _clear_inboxes(emb, dataset)
    if not old.inline:
        store.delete(old.ciphertext_digest)
    return Rotated(dataset, new_epoch, digests.ciphertext_sha256, receipt.tx_id, destroyed)


def revoke(emb: Embedded, by: str, grant: str, *, reason: str = "") -> Revoked:
    """Revoke `grant` (as its dataset's owner or a supervisor), then rotate the key epoch."""
    receipt = emb.submit(by, "grant.revoke", {"grant": grant, "reason": reason})
    return Revoked(grant, receipt.tx_id, rotate_after_revoke(emb, grant))


def rotate_after_revoke(emb: Embedded, grant: str) -> Rotated | None:
    """What the owner's node does once a revocation is on the chain: a new key epoch.

    On the embedded default it runs in the revoking command. Returns None for a dataset
    the data plane never sealed (registered with digests only) or no longer active.
    """
    g = queries.grant(emb.store, grant).grant
    if g.status != "revoked":
        raise AccessDeniedError(f"grant {grant} is not revoked; revoke it first")
    ds = queries.dataset(emb.store, g.dataset)
    if ds.status != "active" or current_epoch(StateReader(emb.store), ds.id) is None:
        return None
    return rotate(emb, g.owner, g.dataset, reason=f"grant {grant} revoked")


def _clear_inboxes(emb: Embedded, dataset: str) -> None:
    for org in emb.datadir.held_orgs():
        _inbox(emb, org).clear(dataset)


def purge(emb: Embedded, by: str, dataset: str, *, reason: str = "") -> Purged:
    """Record the purge on the chain, then destroy every key, share and blob of the dataset."""
    receipt = emb.submit(by, "dataset.purge", {"dataset": dataset, "reason": reason})
    destroyed, deleted = shred(emb, dataset)
    return Purged(dataset, receipt.tx_id, destroyed, deleted)


def shred(emb: Embedded, dataset: str) -> tuple[int, int]:
    """Destroy every key, share, delivery and blob of a purged dataset (crypto-shredding).

    Each organisation's node does this for its own vault once the purge is on the chain;
    on the embedded default every organisation held here does it now. Returns (vault
    entries destroyed, blobs deleted).
    """
    vaults = [_vault(emb, org) for org in emb.datadir.held_orgs()]
    done = shred_here(emb.store, vaults, _blobs(emb), dataset)
    _clear_inboxes(emb, dataset)
    return done.destroyed, done.blobs_deleted
