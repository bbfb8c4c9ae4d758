"""A peer serving a replica endlessly cannot fill a node's disk.

Every node fetches by itself the current blob of every active dataset from
its peers (`sharing.blob_fetch`). The blob is named by its digest, so bytes
that do not hash to it are discarded, but only at the end: a peer streaming
without end would fill the disk first, and a node whose disk is full stops
taking work (`storage.diskspace`). So the fetch is cut off once it passes what
the sealed payload of the dataset's recorded size can be, and it does not
start (or stops and deletes its part) while the disk has less than twice the
node's reserve free. Real node, real HTTP server as the liar.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))

from liar_server import Quiet, serving
from node_helpers import Consortium, Running, run_node
from test_snapshot_start import _with_settings

from sharechain.api.client import NodeClient
from sharechain.api.transfer import download_blob
from sharechain.contracts import derive_id
from sharechain.crypto.stream import DEFAULT_SEGMENT_SIZE, StreamHeader, sealed_size
from sharechain.errors import IntegrityError
from sharechain.ledger.transactions import sign_transaction

OWNER, NODE = "hospital-a", "bank-b"
SIZE = 100_000
"""The plaintext size the owner records for its dataset."""
FLOOD = 1 << 30
"""What the liar offers as the blob."""
SLACK = 32 << 20
"""What may pass beyond the bound before the node hangs up (socket buffers)."""


@dataclass
class Liar:
    url: str
    sent: list[int]
    """Bytes written per blob request."""


@pytest.fixture
def liar() -> Iterator[Liar]:
    header = StreamHeader(1, 1, DEFAULT_SEGMENT_SIZE, bytes(32)).encode()
    state = Liar("", [])

    class Handler(Quiet):
        def do_GET(self) -> None:
            if self.path.startswith("/v1/health"):  # a client asks whose node it is
                data = json.dumps({"status": "ok", "org": OWNER}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if not self.path.startswith("/v1/blobs/"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("content-type", "application/octet-stream")
            self.send_header("content-length", str(FLOOD))
            self.end_headers()
            state.sent.append(0)
            chunk = bytes(1 << 20)
            with contextlib.suppress(OSError):  # the node hangs up
                self.wfile.write(header)
                for _ in range(FLOOD >> 20):
                    self.wfile.write(chunk)
                    state.sent[-1] += len(chunk)

    with serving(Handler) as state.url:
        yield state


@pytest.fixture
def consortium(tmp_path: Path) -> Consortium:
    return Consortium.make(tmp_path)


def _node(consortium: Consortium, liar: Liar) -> Running:
    # The owner's node is the liar: the fetch asks it first.
    return run_node(consortium, NODE, max_wait=0.005, peers=((OWNER, liar.url),))


def _register(
    consortium: Consortium, running: Running, digest: bytes | None = None, size: int = SIZE
) -> tuple[bytes, str, bytes]:
    """The owner registers a dataset of `size` bytes and records its first key epoch,
    whose blob (`digest`, random by default) this node lacks; returns the blob's
    digest, the dataset and the epoch's transaction id."""
    digest = digest or hashlib.sha256(os.urandom(16)).digest()
    root = os.urandom(32)
    payload = {
        "title": "ward",
        "description": "",
        "tags": [],
        "schema": [],
        "classification": "confidential",
        "plaintext_digest": os.urandom(32),
        "ciphertext_digest": digest,
        "size": size,
        "segment_root": root,
        "custody": "owner",
        "holders": [],
    }
    key = consortium.keys(OWNER).signing
    with running.client(OWNER) as client:
        stx = sign_transaction(key, "dataset.register", OWNER, payload)
        ds = derive_id("dataset", client.submit_checked(stx.raw).tx_id)
        epoch = {"dataset": ds, "epoch": 1, "ciphertext_digest": digest, "segment_root": root}
        stx = sign_transaction(key, "dataset.epoch", OWNER, epoch | {"holders": []})
        return digest, ds, client.submit_checked(stx.raw).tx_id


def _job(running: Running, digest: bytes, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        with running.client() as client:
            fetch = client.status()["data_plane"]["blob_fetch"]
        jobs = [j for j in fetch["jobs"] if j["digest"] == digest.hex()]
        if jobs and done(jobs[0]):
            return jobs[0]
        assert time.monotonic() < deadline, fetch
        time.sleep(0.1)


def _incoming(running: Running) -> list[str]:
    incoming = running.node.datadir.blob_dir / ".incoming"
    return sorted(p.name for p in incoming.iterdir()) if incoming.exists() else []


def test_a_replica_longer_than_its_sealed_payload_can_be_is_cut_off(
    consortium: Consortium, liar: Liar
) -> None:
    running = _node(consortium, liar)
    try:
        digest, _, _ = _register(consortium, running)
        job = _job(running, digest, lambda j: bool(j["error"]))
        assert "is longer than the" in job["error"], job
        assert "discarded" in job["error"]
        bound = sealed_size(SIZE, DEFAULT_SEGMENT_SIZE)
        assert liar.sent and max(liar.sent) < bound + SLACK
        assert not [n for n in _incoming(running) if n.startswith("fetch-")]  # nothing kept
        assert running.node.disk.full is None and running.node.halted is None
    finally:
        running.server.stop()
        running.node.stop()


def test_a_fetch_leaves_twice_the_reserve_free(
    consortium: Consortium, liar: Liar, tmp_path: Path
) -> None:
    # A reserve the node itself has free, but not twice over: the node takes
    # work, and its fetches wait for space instead of eating into the reserve.
    reserve = int(shutil.disk_usage(tmp_path).free * 0.6)
    _with_settings(consortium.node_dir(NODE), disk_reserve_bytes=reserve)
    running = _node(consortium, liar)
    try:
        assert running.node.disk.check() is None
        digest, _, _ = _register(consortium, running)
        job = _job(running, digest, lambda j: bool(j["error"]))
        assert "the fetch waits for space" in job["error"], job
        assert liar.sent == []  # refused before asking anyone
        assert running.node.disk.full is None
    finally:
        running.server.stop()
        running.node.stop()


def test_a_grantee_s_download_is_cut_off_at_the_same_bound(
    consortium: Consortium, liar: Liar, tmp_path: Path
) -> None:
    """The grantee's own fetch (`sharing.fetch` through `RemoteBlobs.source`) passes the
    dataset's recorded size too: a node it asks cannot fill the grantee's disk."""
    client = NodeClient(liar.url, NODE, consortium.keys(NODE).signing, timeout=30)
    dest = tmp_path / "payload.sealed"
    with client, pytest.raises(IntegrityError, match="is longer than the"):
        download_blob([client], os.urandom(32), dest, plain_size=SIZE)
    assert max(liar.sent) < sealed_size(SIZE, DEFAULT_SEGMENT_SIZE) + SLACK
    assert not dest.exists()
