"""The nodes' own data-plane upkeep, on real node processes (solo ordering, loopback).

Four organisations: hospital-a orders, hospital-b owns the data, bank-c is the
grantee (its node is down while hospital-b publishes) and the regulator
supervises and custodies the key. Nobody asks a node to fetch or to shred:
every node does it by itself after it commits the epoch or the purge.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sharechain.api.client import NodeClient
from sharechain.contracts import derive_id
from sharechain.ledger.transactions import sign_transaction
from sharechain.node.launcher import LocalNetwork
from sharechain.sharing.records import Published
from sharechain.sharing.remote import fetch_remote, publish_remote
from sharechain.storage.blobs import BlobStore
from sharechain.storage.vault import VAULT_DIR

ORDERER, OWNER, GRANTEE, SUPERVISOR = "hospital-a", "hospital-b", "bank-c", "regulator"


def wait_until(check: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not met within {timeout:.0f}s: {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    base = tmp_path_factory.mktemp("upkeep") / "net"
    network = LocalNetwork(base, orgs=4, node_options=("--log-level", "info"))
    network.up(timeout=90)
    try:
        yield network
    finally:
        network.down()


def clients(net: LocalNetwork, as_org: str, *orgs: str) -> dict[str, NodeClient]:
    key = net.keys(as_org).signing
    return {o: NodeClient(net.spec(o).url, as_org, key, timeout=60.0) for o in orgs}


def submit(net: LocalNetwork, org: str, type: str, payload: dict[str, object]) -> bytes:
    stx = sign_transaction(net.keys(org).signing, type, org, payload)
    with net.client(org) as c:
        return c.submit_checked(stx.raw).tx_id


def blob_here(net: LocalNetwork, org: str, digest: bytes) -> bool:
    return BlobStore(net.spec(org).data_dir / "blobs").has(digest)


def vault_here(net: LocalNetwork, org: str, ds: str) -> Path:
    return net.spec(org).data_dir / VAULT_DIR / org / ds


def data_plane(net: LocalNetwork, org: str) -> dict[str, object]:
    with net.client(org) as c:
        body: dict[str, object] = c.status()["data_plane"]
    return body


def metric(net: LocalNetwork, org: str, name: str) -> float:
    with net.client(org) as c:
        text = c.metrics()
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    return values[0] if values else 0.0


@pytest.fixture(scope="module")
def published(
    net: LocalNetwork, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Published, Path]:
    """hospital-b publishes (supervisor custody) while bank-c's node is down."""
    net.stop_node(GRANTEE)
    src = tmp_path_factory.mktemp("files") / "ward.csv"
    src.write_bytes(b"ward,value\n" + os.urandom(3_000_000))
    peers = clients(net, OWNER, OWNER, SUPERVISOR)
    try:
        pub = publish_remote(
            peers[OWNER], net.keys(OWNER), src, peers=peers, title="ward", custody="supervisor"
        )
    finally:
        for c in peers.values():
            c.close()
    assert pub.holders == (SUPERVISOR,) and not pub.inline
    return pub, src


