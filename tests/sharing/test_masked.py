"""Masked grants on both planes: the owner masks, the grantee gets only the masked bytes.

A grantee whose grant names a masking profile cannot obtain the raw bytes
through any path: a fetch before or after the masked version exists, a fetch
aimed at the raw dataset, a key release of the raw epoch recorded by itself,
or the raw blob (which any member may download: it is ciphertext).
"""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path

import pytest
from plane_sides import RemoteSide, Side, wait_until
from test_data_plane import GRANTEE, OWNER, grant_for

from sharechain.contracts import GRANT_KEY_RELEASE, PROFILE_REGISTER
from sharechain.errors import SharechainError, TransactionRejectedError
from sharechain.privacy.profiles import parse_profile, profile_digest, profile_form
from sharechain.sharing.delivery import blobs_of, vault_of
from sharechain.sharing.masked import WAITING, masking_state
from sharechain.sharing.masking_job import MaskingJob
from sharechain.sharing.records import Listing, ReleaseRefusedError

PROFILE = parse_profile(
    """\
k: 2
quasi_identifiers: [age]
columns:
  patient_id: {rule: tokenize}
  name: drop
  age: {rule: generalise, width: 10}
  salary: {rule: noise, epsilon: 1, sensitivity: 100}
"""
)
ROWS = [(f"P{i:03d}", f"Person {i}", 30 + i % 20, 40_000 + 37 * i) for i in range(60)]


def raw_table(tmp_path: Path) -> Path:
    path = tmp_path / "patients.csv"
    lines = ["patient_id,name,age,salary", *(",".join(map(str, r)) for r in ROWS)]
    path.write_text("\n".join(lines) + "\n")
    return path


def masked_grant(side: Side, tmp_path: Path) -> tuple[str, str, Path]:
    """A confidential table published under a masking policy, and a grant on it."""
    form = profile_form(PROFILE)
    try:
        side.submit(OWNER, PROFILE_REGISTER, {"name": "ages", "profile": form})
    except TransactionRejectedError as exc:  # the remote side's consortium is shared
        assert exc.code == "duplicate"
    policy = {"masking": {"confidential": profile_digest(PROFILE).hex()}}
    listing = Listing(title="patients", classification="confidential", policy=policy)
    src = raw_table(tmp_path)
    pub = side.plane(OWNER).publish(OWNER, src, listing, inline_limit=0)
    side.sync()
    return pub.dataset, grant_for(side, pub.dataset), src


def masked_version(side: Side, gid: str) -> str:
    """Embedded: the owner's side masks when asked; nodes: the owner's node by itself."""
    if side.name == "local":
        made = side.plane(OWNER).produce_masked(OWNER, gid)
        assert made is not None and made.report.k == 30  # two age bands of 30
        assert made.report.epsilon_total == 1
    wait_until(lambda: bool(side.plane(GRANTEE).grant(gid).grant.source))
    side.sync()
    return side.plane(GRANTEE).grant(gid).grant.dataset


def test_the_grantee_gets_only_the_masked_version(side: Side, tmp_path: Path) -> None:
    raw, gid, _ = masked_grant(side, tmp_path)
    if side.name == "local":  # the owner's node does not wait (it masks on commit)
        assert masking_state(side.plane(GRANTEE).grant(gid).grant) == WAITING
        with pytest.raises(ReleaseRefusedError) as waiting:
            side.plane(GRANTEE).fetch(GRANTEE, gid, tmp_path / "early")
        assert waiting.value.code == "masked" and not (tmp_path / "early").exists()

    dataset = masked_version(side, gid)
    assert side.plane(OWNER).produce_masked(OWNER, gid) is None  # done once
    grant = side.plane(GRANTEE).grant(gid).grant
    assert (grant.dataset, grant.source) == (dataset, raw) and dataset != raw
    assert dataset in masking_state(grant)
    assert side.plane(GRANTEE).dataset(dataset).masked_for == gid

    got = side.plane(GRANTEE).fetch(GRANTEE, gid, tmp_path / "out.csv")
    assert got.dataset == dataset
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_text())))
    assert rows and set(rows[0]) == {"patient_id", "age", "salary"}
    assert {r["patient_id"] for r in rows}.isdisjoint({r[0] for r in ROWS})
    assert all(r["age"] in ("30-39", "40-49") for r in rows)

    lineage = side.plane(GRANTEE).lineage(raw)
    assert (raw, dataset, "derived") in lineage.edges
    trail = [(e.type, e.code) for e in side.plane("regulator").audit(ds=raw)]
    assert ("dataset.transform", "valid") in trail


