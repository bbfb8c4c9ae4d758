"""The data plane over the network: publish, fetch, rotate and revoke through nodes.

What `sharechain.sharing.local` does on the embedded default, an organisation's
own tools do here with its keys and signed clients of the nodes
(`NodeClient`), each node keeping its own blob store and vault
(`sharechain.node.delivery` serves them):

- `publish_remote`: seal the file locally under a fresh data key while
  streaming the sealed bytes to the owner's node (`PUT /v1/uploads/{id}`,
  the last chunk names the digest), deposit the key material (the owner's
  own key in its own node's vault; the custodians' keys or shares, each
  wrapped by the owner to the custodian's vault slot, in their nodes),
  register the dataset with its first key epoch, then copy the blob to the
  custodians' nodes (every other node fetches its replica by itself) so the
  grantee can fetch while the owner is offline.
- `fetch_remote`: ask the custodians' nodes to release (each checks the
  grant on its own chain and records the release there), check every wrap
  against the release transaction on the grantee's own node, rebuild the
  key, download the blob with byte ranges (resuming where a dropped
  connection stopped, from the owner's node or a custodian's), check its
  SHA-256, open it into a temporary file, check plaintext digest, segment root
  and size against the chain, rename it into place and sign the read receipt.
- `rotate_remote` / `revoke_remote`: a new key epoch made by the owner's
  tools (the old key comes from its node's vault, still wrapped to it), then
  the old key material and blobs are destroyed on every node.

`clients` map an organisation to a client of *that organisation's node*
signed as the acting organisation. A node that does not answer is treated as
offline: a threshold fetch asks the next holder, a download the next node.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO, Final, cast

import httpx

from sharechain.api.client import NodeClient, raise_for_reply
from sharechain.api.transfer import (
    UPLOAD_CHUNK,
    Progress,
    StreamingUpload,
    download_blob,
    upload_blob,
)
from sharechain.contracts.epochs import EPOCH, KeyEpoch
from sharechain.contracts.grants import KEY_RELEASE
from sharechain.crypto.hpke import unwrap_key
from sharechain.crypto.keyfile import OrgKeys
from sharechain.crypto.stream import DEFAULT_SEGMENT_SIZE, KEY_SIZE, StreamDigests, encrypt_stream
from sharechain.errors import (
    AccessDeniedError,
    ConfigError,
    InsufficientSharesError,
    IntegrityError,
    NotFoundError,
    TransactionRejectedError,
)
from sharechain.ledger.blocks import decode_block
from sharechain.ledger.identities import Organisation
from sharechain.ledger.transactions import SignedTransaction, decode_transaction, sign_transaction
from sharechain.sharing.custody import (
    KeyRelease,
    check_opened,
    combine_secrets,
    custody_material,
    dataset_id,
    encryption_key,
    epoch_payload,
    open_release,
    plan_custody,
    register_payload,
)
from sharechain.sharing.local import DEFAULT_INLINE_LIMIT, Fetched, Published, Revoked, Rotated
from sharechain.storage import sealing
from sharechain.storage.blobs import BlobStore
from sharechain.storage.vault import vault_context, wrap_for_vault

__all__ = [
    "UPLOAD_CHUNK",
    "ReleaseRefusedError",
    "committed_tx",
    "download_blob",
    "fetch_remote",
    "key_epoch_of",
    "publish_remote",
    "revoke_remote",
    "rotate_remote",
    "upload_blob",
]

CHAIN_WAIT: Final = 30.0
"""Seconds to wait for a node to commit a transaction another node committed."""


class ReleaseRefusedError(AccessDeniedError):
    """A custodian's node refused to release its key; `code` is the chain's validation code."""

    def __init__(self, message: str, code: str, reason: str = "", custodian: str = "") -> None:
        super().__init__(message)
        self.code = code
        """The chain's code (`revoked`, `expired`, ...), or `no_key` / `denied`."""
        self.reason = reason
        """The chain's reason, when the chain refused."""
        self.custodian = custodian
        """The custodian whose node refused."""


# --- reading the chain through a node ---------------------------------------------------------


