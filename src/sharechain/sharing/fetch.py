"""Fetching: have the custodians release, rebuild the key, open and check, sign the read.

The steps, the same on the embedded default and on the nodes:

1. read the grant's dataset and its current key epoch on the grantee's own
   chain copy;
2. ask the holders in turn (skipping those known to be offline) until enough
   keys or shares are released; each release is a `grant.key-release` the
   chain checked (grantee, revoked, expired, suspended, used up) and
   recorded either way; a refusal raises `ReleaseRefusedError` with the
   chain's code;
3. believe a release only once the grantee's own chain records it, as valid,
   from that custodian, to the grantee, for this grant and session, with the
   digest of exactly the wrap received (`open_delivery`);
4. rebuild the key, open the sealed payload into a file without a name
   (`staging.Staged`: killed at any point, the process leaves no plaintext
   behind), check the plaintext digest, segment root and size against the
   chain;
5. sign the read receipt (`grant.read`) and have it committed;
6. only then give the plaintext its name at the destination.

The receipt says the grantee obtained the plaintext, so it comes first: a
plaintext on disk always has its receipt on the chain. A refused receipt
leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sharechain.contracts.epochs import KeyEpoch
from sharechain.contracts.grants import KEY_RELEASE, READ
from sharechain.crypto.keyfile import OrgKeys
from sharechain.crypto.stream import decrypt_stream
from sharechain.errors import InsufficientSharesError, IntegrityError
from sharechain.ledger.blocks import VALID
from sharechain.sharing.custody import check_digests, combine_secrets, open_release
from sharechain.sharing.ports import Chain, Delivery, Ports, UnreachableError
from sharechain.sharing.records import Fetched, KeyRelease, Progress
from sharechain.sharing.staging import Staged
from sharechain.storage import sealing
from sharechain.storage.vault import Access, record

__all__ = ["fetch", "obtain_key", "open_delivery"]


def open_delivery(
    chain: Chain, keys: OrgKeys, got: Delivery, *, grant: str, session: str, dataset: str
) -> tuple[KeyRelease, bytes]:
    """Check a delivery against the release transaction on our chain; open it."""
    code, stx = chain.committed(got.tx_id)
    p = stx.tx.payload
    if (
        stx.tx.type != KEY_RELEASE
        or stx.tx.sender != got.custodian
        or code != VALID.code
        or p["to"] != keys.org
        or p["grant"] != grant
        or p["session"] != session
        or p["epoch"] != got.epoch
    ):
        raise IntegrityError(
            f"{got.custodian} answered with release {got.tx_id.hex()}, which our chain does not "
            "record as a valid release of this grant to us in this session"
        )
    digest = p["wrapped_key_digest"]
    assert isinstance(digest, bytes)
    release = KeyRelease(grant, got.custodian, keys.org, got.epoch, session, digest, got.tx_id)
    return release, open_release(got.wrapped, keys, release, dataset, digest)


def obtain_key(
    ports: Ports, grantee: str, grant: str, epoch: KeyEpoch, offline: frozenset[str]
) -> tuple[bytes, tuple[KeyRelease, ...]]:
    """Have the holders release until `epoch.threshold` secrets are in; rebuild the key."""
    keys = ports.chain.keys(grantee)
    session = ""  # issued with the first release, named by the further shares
    releases: list[KeyRelease] = []
    secrets: list[bytes] = []
    unreachable: list[str] = []
    for holder in epoch.holders:
        if len(secrets) >= epoch.threshold:
            break
        if holder in offline:
            unreachable.append(f"{holder} (treated as offline)")
            continue
        try:
            got = ports.custodian.release(holder, grant, to=grantee, session=session, epoch=epoch)
        except UnreachableError as exc:
            unreachable.append(exc.where)
            continue
        session = got.session
        release, secret = open_delivery(
            ports.chain, keys, got, grant=grant, session=session, dataset=epoch.dataset
        )
        releases.append(release)
        secrets.append(secret)
    if len(secrets) < epoch.threshold:
        raise InsufficientSharesError(
            f"only {len(secrets)} of the {epoch.threshold} keys or shares needed for dataset "
            f"{epoch.dataset} could be released; could not reach custodian "
            f"{'; '.join(unreachable) or 'none'}; retry when more holders are online"
        )
    return combine_secrets(secrets, epoch.threshold), tuple(releases)


def fetch(
    ports: Ports,
    grantee: str,
    grant: str,
    out: Path,
    *,
    dataset: str | None = None,
    offline: frozenset[str] = frozenset(),
    progress: Progress | None = None,
) -> Fetched:
    """Obtain the key under `grant`, open the payload into `out`, verify, sign a read receipt.

    `offline` names organisations whose nodes do not answer (a threshold fetch then
    asks the other holders, a download the other nodes). `dataset` is needed only
    when the grant cannot be read (an organisation that is not its grantee trying it
    anyway; the custodians refuse and the chain records the refusal). Nothing is
    written at `out` unless every check passes and the read receipt is committed.
    """
    chain = ports.chain
    ds = chain.dataset(dataset if dataset is not None else chain.grant(grant).grant.dataset)
    epoch = chain.key_epoch(ds.id)
    key, releases = obtain_key(ports, grantee, grant, epoch, offline)
    with Staged(out) as staged:
        try:
            with (
                ports.blobs.source(
                    epoch, offline=offline, progress=progress, plain_size=ds.size
                ) as (src, rest),
                src.open() as sealed,
            ):
                opened = decrypt_stream(
                    key,
                    sealing.counting(sealed, rest),
                    staged.file,
                    expected_epoch=epoch.epoch,
                    ciphertext_sha256=False,
                )
        finally:
            del key
        record(Access(grantee, "decrypt", "plaintext", ds.id, epoch.epoch, ds.plaintext_digest))
        check_digests(ds, epoch, opened)
        staged.sync()
        read = chain.sign(grantee, READ, {"grant": grant, "digest": ds.plaintext_digest})
        (receipt,) = chain.commit([read])
        staged.install()
    # The root matched, so the stream is the one the chain names by this digest.
    digests = replace(opened, ciphertext_sha256=epoch.ciphertext_digest)
    return Fetched(grant, ds.id, epoch.epoch, out, digests, releases, receipt.tx_id)
