"""One member's replicas cannot take more than its quota of another member's disk.

Every node keeps a replica of the current blob of every active dataset, and an
owner registers datasets as large as it likes; without a limit one member could
fill the others' disks until their full-disk guards stop them taking work. Each
node gives every other organisation a quota (`sharing.replica_quota`): a fetch
past it waits until the owner's blobs here shrink, and a replica the owner
pushes past it, or past what its dataset's sealed payload can be, is refused
before a byte is written. Real nodes; a real HTTP server plays the owner's node
where the node fetches.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))

from liar_server import Quiet, serving
from node_helpers import Consortium, Running, run_node
from test_blob_fetch_bounded import SIZE, _job, _register
from test_snapshot_start import _with_settings

from sharechain.api.transfer import upload_blob
from sharechain.crypto.stream import (
    DEFAULT_SEGMENT_SIZE,
    HEADER_SIZE,
    StreamHeader,
    sealed_size,
)
from sharechain.errors import ConfigError, TooLargeError
from sharechain.ledger.transactions import sign_transaction
from sharechain.sharing import blob_fetch
from sharechain.sharing.remote_blobs import RemoteBlobs
from sharechain.sharing.replica_quota import ReplicaQuota
from sharechain.storage.blobs import BlobStore

OWNER, NODE = "hospital-a", "bank-b"
SEALED = sealed_size(SIZE, DEFAULT_SEGMENT_SIZE)
"""The size of a sealed payload of the datasets registered here."""
QUOTA = SEALED * 3 // 2
"""Room for one of the owner's blobs, not two."""


def _sealed(length: int = SEALED) -> bytes:
    """A blob shaped like a sealed payload (a stream header, then bytes): the node checks
    its length and digest, not its contents."""
    header = StreamHeader(1, 1, DEFAULT_SEGMENT_SIZE, os.urandom(32)).encode()
    return header + os.urandom(length - HEADER_SIZE)


@dataclass
class OwnerNode:
    url: str = ""
    blobs: dict[str, bytes] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)
    """The blobs asked for, in hex, in order."""


@pytest.fixture
def owner() -> Iterator[OwnerNode]:
    state = OwnerNode()

    class Handler(Quiet):
        def do_GET(self) -> None:
            if self.path.startswith("/v1/health"):
                self._send(json.dumps({"status": "ok", "org": OWNER}).encode(), "application/json")
                return
            name = self.path.removeprefix("/v1/blobs/").partition("?")[0]
            state.asked.append(name)
            if name not in state.blobs:
                self.send_error(404)
                return
            self._send(state.blobs[name], "application/octet-stream")

        def _send(self, data: bytes, kind: str) -> None:
            self.send_response(200)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    with serving(Handler) as state.url:
        yield state


@pytest.fixture
def consortium(tmp_path: Path) -> Consortium:
    return Consortium.make(tmp_path)


def _offer(owner: OwnerNode) -> bytes:
    blob = _sealed()
    digest = hashlib.sha256(blob).digest()
    owner.blobs[digest.hex()] = blob
    return digest


def _holds(running: Running, digest: bytes) -> bool:
    return BlobStore(running.node.datadir.blob_dir).has(digest)


