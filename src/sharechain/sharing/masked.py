"""Masked releases: the owner masks a dataset for one grant; the raw data stays.

A grant issued under a masking profile releases nothing until its owner has
produced the masked version (the chain refuses every release with `masked`,
`contracts/grants.py`). `produce` is that step, written once against the
ports, the same on the embedded default and on the owner's node:

1. read the grant and the profile it names (the rules are in the
   `profile.register` transaction the grant points at, checked against the
   digest the grant carries);
2. open the raw dataset's current epoch with the owner's own key into a
   private temporary directory, checking it against the chain;
3. mask it (`privacy.masking.apply`) with the tokenisation key derived for
   (dataset, grantee, key epoch) from the owner's secret, so only the owner can
   re-identify and two grantees' tokens never join;
4. seal the output under a fresh data key, kept by the owner only (`owner`
   custody, no holders: the grantee gets it from the owner's node);
5. commit `dataset.transform` (the derived dataset with its transformation
   record: source, profile, output digest, achieved k and l, suppressed rows,
   epsilon) and its first `dataset.epoch` in one block; the grant then points
   at the masked version, and `fetch` of the grant returns its bytes.

Temporary plaintext (raw and masked) is removed whatever happens; a failure
before the commit takes back the deposited key and the sealed blob.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sharechain.contracts.epochs import EPOCH
from sharechain.contracts.grants import Grant
from sharechain.contracts.profiles import REGISTER, profile_digest_of
from sharechain.contracts.transforms import TRANSFORM
from sharechain.crypto.stream import DEFAULT_SEGMENT_SIZE, KEY_SIZE, StreamDigests
from sharechain.errors import IntegrityError, NotFoundError
from sharechain.ledger.blocks import VALID
from sharechain.privacy.masking import MaskReport, apply
from sharechain.privacy.profiles import Profile, profile_from_form
from sharechain.privacy.tokens import derive_token_key
from sharechain.sharing.custody import check_digests, epoch_payload
from sharechain.sharing.ports import Deposit, Ports, Seal
from sharechain.sharing.publish import undo_epoch
from sharechain.sharing.records import derive_id
from sharechain.storage import sealing
from sharechain.storage.vault import Access, record

__all__ = ["WAITING", "Transformed", "masking_state", "produce"]

WAITING = "waiting for the owner's node to produce the masked version"
"""What a masked grant without its masked version is doing (`request show`)."""


@dataclass(frozen=True, slots=True)
class Transformed:
    """A masked version made for a grant and recorded on the chain."""

    grant: str
    """The grant it serves."""
    source: str
    """The raw dataset."""
    dataset: str
    """The masked (derived) dataset."""
    report: MaskReport
    """What masking achieved (rows, k, l, suppressed, epsilon)."""
    tx_id: bytes
    """The `dataset.transform` transaction."""


def masking_state(grant: Grant) -> str:
    """In words: whether a grant is masked, and whether its masked version exists."""
    if not grant.masking:
        return "none"
    if not grant.source:
        return WAITING
    return f"masked version {grant.dataset} of {grant.source} (profile {grant.masking[:12]})"


def _profile(ports: Ports, grant: Grant) -> Profile:
    """The profile the grant names, read from its registration on our own chain."""
    code, stx = ports.chain.committed(grant.masking_tx)
    form = stx.tx.payload.get("profile")
    if (
        code != VALID.code
        or stx.tx.type != REGISTER
        or not isinstance(form, dict)
        or profile_digest_of(form).hex() != grant.masking
    ):
        raise IntegrityError(
            f"transaction {grant.masking_tx.hex()} does not register the masking profile "
            f"{grant.masking} that grant {grant.id} names"
        )
    return profile_from_form(form)


def _suffix(path: Path) -> str:
    with path.open("rb") as fh:
        return ".parquet" if fh.read(4) == b"PAR1" else ".csv"


@contextmanager
def _raw_copy(ports: Ports, owner: str, ds: str, workdir: Path) -> Iterator[tuple[Path, int]]:
    """The raw dataset's current epoch opened with the owner's key; (file, epoch)."""
    chain = ports.chain
    dataset = chain.dataset(ds)
    epoch = chain.key_epoch(ds)
    key = ports.custodian.own_key(owner, ds, epoch.epoch)

    def check(got: StreamDigests) -> None:
        record(Access(owner, "decrypt", "plaintext", ds, epoch.epoch, dataset.plaintext_digest))
        check_digests(dataset, epoch, got)

    out = workdir / "raw"
    try:
        with ports.blobs.source(
            epoch, offline=frozenset(), progress=None, plain_size=dataset.size
        ) as (src, rest):
            sealing.open_to_file(src, key, epoch.epoch, out, progress=rest, check=check)
    finally:
        del key
    typed = out.with_suffix(_suffix(out))
    out.rename(typed)
    yield typed, epoch.epoch


def produce(ports: Ports, owner: str, gid: str) -> Transformed | None:
    """Mask the grant's dataset for its grantee and record it; None if nothing is due.

    Nothing is due for a grant without a masking profile, one whose masked
    version exists, one that is no longer usable (revoked, expired), or one
    whose dataset was registered without a sealed payload; and nothing can be
    done on a side that does not hold the owner's keys (the owner's node does
    it when it commits the grant).
    """
    chain = ports.chain
    view = chain.grant(gid)
    grant = view.grant
    if not grant.masking or grant.source or view.status in ("revoked", "expired"):
        return None
    if not chain.holds_keys(owner) or grant.owner != owner:
        return None
    try:
        chain.key_epoch(grant.dataset)
    except NotFoundError:
        return None
    profile = _profile(ports, grant)
    source = chain.dataset(grant.dataset)
    with tempfile.TemporaryDirectory(prefix="sharechain-mask-") as tmp:
        work = Path(tmp)
        with _raw_copy(ports, owner, source.id, work) as (raw, epoch):
            token = derive_token_key(
                chain.keys(owner).encryption_private, source.id, grant.grantee, epoch
            )
            masked = work / f"masked{raw.suffix}"
            seed = int.from_bytes(ports.rng(16), "big")
            report = apply(
                profile, raw, masked, token_key=token.key, rng=np.random.default_rng(seed)
            )
            raw.unlink()
        return _record(ports, owner, grant, source.plaintext_digest, masked, report)


def _record(
    ports: Ports, owner: str, grant: Grant, source_digest: bytes, masked: Path, report: MaskReport
) -> Transformed:
    """Seal the masked file for the owner and commit the transform with its first epoch."""
    chain, blobs = ports.chain, ports.blobs
    key = ports.rng(KEY_SIZE)
    holders = (owner,)  # owner custody: only the owner's node releases, to the grantee only
    job = Seal(masked, key, holders, DEFAULT_SEGMENT_SIZE, blobs.inline_limit)
    inline, digests = blobs.seal(job, ports.rng, None)
    body = {
        "grant": grant.id,
        "profile": bytes.fromhex(grant.masking),
        "source_digest": source_digest,
        "plaintext_digest": digests.plaintext_sha256,
        "ciphertext_digest": digests.ciphertext_sha256,
        "segment_root": digests.segment_root,
        "size": digests.size,
        "k": report.k,
        "l": report.l or 0,
        "suppressed": report.suppressed,
        "rows": report.rows_out,
        "epsilon": str(report.epsilon_total),
    }
    tx = chain.sign(owner, TRANSFORM, body)
    ds = derive_id("dataset", tx.id)
    first = epoch_payload(ds, 1, digests, "owner", holders, 1, reason="masked", inline=inline)
    ep = chain.sign(owner, EPOCH, first)
    try:
        ports.custodian.deposit(Deposit(ds, 1, owner, key, holders, 1), ports.rng)
        chain.commit([tx, ep])
    except BaseException:
        undo_epoch(ports, ds, 1, holders, b"" if inline else digests.ciphertext_sha256)
        raise
    if not inline:
        blobs.replicate(digests.ciphertext_sha256, holders, owner, after=ep.id)
    return Transformed(grant.id, grant.dataset, ds, report, tx.id)
