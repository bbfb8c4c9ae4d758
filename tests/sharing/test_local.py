"""The data plane on the embedded default: what only one data directory can show.

The operations themselves run in the matrix of `test_data_plane.py` (embedded and
over nodes); here the embedded adapters (`sharing.local`) are driven directly to
look at the vaults, inboxes and blobs of every organisation at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sharechain.contracts import queries
from sharechain.contracts.epochs import KeyEpoch
from sharechain.crypto.hpke import unwrap_key
from sharechain.crypto.stream import HEADER_SIZE, TAG_SIZE
from sharechain.errors import DecryptionError, IntegrityError, NotFoundError
from sharechain.ledger.state import StateReader
from sharechain.sharing import fetch as fetching
from sharechain.sharing import publish as publishing
from sharechain.sharing import rotation
from sharechain.sharing.custody import release_context
from sharechain.sharing.embedded import Embedded
from sharechain.sharing.local import LocalChain, LocalCustodian, local_ports
from sharechain.sharing.records import Fetched, Listing, Published, Rotated, derive_id
from sharechain.storage import sealing, vault
from sharechain.storage.blobs import BlobStore
from sharechain.storage.datadir import OrgSpec, init_consortium

ORGS = (
    OrgSpec("hospital-a", ("member", "admin")),
    OrgSpec("hospital-b", ("member", "admin")),
    OrgSpec("insurer", ("member",)),
    OrgSpec("regulator", ("member", "supervisor", "admin")),
)
DAY = 86_400_000


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def emb(tmp_path: Path, clock: Clock) -> Iterator[Embedded]:
    init_consortium(tmp_path / "c", ORGS, now=clock)
    e = Embedded(tmp_path / "c", now=clock)
    yield e
    e.close()


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "records.csv"
    path.write_bytes(os.urandom(150_000))
    return path


def grant_for(emb: Embedded, ds: str, org: str = "insurer") -> str:
    r = emb.submit(org, "access.request", {"dataset": ds, "purpose": "research", "duration": DAY})
    rid = derive_id("request", r.tx_id)
    emb.submit("hospital-a", "access.approve", {"request": rid})
    return derive_id("grant", emb.submit("regulator", "access.approve", {"request": rid}).tx_id)


def publish(emb: Embedded, src: Path, **kw: Any) -> Published:
    listing = {k: kw.pop(k) for k in ("custody", "holders", "policy") if k in kw}
    ports = local_ports(emb)
    return publishing.publish(ports, "hospital-a", src, Listing("records", **listing), **kw)


def fetch(emb: Embedded, org: str, gid: str, out: Path, **kw: Any) -> Fetched:
    return fetching.fetch(local_ports(emb), org, gid, out, **kw)


def rotate(emb: Embedded, ds: str) -> Rotated:
    return rotation.rotate(local_ports(emb), "hospital-a", ds)


def epoch_of(emb: Embedded, ds: str) -> KeyEpoch:
    return LocalChain(emb).key_epoch(ds)


def codes(emb: Embedded, ds: str) -> list[tuple[str, str]]:
    return [(e.type, e.code) for e in queries.audit(emb.store, ds=ds, proofs=False)]


def blob_path(emb: Embedded, pub: Published) -> Path:
    return BlobStore(emb.datadir.blob_dir).path(pub.digests.ciphertext_sha256)


def test_inline_limit_is_configurable(emb: Embedded, payload: Path) -> None:
    assert publish(emb, payload, inline_limit=1 << 20).inline
    assert not publish(emb, payload, inline_limit=0).inline


def test_wrong_key_opens_nothing_and_leaves_no_file(
    emb: Embedded, payload: Path, tmp_path: Path
) -> None:
    pub = publish(emb, payload)
    out = tmp_path / "out"
    with pytest.raises(DecryptionError):
        sealing.open_to_file(
            sealing.Source(path=blob_path(emb, pub)), os.urandom(32), 1, out, progress=None
        )
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def _segments(data: bytes, size: int) -> list[bytes]:
    body = data[HEADER_SIZE:]
    step = size + TAG_SIZE
    return [body[i : i + step] for i in range(0, len(body), step)]


@pytest.mark.parametrize("damage", ["tampered", "truncated", "reordered"])
def test_damaged_ciphertext_is_refused_without_read_receipt(
    emb: Embedded, payload: Path, tmp_path: Path, damage: str
) -> None:
    pub = publish(emb, payload, inline_limit=0, segment_size=16_384)
    gid = grant_for(emb, pub.dataset)
    blob = blob_path(emb, pub)
    data = blob.read_bytes()
    segs = _segments(data, 16_384)
    if damage == "tampered":
        bad = bytearray(data)
        bad[HEADER_SIZE + 100] ^= 1
        forged = bytes(bad)
    elif damage == "truncated":
        forged = data[:HEADER_SIZE] + b"".join(segs[:-1])
    else:
        forged = data[:HEADER_SIZE] + b"".join([segs[1], segs[0], *segs[2:]])
    blob.chmod(0o644)
    blob.write_bytes(forged)
    out = tmp_path / "out"
    with pytest.raises(DecryptionError):
        fetch(emb, "insurer", gid, out)
    assert not out.exists() and not list(tmp_path.glob(".out.*"))
    assert queries.grant(emb.store, gid).grant.reads == 0


def test_registered_digest_mismatch_is_an_integrity_error(
    emb: Embedded, payload: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pub = publish(emb, payload)
    gid = grant_for(emb, pub.dataset)
    real = queries.dataset

    def lying(store: Any, ds: str) -> Any:
        import dataclasses

        return dataclasses.replace(real(store, ds), plaintext_digest=bytes(32))

    monkeypatch.setattr(queries, "dataset", lying)
    with pytest.raises(IntegrityError, match="plaintext digest"):
        fetch(emb, "insurer", gid, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_replayed_key_release_is_refused(emb: Embedded, payload: Path) -> None:
    pub = publish(emb, payload)
    gid = grant_for(emb, pub.dataset)
    custodian, epoch = LocalCustodian(emb), epoch_of(emb, pub.dataset)
    first = custodian.release("hospital-a", gid, to="insurer", session="s1", epoch=epoch)
    old = first.wrapped
    assert not any(Path(emb.datadir.path, "inbox").rglob("*.*"))  # delivered and collected
    # The signed release transaction itself cannot be committed twice.
    loc = emb.store.tx_location(first.tx_id)
    assert loc is not None
    from sharechain.ledger.blocks import decode_block

    data = emb.store.block_bytes(loc.height)
    assert data is not None
    raw = decode_block(data).txs[loc.index]
    (again,) = emb.submit_raw([raw], orderer="hospital-a")
    assert not again.ok
    # A wrapped key from one session replayed into another is refused.
    second = custodian.release("hospital-a", gid, to="insurer", session="s2", epoch=epoch)
    replayed = dataclasses.replace(second, wrapped=old)
    chain, keys = LocalChain(emb), emb.keys("insurer")
    with pytest.raises(IntegrityError, match="not the one its release on the chain names"):
        fetching.open_delivery(chain, keys, replayed, grant=gid, session="s2", dataset=pub.dataset)
    # Nor does a release of one session pass for another.
    with pytest.raises(IntegrityError, match="does not record"):
        fetching.open_delivery(chain, keys, second, grant=gid, session="s1", dataset=pub.dataset)
    context = release_context(pub.dataset, 1, gid, "s2", "hospital-a")
    with pytest.raises(DecryptionError):
        unwrap_key(old, emb.keys("insurer").encryption_private, context=context)


def test_threshold_supervisor_never_holds_the_key_or_plaintext(
    emb: Embedded, payload: Path, tmp_path: Path
) -> None:
    with vault.watch() as seen:
        pub = publish(emb, payload, custody="threshold", holders=("hospital-b", "regulator"))
        gid = grant_for(emb, pub.dataset)
        # The owner is offline: the two share holders suffice.
        fetch(emb, "insurer", gid, tmp_path / "out", offline=frozenset({"hospital-a"}))
        rotate(emb, pub.dataset)
    assert (tmp_path / "out").read_bytes() == payload.read_bytes()
    keys = {
        hashlib.sha256(
            vault.Vault(emb.datadir.path, emb.keys("hospital-a")).get(pub.dataset, 2, "key")
        ).digest()
    }
    keys |= {
        a.material_sha256
        for a in seen
        if a.org == "hospital-a" and a.kind == "key" and a.operation == "put"
    }
    plaintext = hashlib.sha256(payload.read_bytes()).digest()
    regulator = [a for a in seen if a.org == "regulator"]
    assert regulator and {a.kind for a in regulator} <= {"share", "key"}
    assert all(a.kind == "share" for a in regulator if a.operation in ("put", "get"))
    assert not any(a.material_sha256 in keys | {plaintext} for a in regulator)
    # On disk: the regulator's vault holds 67-byte shares, and its inbox nothing.
    regulator_keys = emb.keys("regulator")
    for ds, ep, kind in vault.Vault(emb.datadir.path, regulator_keys).entries():
        secret = vault.Vault(emb.datadir.path, regulator_keys).get(ds, ep, kind)
        assert kind == "share" and len(secret) == 67
        assert hashlib.sha256(secret).digest() not in keys
    assert not any((emb.datadir.path / "inbox" / "regulator").rglob("*.*"))
    decrypted_by = {a.org for a in seen if a.kind == "plaintext"}
    assert decrypted_by == {"insurer"}


def test_an_old_epoch_key_opens_nothing_published_after_it(
    emb: Embedded, payload: Path, tmp_path: Path
) -> None:
    pub = publish(emb, payload)
    owner = vault.Vault(emb.datadir.path, emb.keys("hospital-a"))
    old_key = owner.get(pub.dataset, 1, "key")
    rot = rotate(emb, pub.dataset)
    assert rot.epoch == 2 and rot.ciphertext_digest != pub.digests.ciphertext_sha256
    assert not owner.has(pub.dataset, 1, "key") and owner.has(pub.dataset, 2, "key")
    store = BlobStore(emb.datadir.blob_dir)
    assert not store.has(pub.digests.ciphertext_sha256)
    with pytest.raises(DecryptionError):
        sealing.open_to_file(
            sealing.Source(path=store.path(rot.ciphertext_digest)),
            old_key,
            2,
            tmp_path / "out",
            progress=None,
        )
    gid = grant_for(emb, pub.dataset)
    got = fetch(emb, "insurer", gid, tmp_path / "new")
    assert got.epoch == 2 and (tmp_path / "new").read_bytes() == payload.read_bytes()


def test_a_dataset_registered_without_the_data_plane_has_no_epoch(emb: Embedded) -> None:
    body = {
        "title": "bare",
        "plaintext_digest": bytes(32),
        "ciphertext_digest": bytes(32),
        "size": 1,
    }
    ds = derive_id("dataset", emb.submit("hospital-a", "dataset.register", body).tx_id)
    assert StateReader(emb.store).get(f"epoch/{ds}/000000000001") is None
    with pytest.raises(NotFoundError, match="no key epoch"):
        epoch_of(emb, ds)


LARGE = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from sharechain.sharing.plane import Plane
    from sharechain.sharing.records import Listing, derive_id
    from sharechain.storage.datadir import OrgSpec, init_consortium

    root = Path(sys.argv[1])
    orgs = [OrgSpec("hospital-a", ("member", "admin")), OrgSpec("insurer", ("member",)),
            OrgSpec("regulator", ("member", "supervisor", "admin"))]
    init_consortium(root / "c", orgs)
    src = root / "big"
    block = os.urandom(1 << 20)
    with src.open("wb") as f:
        for _ in range(int(sys.argv[2])):
            f.write(block)
    plane = Plane.local(root / "c")
    pub = plane.publish("hospital-a", src, Listing(title="big"))
    r = plane.submit("insurer", "access.request",
                     {"dataset": pub.dataset, "purpose": "x", "duration": 3600000})
    rid = derive_id("request", r.tx_id)
    plane.submit("hospital-a", "access.approve", {"request": rid})
    g = derive_id("grant", plane.submit("regulator", "access.approve", {"request": rid}).tx_id)
    got = plane.fetch("insurer", g, root / "out")
    assert got.digests.plaintext_sha256 == pub.digests.plaintext_sha256
    assert (root / "out").stat().st_size == src.stat().st_size
    from sharechain.bench.memory import peak_rss_kib
    print(peak_rss_kib())
    """
)


# 512 MiB in `make test` (more than twice the memory bound), 2 GiB in `make soak`.
@pytest.mark.parametrize(
    "total_mib",
    [
        pytest.param(512, id="512MiB", marks=pytest.mark.slow),
        pytest.param(2048, id="2GiB", marks=pytest.mark.soak),
    ],
)
def test_a_large_round_trip_through_publish_and_fetch_in_bounded_memory(
    tmp_path: Path, total_mib: int
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", LARGE, str(tmp_path), str(total_mib)],
        capture_output=True,
        text=True,
        check=True,
        timeout=280,
    )
    peak_mib = int(done.stdout.split()[-1]) / 1024
    assert peak_mib < 200, peak_mib