def _wait(what: str, cond: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_fetch_past_the_owner_s_quota_waits_until_a_purge_makes_room(
    consortium: Consortium, owner: OwnerNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blob_fetch, "RECHECK", 0.5)
    _with_settings(consortium.node_dir(NODE), replica_quota_bytes=QUOTA)
    running = run_node(consortium, NODE, max_wait=0.005, peers=((OWNER, owner.url),))
    try:
        first, second = _offer(owner), _offer(owner)
        _, ds, _ = _register(consortium, running, first)
        _wait("the first replica", lambda: _holds(running, first))
        _register(consortium, running, second)
        job = _job(running, second, lambda j: j["state"] == "over_quota")
        assert "would pass their quota" in job["error"] and f"{QUOTA} allowed" in job["error"]
        assert job["attempts"] == 0
        assert second.hex() not in owner.asked  # refused before asking anyone
        time.sleep(1.5)  # looked at again, still no room: still waiting, nothing fetched
        assert not _holds(running, second) and second.hex() not in owner.asked
        with running.client() as client:
            fetch = client.status()["data_plane"]["blob_fetch"]
            metrics = client.http.get("/metrics").text
        assert fetch["over_quota"] == 1
        assert "sharechain_blob_fetch_over_quota 1.0" in metrics
        assert running.node.disk.full is None

        # The owner purges its first dataset: the node shreds its replica, and the
        # waiting fetch then finds room.
        with running.client(OWNER) as client:
            purge = {"dataset": ds, "reason": "consent withdrawn"}
            tx = sign_transaction(consortium.keys(OWNER).signing, "dataset.purge", OWNER, purge)
            client.submit_checked(tx.raw)
        _wait("the second replica after the purge", lambda: _holds(running, second))
        assert not _holds(running, first)
    finally:
        running.server.stop()
        running.node.stop()


def test_a_pushed_replica_is_bounded_by_its_dataset_and_the_quota(
    consortium: Consortium, tmp_path: Path
) -> None:
    _with_settings(consortium.node_dir(NODE), replica_quota_bytes=QUOTA)
    running = run_node(consortium, NODE, max_wait=0.005)  # no peers: it fetches nothing
    incoming = running.node.datadir.blob_dir / ".incoming"

    def push(blob: bytes, digest: bytes | None = None, chunk: int = 1 << 20) -> bytes:
        digest = digest or hashlib.sha256(blob).digest()
        path = tmp_path / digest.hex()
        path.write_bytes(blob)
        with running.client(OWNER) as client:
            upload_blob(client, digest, path, chunk=chunk)
        return digest

    def registered(blob: bytes) -> bytes:
        digest = hashlib.sha256(blob).digest()
        _register(consortium, running, digest)
        return digest

    try:
        # Longer than a sealed payload of the dataset's 100 kB can be: refused at once.
        long = _sealed(SEALED + 4096)
        digest = registered(long)
        with pytest.raises(TooLargeError, match=f"passes the {SEALED} bytes a sealed payload"):
            push(long, digest)
        # The same in small chunks: refused at the chunk that passes the bound.
        with pytest.raises(TooLargeError, match="passes the"):
            push(long, digest, chunk=32 * 1024)
        assert not _holds(running, digest)
        # The refused upload's session ends and its part goes (no open file left behind).
        assert not list(incoming.glob(f"upload-{digest.hex()}.part"))

        # Not a sealed stream at all.
        junk = os.urandom(SEALED)
        with pytest.raises(TooLargeError, match="does not begin as a sealed stream"):
            push(junk, registered(junk))

        # One replica fits the quota; a second of the same owner does not.
        first, second = _sealed(), _sealed()
        assert _holds(running, push(first, registered(first)))
        second_digest = registered(second)
        with pytest.raises(TooLargeError, match="would pass their quota") as refused:
            push(second, second_digest)
        assert f"{SEALED} bytes held" in str(refused.value)
        assert not _holds(running, second_digest)
        assert not (incoming / f"upload-{second_digest.hex()}.part").exists()
        # The node's own organisation is not held to a quota on its own node.
        own = _sealed()
        own_digest = hashlib.sha256(own).digest()
        path = tmp_path / "own"
        path.write_bytes(own)
        with running.client(NODE) as client:
            upload_blob(client, own_digest, path)
        assert _holds(running, own_digest)
        assert running.node.disk.full is None and running.node.halted is None
    finally:
        running.server.stop()
        running.node.stop()


def test_without_a_setting_each_member_gets_a_fair_share_of_the_disk(
    consortium: Consortium,
) -> None:
    running = run_node(consortium, NODE, max_wait=0.005)
    try:
        datadir = running.node.datadir
        quota = ReplicaQuota.of(running.node.store, datadir, NODE)
        total = shutil.disk_usage(datadir.blob_dir).total
        assert quota.quota() == total // 3  # three active members on this chain
        assert quota.left(NODE, b"") is None  # its own blobs: no limit
        assert quota.left(OWNER, b"") == total // 3  # nothing of the owner's held yet
    finally:
        running.server.stop()
        running.node.stop()


@pytest.mark.parametrize("bad", [-1, "lots", 1.5, True])
def test_a_bad_quota_setting_is_refused_at_start(consortium: Consortium, bad: object) -> None:
    _with_settings(consortium.node_dir(NODE), replica_quota_bytes=bad)
    with pytest.raises(ConfigError, match=r"settings\.replica_quota_bytes is .*whole number"):
        run_node(consortium, NODE)


def test_the_owner_s_tools_warn_when_a_node_refuses_a_replica_and_go_on(
    consortium: Consortium, tmp_path: Path
) -> None:
    """A custodian's node at the owner's quota refuses the copy the owner's tools push
    after a publish; the publish has committed, so the tools say so and go on."""
    _with_settings(consortium.node_dir(NODE), replica_quota_bytes=0)
    running = run_node(consortium, NODE, max_wait=0.005)
    warnings: list[str] = []
    try:
        blob = _sealed()
        digest, _, epoch_tx = _register(consortium, running, hashlib.sha256(blob).digest())
        (tmp_path / "work").mkdir()
        with running.client(OWNER) as client:
            blobs = RemoteBlobs(client, {NODE: client}, OWNER, tmp_path / "work", warnings.append)
            blobs._copies[digest] = tmp_path / "sealed"
            blobs._copies[digest].write_bytes(blob)
            blobs.replicate(digest, (NODE,), OWNER, after=epoch_tx)
        assert len(warnings) == 1, warnings
        assert f"{NODE}'s node did not take the replica" in warnings[0]
        assert "would pass their quota" in warnings[0] and "0 allowed" in warnings[0]
        assert not _holds(running, digest)
    finally:
        running.server.stop()
        running.node.stop()