def _organisations(client: NodeClient) -> list[Organisation]:
    body = client.get_json("/v1/organisations")
    return [
        Organisation(
            id=o["id"],
            roles=tuple(o["roles"]),
            sign_key=bytes.fromhex(o["sign_key"]),
            enc_key=bytes.fromhex(o["enc_key"]),
            status=o["status"],
            since=o["since"],
            name=o.get("name", ""),
        )
        for o in body["organisations"]
    ]


def key_epoch_of(client: NodeClient, dataset: str) -> KeyEpoch:
    """The dataset's current key epoch as `client`'s node records it."""
    e = client.get_json(f"/v1/datasets/{dataset}/epoch")["epoch"]
    return KeyEpoch(
        dataset=e["dataset"],
        epoch=e["epoch"],
        ciphertext_digest=bytes.fromhex(e["ciphertext_digest"]),
        segment_root=bytes.fromhex(e["segment_root"]),
        custody=e["custody"],
        holders=tuple(e["holders"]),
        threshold=e["threshold"],
        inline=bytes.fromhex(e["inline"]),
        reason=e["reason"],
        by=e["by"],
        height=e["height"],
        timestamp=e["timestamp"],
    )


def _committed_tx(client: NodeClient, tx_id: bytes) -> tuple[dict[str, Any], SignedTransaction]:
    """A committed transaction, read from `client`'s node's own chain (waits for it)."""
    deadline = time.monotonic() + CHAIN_WAIT
    while True:
        try:
            info = client.tx(tx_id)
            break
        except NotFoundError:
            if time.monotonic() > deadline:
                raise NotFoundError(
                    f"transaction {tx_id.hex()} did not reach {client.base_url} within "
                    f"{CHAIN_WAIT:.0f}s"
                ) from None
            time.sleep(0.05)
    (raw_block,) = client.sync_blocks(int(info["height"]), limit=1)
    raw = decode_block(raw_block, check_canonical=False).txs[int(info["index"])]
    return info, decode_transaction(raw)


committed_tx = _committed_tx


def _submit(client: NodeClient, stxs: Sequence[SignedTransaction]) -> list[bytes]:
    receipts = client.submit([s.raw for s in stxs])
    for r in receipts:
        if not r.ok:
            raise TransactionRejectedError(r.code, r.reason, r.tx_id)
    return [r.tx_id for r in receipts]


def _peer(clients: Mapping[str, NodeClient], org: str) -> NodeClient:
    try:
        return clients[org]
    except KeyError:
        raise ConfigError(f"no client of {org}'s node was given (needed for its custody)") from None


# --- blobs --------------------------------------------------------------------------------------


# --- custody ------------------------------------------------------------------------------------


def _deposit(
    owner: NodeClient,
    peers: Mapping[str, NodeClient],
    orgs: Sequence[Organisation],
    dataset: str,
    epoch: int,
    key: bytes,
    holders: Sequence[str],
    t: int,
    rng: Callable[[int], bytes],
) -> None:
    """The owner's key into its own node's vault; each custodian's key or share into its."""
    me = owner.org
    material = ((me, "key", key), *custody_material(key, me, holders, t, rng))
    for org, kind, secret in material:
        wrapped = wrap_for_vault(secret, org, encryption_key(orgs, org), dataset, epoch, kind)
        client = owner if org == me else _peer(peers, org)
        reply = client.http.put(
            f"/v1/custody/{dataset}/{epoch}/{kind}", json={"wrapped": wrapped.hex()}
        )
        raise_for_reply(reply)


def _replicate(
    peers: Mapping[str, NodeClient],
    holders: Sequence[str],
    owner: str,
    tx: bytes,
    digest: bytes,
    blob: Path,
) -> tuple[str, ...]:
    """Copy the blob to each custodian's node once it has committed the epoch `tx`."""
    done = []
    for org in holders:
        if org == owner:
            continue
        client = _peer(peers, org)
        _committed_tx(client, tx)
        upload_blob(client, digest, blob)
        done.append(org)
    return tuple(done)


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sharechain-") as tmp:
        yield Path(tmp)


class _Tee(io.RawIOBase):
    """Where the sealed stream goes while sealing: the upload, and a local copy if wanted."""

    def __init__(self, upload: StreamingUpload, copy: BinaryIO | None) -> None:
        self.upload = upload
        self.copy = copy

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.copy is not None:
            self.copy.write(data)
        return self.upload.write(data)