def test_a_node_down_during_publish_fetches_the_blob_and_serves_without_the_owner(
    net: LocalNetwork, published: tuple[Published, Path], tmp_path: Path
) -> None:
    pub, src = published
    digest = pub.digests.ciphertext_sha256
    assert not blob_here(net, GRANTEE, digest)
    # hospital-a was up but neither owner nor custodian: nobody pushed it a replica.
    wait_until(lambda: blob_here(net, ORDERER, digest), what="hospital-a fetches its replica")
    net.start_node(GRANTEE)
    net.wait_ready([GRANTEE], timeout=60)
    wait_until(lambda: blob_here(net, GRANTEE, digest), what="bank-c fetches after restart")
    done = data_plane(net, GRANTEE)["blob_fetch"]
    assert isinstance(done, dict) and done["done"] >= 1
    assert [j["digest"] for j in done["recent"]] == [digest.hex()]
    assert metric(net, GRANTEE, "sharechain_blob_fetch_bytes_total") > 3_000_000

    # A grant, then the owner's node goes offline: bank-c still gets the data.
    rid = derive_id(
        "request",
        submit(net, GRANTEE, "access.request",
               {"dataset": pub.dataset, "purpose": "research", "duration": 86_400_000}),
    )  # fmt: skip
    submit(net, SUPERVISOR, "access.approve", {"request": rid})
    gid = derive_id("grant", submit(net, OWNER, "access.approve", {"request": rid}))
    net.stop_node(OWNER)
    try:
        reach = clients(net, GRANTEE, GRANTEE, SUPERVISOR, ORDERER)
        try:
            head = reach[ORDERER].status()["height"]
            wait_until(lambda: reach[GRANTEE].status()["height"] >= head, what="bank-c syncs")
            got = fetch_remote(reach, net.keys(GRANTEE), gid, tmp_path / "ward.csv")
        finally:
            for c in reach.values():
                c.close()
        assert (tmp_path / "ward.csv").read_bytes() == src.read_bytes()
        assert got.releases[0].custodian == SUPERVISOR
    finally:
        net.start_node(OWNER)
        net.wait_ready([OWNER], timeout=60)


def test_every_node_shreds_on_commit_without_being_asked(
    net: LocalNetwork, published: tuple[Published, Path]
) -> None:
    pub, _ = published
    digest, ds = pub.digests.ciphertext_sha256, pub.dataset
    orgs = (ORDERER, OWNER, GRANTEE, SUPERVISOR)
    if not net.is_running(GRANTEE):  # `published` stopped it; run alone, nothing restarted it
        net.start_node(GRANTEE)
        net.wait_ready([GRANTEE], timeout=60)
    wait_until(lambda: all(blob_here(net, o, digest) for o in orgs), what="replicas everywhere")
    assert vault_here(net, OWNER, ds).exists() and vault_here(net, SUPERVISOR, ds).exists()
    # Only the transaction: no `POST /v1/datasets/{id}/shred`, no later request.
    submit(net, OWNER, "dataset.purge", {"dataset": ds, "reason": "consent withdrawn"})

    def gone() -> bool:
        return not any(blob_here(net, o, digest) or vault_here(net, o, ds).exists() for o in orgs)

    wait_until(gone, timeout=30, what="every node shreds")
    for org in orgs:
        shredded = data_plane(net, org)["shredded"]
        assert isinstance(shredded, list) and ds in [r["dataset"] for r in shredded]
        assert metric(net, org, "sharechain_shredded_datasets_total") >= 1
    with net.client(OWNER) as c:  # asking afterwards reports what the node did by itself
        body = c.http.post(f"/v1/datasets/{ds}/shred").json()
    assert (body["destroyed"], body["blobs_deleted"]) == (1, 1)

    # A crash between the commit and the shredding leaves the material on disk: the
    # node finishes the job when it starts again.
    spec = net.spec(SUPERVISOR)
    net.kill_node(SUPERVISOR)
    store = BlobStore(spec.data_dir / "blobs")
    store.path(digest).parent.mkdir(exist_ok=True)
    store.path(digest).write_bytes(b"sealed bytes left behind")
    vault_here(net, SUPERVISOR, ds).mkdir(parents=True)
    (vault_here(net, SUPERVISOR, ds) / "000000000001.key").write_bytes(b"\x01" * 100)
    net.start_node(SUPERVISOR)
    net.wait_ready([SUPERVISOR], timeout=60)
    wait_until(
        lambda: not store.has(digest) and not vault_here(net, SUPERVISOR, ds).exists(),
        timeout=30,
        what="the restarted node finishes shredding",
    )
    recovered = data_plane(net, SUPERVISOR)["shredded"]
    assert isinstance(recovered, list)
    assert [(r["dataset"], r["recovered"]) for r in recovered] == [(ds, True)]
    assert "stopped before shredding" in spec.log_path.read_text()