def test_no_path_yields_the_raw_bytes(side: Side, tmp_path: Path) -> None:
    raw, gid, src = masked_grant(side, tmp_path)
    masked_version(side, gid)
    # A fetch aimed at the raw dataset: the custodian's release is refused by the
    # chain (embedded) or is the masked key, which does not open the raw payload.
    with pytest.raises(SharechainError):
        side.plane(GRANTEE).fetch(GRANTEE, gid, tmp_path / "raw", dataset=raw)
    assert not (tmp_path / "raw").exists()
    # A release of the raw epoch recorded under the grant is refused.
    body = {
        "grant": gid,
        "to": GRANTEE,
        "dataset": raw,
        "epoch": 1,
        "wrapped_key_digest": bytes(32),
        "session": "raw",
    }
    with pytest.raises(TransactionRejectedError) as refused:
        side.submit(GRANTEE, GRANT_KEY_RELEASE, body)
    assert refused.value.code == "masked"
    # The raw blob (byte ranges, replicas) is ciphertext: no row of the table is in it.
    plain = src.read_bytes()
    for org in (OWNER, GRANTEE):
        for blob in side.blobs(raw, org):
            sealed = blob.read_bytes()
            assert plain[:40] not in sealed and ROWS[7][1].encode() not in sealed


def test_on_the_nodes_a_masked_grant_waits_for_the_owners_node(
    remote_side: RemoteSide, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Threshold custody: the custodians could release the raw key without the owner,
    so the grant waits; the owner's node masks when it is back (its start-up pass)."""
    side = remote_side
    monkeypatch.setattr(MaskingJob, "produce", lambda self, gid: None)  # the owner's node is down
    form = profile_form(PROFILE)
    try:
        side.submit(OWNER, PROFILE_REGISTER, {"name": "ages", "profile": form})
    except TransactionRejectedError as exc:
        assert exc.code == "duplicate"
    policy = {"masking": {"confidential": profile_digest(PROFILE).hex()}}
    listing = Listing(
        title="patients", classification="confidential", policy=policy, custody="threshold"
    )
    src = raw_table(tmp_path)
    pub = side.plane(OWNER).publish(OWNER, src, listing, inline_limit=0)
    side.sync()
    gid = grant_for(side, pub.dataset)
    time.sleep(0.5)  # the jobs have seen the commit
    assert masking_state(side.plane(GRANTEE).grant(gid).grant) == WAITING
    with pytest.raises(ReleaseRefusedError) as refused:
        side.plane(GRANTEE).fetch(GRANTEE, gid, tmp_path / "early")
    assert refused.value.code == "masked"
    # The raw blob over HTTP, byte ranges included: ciphertext, whoever asks.
    client = side.plane(GRANTEE).client
    assert client is not None
    path = f"/v1/blobs/{pub.digests.ciphertext_sha256.hex()}"
    ranged = client.http.send(client.signed("GET", path, headers={"Range": "bytes=0-4095"}))
    assert ranged.status_code == 206 and ROWS[3][1].encode() not in ranged.content

    monkeypatch.undo()  # the owner's node is back: its start-up pass finds the grant
    node = side.nodes[OWNER]
    job = MaskingJob(node, lambda: vault_of(node), blobs_of(node), os.urandom)
    assert job.waiting() == [gid]
    job.produce(gid)
    side.sync()
    grant = side.plane(GRANTEE).grant(gid).grant
    assert grant.source == pub.dataset and job.waiting() == []
    side.plane(GRANTEE).fetch(GRANTEE, gid, tmp_path / "out.csv")
    assert "Person" not in (tmp_path / "out.csv").read_text()