def _seal_uploading(
    client: NodeClient,
    key: bytes,
    source: Path,
    segment_size: int,
    rng: Callable[[int], bytes],
    progress: Progress | None,
    keep: Path | None,
) -> StreamDigests:
    """Seal `source` (epoch 1) and stream it to the owner's node while sealing.

    The sealed bytes are sent as they are produced (`StreamingUpload`), so the upload
    overlaps the sealing instead of following it; the node installs the blob once the
    last chunk names its digest and the bytes match. `keep` receives a local copy
    (for the custodians' replicas), None when no other node needs one pushed.
    """
    upload = StreamingUpload(client)
    try:
        with contextlib.ExitStack() as stack:
            raw = stack.enter_context(source.open("rb", buffering=0))
            copy = stack.enter_context(keep.open("wb")) if keep is not None else None
            src = sealing.counting(cast(BinaryIO, raw), progress)
            dst = cast(BinaryIO, _Tee(upload, copy))
            digests = encrypt_stream(key, src, dst, epoch=1, segment_size=segment_size, rng=rng)
        upload.finish(digests.ciphertext_sha256)
    except BaseException:
        upload.abort()
        raise
    return digests


def publish_remote(
    client: NodeClient,
    keys: OrgKeys,
    source: Path,
    *,
    peers: Mapping[str, NodeClient],
    title: str,
    description: str = "",
    tags: Sequence[str] = (),
    classification: str = "internal",
    schema: Sequence[tuple[str, str]] = (),
    policy: Mapping[str, Any] | None = None,
    custody: str = "owner",
    holders: Sequence[str] | None = None,
    threshold: int | None = None,
    inline_limit: int = DEFAULT_INLINE_LIMIT,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    rng: Callable[[int], bytes] = os.urandom,
    now: Callable[[], float] = time.time,
    progress: Progress | None = None,
) -> Published:
    """Seal `source`, deposit its key material and blob on the nodes, register it.

    `client` is the owner's own node; `peers` are the custodians' nodes (signed as the
    owner). The blob is copied to every custodian's node after the registration.
    """
    owner = keys.org
    orgs = _organisations(client)
    holders_, t = plan_custody(orgs, owner, custody, holders, threshold)
    key = rng(KEY_SIZE)
    with _workdir() as work:
        store = BlobStore(work / "blobs")
        streamed = source.stat().st_size > inline_limit
        blob = work / "sealed"
        if streamed:  # sealed and uploaded to the owner's node at once
            keep = blob if any(h != owner for h in holders_) else None
            inline, digests = b"", _seal_uploading(client, key, source, segment_size, rng,
                                                   progress, keep)  # fmt: skip
        else:
            inline, digests = sealing.seal_source(
                store, key, source, 1, segment_size, rng, progress, inline_limit
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
        reg = sign_transaction(keys.signing, "dataset.register", owner, register, now=now, rng=rng)
        ds = dataset_id(reg.id)
        body = epoch_payload(
            ds, 1, digests, custody, holders_, t, reason="published", inline=inline
        )
        ep = sign_transaction(keys.signing, EPOCH, owner, body, now=now, rng=rng)
        _deposit(client, peers, orgs, ds, 1, key, holders_, t, rng)
        _submit(client, [reg, ep])
        if not inline:
            _replicate(peers, holders_, owner, ep.id, digests.ciphertext_sha256, blob)
    return Published(ds, 1, digests, custody, holders_, t, bool(inline), reg.id)


# --- fetch --------------------------------------------------------------------------------------


def _release(
    holder: str,
    custodian: NodeClient,
    own: NodeClient,
    keys: OrgKeys,
    grant: str,
    dataset: str,
    session: str,
) -> tuple[KeyRelease, bytes]:
    """Ask `holder`'s node to release; check the wrap on our own node's chain; open it.

    Without a `session`, the custodian's node issues one first (single-use, bound to
    the grant and us); the release carries it and the further shares name it too.
    """
    if not session:
        issued = custodian.http.post(f"/v1/grants/{grant}/key-session")
        raise_for_reply(issued)
        session = str(issued.json()["session"])
    reply = custodian.http.post(f"/v1/grants/{grant}/key-release", json={"session": session})
    if reply.status_code in (403, 409):
        body = reply.json()
        raise ReleaseRefusedError(
            f"{custodian.base_url}: {body.get('detail', body)}",
            str(body.get("code", "denied")),
            str(body.get("reason", "")),
            holder,
        )
    raise_for_reply(reply)
    got = reply.json()
    tx_id = bytes.fromhex(got["tx_id"])
    info, stx = _committed_tx(own, tx_id)
    p = stx.tx.payload
    who = got["custodian"]
    if (
        stx.tx.type != KEY_RELEASE
        or stx.tx.sender != who
        or info["code"] != "valid"
        or p["to"] != keys.org
        or p["grant"] != grant
        or p["session"] != session
        or p["epoch"] != got["epoch"]
    ):
        raise IntegrityError(
            f"{who}'s node answered with release {tx_id.hex()}, which our chain does not "
            "record as a valid release of this grant to us in this session"
        )
    release = KeyRelease(grant, who, keys.org, p["epoch"], session, p["wrapped_key_digest"], tx_id)
    secret = open_release(
        bytes.fromhex(got["wrapped"]), keys, release, dataset, p["wrapped_key_digest"]
    )
    return release, secret


def fetch_remote(
    clients: Mapping[str, NodeClient],
    keys: OrgKeys,
    grant: str,
    out: Path,
    *,
    dataset: str | None = None,
    offline: frozenset[str] = frozenset(),
    rng: Callable[[int], bytes] = os.urandom,
    now: Callable[[], float] = time.time,
    progress: Progress | None = None,
) -> Fetched:
    """Obtain the key under `grant` from the custodians' nodes, download, verify, sign.

    `clients[keys.org]` is the grantee's own node: its chain copy is the one every
    release and digest is checked against. `dataset` is needed only when the grant
    cannot be read (an organisation that is not its grantee trying it anyway; the
    custodians refuse and the chain records the refusal). Nothing is written at
    `out` unless every check passes.
    """
    me = keys.org
    own = _peer(clients, me)
    if dataset is None:
        dataset = str(own.get_json(f"/v1/grants/{grant}")["grant"]["grant"]["dataset"])
    record = own.get_json(f"/v1/datasets/{dataset}")["dataset"]
    epoch = key_epoch_of(own, dataset)
    session = ""  # issued by the first custodian's node, shared by the further shares
    releases: list[KeyRelease] = []
    secrets: list[bytes] = []
    unreachable: list[str] = []
    for org in epoch.holders:
        if len(secrets) >= epoch.threshold:
            break
        if org in offline:
            unreachable.append(f"{org} (treated as offline)")
            continue
        if org not in clients:
            unreachable.append(f"{org} (no address of its node is known)")
            continue
        try:
            release, secret = _release(org, clients[org], own, keys, grant, dataset, session)
        except httpx.TransportError as exc:
            unreachable.append(f"{org}'s node at {clients[org].base_url} ({type(exc).__name__})")
            continue
        session = release.session
        releases.append(release)
        secrets.append(secret)
    if len(secrets) < epoch.threshold:
        raise InsufficientSharesError(
            f"only {len(secrets)} of the {epoch.threshold} keys or shares needed for dataset "
            f"{dataset} could be released; could not reach custodian "
            f"{'; '.join(unreachable) or 'none'}; retry when more holders are online"
        )
    key = combine_secrets(secrets, epoch.threshold)

    def check(got: StreamDigests) -> None:
        check_opened(
            dataset, bytes.fromhex(record["plaintext_digest"]), int(record["size"]), epoch, got
        )

    with _workdir() as work:
        if epoch.inline:
            src = sealing.Source(data=epoch.inline)
        else:
            # Our own node first (it keeps a replica), then the owner's and the custodians'.
            order = [me, epoch.by, *epoch.holders, *clients]
            sources = [
                clients[o] for o in dict.fromkeys(order) if o in clients and o not in offline
            ]
            sealed = work / "payload.sealed"
            download_blob(sources, epoch.ciphertext_digest, sealed, progress=progress)
            src = sealing.Source(path=sealed)
        opened = sealing.open_to_file(src, key, epoch.epoch, out, progress=None, check=check)
    del key
    digests = replace(opened, ciphertext_sha256=epoch.ciphertext_digest)
    read = sign_transaction(
        keys.signing,
        "grant.read",
        me,
        {"grant": grant, "digest": bytes.fromhex(record["plaintext_digest"])},
        now=now,
        rng=rng,
    )
    (read_tx,) = _submit(own, [read])
    return Fetched(grant, dataset, epoch.epoch, out, digests, tuple(releases), read_tx)


# --- rotation and revocation --------------------------------------------------------------------


def rotate_remote(
    client: NodeClient,
    keys: OrgKeys,
    dataset: str,
    *,
    peers: Mapping[str, NodeClient],
    reason: str = "rotation",
    rng: Callable[[int], bytes] = os.urandom,
    now: Callable[[], float] = time.time,
    progress: Progress | None = None,
) -> Rotated:
    """Re-seal the dataset under a fresh key as its next epoch; destroy the old everywhere."""
    owner = keys.org
    old = key_epoch_of(client, dataset)
    if old.by != owner:
        raise AccessDeniedError(f"only the owner ({old.by}) rotates the keys of {dataset}")
    record = client.get_json(f"/v1/datasets/{dataset}")["dataset"]
    wrapped = client.get_json(f"/v1/custody/{dataset}/{old.epoch}/key")["wrapped"]
    old_key = unwrap_key(
        bytes.fromhex(wrapped),
        keys.encryption_private,
        context=vault_context(owner, dataset, old.epoch, "key"),
    )
    new_key = rng(KEY_SIZE)
    new = old.epoch + 1
    orgs = _organisations(client)
    with _workdir() as work:
        if old.inline:
            src = sealing.Source(data=old.inline)
        else:
            download_blob([client], old.ciphertext_digest, work / "old.sealed")
            src = sealing.Source(path=work / "old.sealed")
        store = BlobStore(work / "blobs")
        inline, digests = sealing.reseal(
            src, old_key, old.epoch, new_key, new, store, rng, progress
        )
        if digests.plaintext_sha256 != bytes.fromhex(record["plaintext_digest"]):
            raise IntegrityError(f"dataset {dataset}'s payload no longer matches its digest")
        body = epoch_payload(
            dataset,
            new,
            digests,
            old.custody,
            old.holders,
            old.threshold,
            reason=reason,
            inline=inline,
        )
        ep = sign_transaction(keys.signing, EPOCH, owner, body, now=now, rng=rng)
        _deposit(client, peers, orgs, dataset, new, new_key, old.holders, old.threshold, rng)
        blob = store.path(digests.ciphertext_sha256)
        if not inline:
            upload_blob(client, digests.ciphertext_sha256, blob)
        (tx_id,) = _submit(client, [ep])
        if not inline:
            _replicate(peers, old.holders, owner, tx_id, digests.ciphertext_sha256, blob)
    destroyed = 0
    for org in dict.fromkeys((owner, *old.holders)):
        node = client if org == owner else _peer(peers, org)
        if org != owner:
            _committed_tx(node, tx_id)
        reply = node.http.delete(f"/v1/custody/{dataset}", params={"epoch": old.epoch})
        raise_for_reply(reply)
        destroyed += int(reply.json()["destroyed"])
        if not old.inline:
            raise_for_reply(node.http.delete(f"/v1/blobs/{old.ciphertext_digest.hex()}"))
    return Rotated(dataset, new, digests.ciphertext_sha256, tx_id, destroyed)


def revoke_remote(
    client: NodeClient,
    keys: OrgKeys,
    grant: str,
    *,
    peers: Mapping[str, NodeClient],
    reason: str = "",
    rng: Callable[[int], bytes] = os.urandom,
    now: Callable[[], float] = time.time,
) -> Revoked:
    """Revoke `grant` as its dataset's owner, then move the dataset to a new key epoch."""
    stx = sign_transaction(
        keys.signing, "grant.revoke", keys.org, {"grant": grant, "reason": reason}, now=now, rng=rng
    )
    (tx_id,) = _submit(client, [stx])
    dataset = str(client.get_json(f"/v1/grants/{grant}")["grant"]["grant"]["dataset"])
    rotated = rotate_remote(
        client, keys, dataset, peers=peers, reason=f"grant {grant} revoked", rng=rng, now=now
    )
    return Revoked(grant, tx_id, rotated)
