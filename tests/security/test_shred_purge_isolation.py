"""Attack: purge a dataset of your own to delete another member's payload.

The shredder deletes the sealed blobs a purged dataset names. Before digests
had owners, member B could register a dataset (and a key epoch) naming member
A's ciphertext digest, purge it, and every node would delete A's bytes. Now
the contracts refuse the claim, and the shredder deletes a blob only when no
live dataset of any member names it, so even a chain recorded before the fix
(simulated here by switching the claim check off) keeps A's payload.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from security_kit import Net, consortium, digest

from sharechain.contracts import digests
from sharechain.contracts.ids import derive_id
from sharechain.sharing import fetch, publish, purge
from sharechain.sharing.local import local_ports
from sharechain.sharing.records import Listing, Published
from sharechain.storage.blobs import BlobStore


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    with consortium(tmp_path) as n:
        yield n


def _publish(net: Net, owner: str, tmp_path: Path, name: str) -> Published:
    src = tmp_path / name
    src.write_bytes(os.urandom(40_000))
    return publish.publish(local_ports(net.emb), owner, src, Listing(name), inline_limit=0)


def _blobs(net: Net) -> BlobStore:
    return BlobStore(net.emb.datadir.blob_dir)


def _name_as_b(net: Net, cipher: bytes, root: bytes) -> str:
    body = {
        "title": "b's copy",
        "plaintext_digest": digest("anything"),
        "ciphertext_digest": cipher,
        "segment_root": root,
        "size": 1,
    }
    ds = derive_id("dataset", net.send("hospital-b", "dataset.register", body).tx_id)
    epoch = {"dataset": ds, "epoch": 1, "ciphertext_digest": cipher, "segment_root": root}
    net.send("hospital-b", "dataset.epoch", epoch | {"holders": []})
    return ds


def test_b_cannot_name_as_payload_the_blob_of_a(net: Net, tmp_path: Path) -> None:
    pub = _publish(net, "hospital-a", tmp_path, "a.csv")
    cipher = pub.digests.ciphertext_sha256
    body = {
        "title": "b's copy",
        "plaintext_digest": digest("anything"),
        "ciphertext_digest": cipher,
        "size": 1,
    }
    r = net.send("hospital-b", "dataset.register", body)
    assert r.code == "denied" and pub.dataset in r.reason


def test_purging_bs_dataset_never_deletes_as_bytes(
    net: Net, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pub = _publish(net, "hospital-a", tmp_path, "a.csv")
    cipher = pub.digests.ciphertext_sha256
    gid = net.granted(pub.dataset, "clinic-c")
    # A chain recorded before digests had owners: B's dataset names A's payload.
    with monkeypatch.context() as m:
        m.setattr(digests, "claim", lambda *a, **k: None)
        ds_b = _name_as_b(net, cipher, pub.digests.segment_root)
    assert net.state(f"epoch/{ds_b}/000000000001")["ciphertext_digest"] == cipher
    own_b = _publish(net, "hospital-b", tmp_path, "b.csv")

    purge.purge(local_ports(net.emb), "hospital-b", ds_b, reason="mine to purge")
    purge.purge(local_ports(net.emb), "hospital-b", own_b.dataset, reason="mine to purge")

    assert _blobs(net).has(cipher), "A's payload was deleted by B's purge"
    assert not _blobs(net).has(own_b.digests.ciphertext_sha256)
    out = tmp_path / "fetched.csv"
    fetch.fetch(local_ports(net.emb), "clinic-c", gid, out)
    assert out.read_bytes() == (tmp_path / "a.csv").read_bytes()


def test_the_owners_own_purge_still_deletes_its_payload(net: Net, tmp_path: Path) -> None:
    pub = _publish(net, "hospital-a", tmp_path, "a.csv")
    done = purge.purge(local_ports(net.emb), "hospital-a", pub.dataset, reason="retention ended")
    assert done.blobs_deleted == 1
    assert not _blobs(net).has(pub.digests.ciphertext_sha256)
