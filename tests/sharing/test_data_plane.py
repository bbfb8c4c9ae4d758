"""The data plane's operations, the same tests embedded and over the nodes (`side`).

publish, fetch (ranges of custody modes, inline payloads), refusals the chain
records (wrong grantee, expired, used up, revoked), rotation, revocation,
purge and what each leaves behind, threshold fetches with holders offline,
damaged blobs and interrupted publishes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from plane_sides import ORDERER, Side

from sharechain.contracts.access import APPROVE, REQUEST
from sharechain.crypto.stream import HEADER_SIZE
from sharechain.errors import (
    InsufficientSharesError,
    SharechainError,
    TransactionRejectedError,
)
from sharechain.sharing.records import Listing, Published, ReleaseRefusedError, derive_id

OWNER, GRANTEE = "hospital-a", "insurer"
DAY = 86_400_000


def payload(tmp_path: Path, size: int = 150_000) -> Path:
    path = tmp_path / "records.csv"
    path.write_bytes(os.urandom(size))
    return path


def publish(side: Side, src: Path, custody: str = "owner", **kw: Any) -> Published:
    options = {k: kw.pop(k) for k in ("policy", "holders") if k in kw}
    listing = Listing(title="records", custody=custody, **options)
    pub = side.plane(OWNER).publish(OWNER, src, listing, **kw)
    side.sync()
    return pub


def grant_for(side: Side, ds: str, org: str = GRANTEE, duration: int = DAY) -> str:
    body = {"dataset": ds, "purpose": "research", "duration": duration}
    rid = derive_id("request", side.submit(org, REQUEST, body).tx_id)
    side.submit(OWNER, APPROVE, {"request": rid})
    return derive_id("grant", side.submit("regulator", APPROVE, {"request": rid}).tx_id)


def codes(side: Side, ds: str) -> list[tuple[str, str]]:
    side.sync()
    return [(e.type, e.code) for e in side.plane("regulator").audit(ds=ds)]


@pytest.mark.parametrize("custody", ["owner", "supervisor", "threshold"])
def test_round_trip_in_every_custody_mode(side: Side, tmp_path: Path, custody: str) -> None:
    src = payload(tmp_path)
    pub = publish(side, src, custody)
    assert not pub.inline
    gid = grant_for(side, pub.dataset)
    got = side.plane(GRANTEE).fetch(GRANTEE, gid, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == src.read_bytes()
    assert got.digests == pub.digests and got.epoch == 1
    expected = {"owner": ["hospital-a"], "supervisor": ["regulator"]}.get(custody)
    assert [r.custodian for r in got.releases] == (expected or ["hospital-b", "insurer"])
    side.sync()
    g = side.plane("regulator").grant(gid).grant
    assert (g.uses, g.reads) == (1, 1)  # threshold shares of one session count once
    assert ("grant.read", "valid") in codes(side, pub.dataset)
    # The owner and every custodian hold the blob (the custodians' replicas).
    for org in (OWNER, *pub.holders):
        assert side.blobs(pub.dataset, org), org


def test_small_payload_travels_on_the_chain(side: Side, tmp_path: Path) -> None:
    small = tmp_path / "small.txt"
    small.write_bytes(b"glucose,5.4\n" * 100)
    pub = publish(side, small)
    assert pub.inline and not side.blobs(pub.dataset, OWNER)
    gid = grant_for(side, pub.dataset)
    side.plane(GRANTEE).fetch(GRANTEE, gid, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == small.read_bytes()


def test_non_grantee_is_refused_and_the_refusal_is_recorded(side: Side, tmp_path: Path) -> None:
    pub = publish(side, payload(tmp_path))
    gid = grant_for(side, pub.dataset)
    with pytest.raises(ReleaseRefusedError, match="wrong_grantee") as refused:
        side.plane("hospital-b").fetch("hospital-b", gid, tmp_path / "out", dataset=pub.dataset)
    assert refused.value.code == "wrong_grantee" and refused.value.custodian == OWNER
    assert ("grant.key-release", "wrong_grantee") in codes(side, pub.dataset)
    assert not (tmp_path / "out").exists()


def test_expired_grant_is_refused(side: Side, tmp_path: Path) -> None:
    pub = publish(side, payload(tmp_path))
    gid = grant_for(side, pub.dataset, duration=1)
    time.sleep(0.01)
    with pytest.raises(ReleaseRefusedError, match="expired"):
        side.plane(GRANTEE).fetch(GRANTEE, gid, tmp_path / "out")
    assert ("grant.key-release", "expired") in codes(side, pub.dataset)


def test_used_up_grant_is_refused(side: Side, tmp_path: Path) -> None:
    pub = publish(side, payload(tmp_path), policy={"max_uses": 1})
    gid = grant_for(side, pub.dataset)
    side.plane(GRANTEE).fetch(GRANTEE, gid, tmp_path / "one")
    side.sync()
    with pytest.raises(ReleaseRefusedError, match="used_up"):
        side.plane(GRANTEE).fetch(GRANTEE, gid, tmp_path / "two")
    assert ("grant.key-release", "used_up") in codes(side, pub.dataset)
    assert not (tmp_path / "two").exists()


def test_revocation_refuses_releases_and_moves_to_a_new_epoch(side: Side, tmp_path: Path) -> None:
    src = payload(tmp_path)
    pub = publish(side, src, "threshold")
    gid = grant_for(side, pub.dataset)
    done = side.plane(OWNER).revoke(OWNER, gid, reason="study over")
    assert done.rotated is not None and done.rotated.epoch == 2
    assert done.rotated.destroyed == 4  # the owner's key and three shares of epoch 1
    side.sync()
    with pytest.raises(ReleaseRefusedError, match="revoked"):
        side.plane(GRANTEE).fetch(GRANTEE, gid, tmp_path / "out")
    found = codes(side, pub.dataset)
    assert ("grant.key-release", "revoked") in found and ("dataset.epoch", "valid") in found
    # Only the new epoch's blob is left; a new grant reads the same bytes from it.
    assert len(side.blobs(pub.dataset, OWNER)) == 1
    again = grant_for(side, pub.dataset)
    got = side.plane(GRANTEE).fetch(GRANTEE, again, tmp_path / "new")
    assert got.epoch == 2 and (tmp_path / "new").read_bytes() == src.read_bytes()


def test_a_supervisors_revocation_leaves_the_rotation_to_the_owner(
    side: Side, tmp_path: Path
) -> None:
    pub = publish(side, payload(tmp_path), "supervisor")
    gid = grant_for(side, pub.dataset)
    done = side.plane("regulator").revoke("regulator", gid)
    # Embedded, one process holds the owner's keys and rotates; a node cannot.
    assert (done.rotated is None) == (side.name == "remote")
    with pytest.raises(SharechainError, match="not revoked"):
        side.plane(OWNER).rotate_after_revoke(OWNER, grant_for(side, pub.dataset))


def test_rotation_destroys_the_old_epoch_everywhere(side: Side, tmp_path: Path) -> None:
    src = payload(tmp_path)
    pub = publish(side, src, "supervisor")
    rot = side.plane(OWNER).rotate(OWNER, pub.dataset)
    assert rot.epoch == 2 and rot.ciphertext_digest != pub.digests.ciphertext_sha256
    assert rot.destroyed == 2  # the owner's key and the regulator's
    side.sync()
    held = side.held(pub.dataset)
    assert held[OWNER] == (1, 1) and held["regulator"] == (1, 1)
    with pytest.raises(SharechainError, match="only the owner"):
        side.plane("regulator").rotate("regulator", pub.dataset)


def test_threshold_fetch_with_holders_offline(side: Side, tmp_path: Path) -> None:
    src = payload(tmp_path)
    pub = publish(side, src, "threshold", holders=("hospital-b", "regulator"))
    gid = grant_for(side, pub.dataset)
    # The owner is offline: the two share holders suffice (and hold the blob).
    out = tmp_path / "out"
    side.plane(GRANTEE).fetch(GRANTEE, gid, out, offline=frozenset({OWNER}))
    assert out.read_bytes() == src.read_bytes()
    with pytest.raises(InsufficientSharesError, match="1 of the 2"):
        side.plane(GRANTEE).fetch(GRANTEE, gid, tmp_path / "x", offline=frozenset({"regulator"}))
    assert not (tmp_path / "x").exists()


def test_purge_shreds_keys_and_blobs_everywhere_and_keeps_the_record(
    side: Side, tmp_path: Path
) -> None:
    pub = publish(side, payload(tmp_path), "threshold")
    gid = grant_for(side, pub.dataset)
    done = side.plane(OWNER).purge(OWNER, pub.dataset, reason="consent withdrawn")
    assert done.keys_destroyed == 4 and done.blobs_deleted >= 1 and not done.unreached
    side.sync()
    wait = time.monotonic() + 20
    while set(side.held(pub.dataset).values()) != {(0, 0)} and time.monotonic() < wait:
        time.sleep(0.05)  # a node shreds by itself once it commits the purge
    assert set(side.held(pub.dataset).values()) == {(0, 0)}
    assert side.plane("regulator").dataset(pub.dataset).status == "purged"
    assert ("dataset.purge", "valid") in codes(side, pub.dataset)
    with pytest.raises(ReleaseRefusedError, match="revoked"):
        side.plane(GRANTEE).fetch(GRANTEE, gid, tmp_path / "out")


def test_purge_by_a_non_owner_destroys_nothing(side: Side, tmp_path: Path) -> None:
    pub = publish(side, payload(tmp_path))
    with pytest.raises(TransactionRejectedError, match="denied"):
        side.plane(GRANTEE).purge(GRANTEE, pub.dataset)
    assert side.held(pub.dataset)[OWNER] == (1, 1)


def test_a_damaged_blob_is_refused_without_a_read_receipt(side: Side, tmp_path: Path) -> None:
    pub = publish(side, payload(tmp_path))
    gid = grant_for(side, pub.dataset)
    copies = {blob for org in side.dirs for blob in side.blobs(pub.dataset, org)}
    assert copies
    for blob in copies:  # every copy, so no node can serve a good one
        data = bytearray(blob.read_bytes())
        data[HEADER_SIZE + 100] ^= 1
        blob.chmod(0o644)
        blob.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(SharechainError):  # a download's digest check, or the decryption
        side.plane(GRANTEE).fetch(GRANTEE, gid, out)
    assert not out.exists() and not list(tmp_path.glob(".out.*"))
    side.sync()
    assert side.plane("regulator").grant(gid).grant.reads == 0


def test_an_interrupted_publish_leaves_no_key_behind(
    side: Side, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sharechain.sharing import publish as publishing

    before = side.plane(ORDERER).catalogue(include_inactive=True)

    def refuse(*args: Any, **kw: Any) -> None:
        raise TransactionRejectedError("denied", "interrupted before the commit", b"")

    plane = side.plane(OWNER)
    real = publishing.publish

    def interrupted(ports: Any, *args: Any, **kw: Any) -> Published:
        monkeypatch.setattr(ports.chain, "commit", refuse)
        return real(ports, *args, **kw)

    monkeypatch.setattr(publishing, "publish", interrupted)
    with pytest.raises(TransactionRejectedError, match="interrupted"):
        plane.publish(OWNER, payload(tmp_path), Listing(title="never", custody="supervisor"))
    assert side.plane(ORDERER).catalogue(include_inactive=True) == before
    if side.name == "local":  # embedded, the deposit is undone; nodes release nothing uncommitted
        assert not any((side.dirs[OWNER] / "vault").rglob("*.key"))
        assert not any((side.dirs[OWNER] / "blobs").glob("??/*"))
