"""Attack: fill a node's log with refused requests, or its disk with abandoned uploads.

Defence: the node logs refused requests at most `logs_per_minute` times per
source; leftover upload parts are swept at start (streamed ones, which cannot
resume, and any untouched for a day) and every minute while it runs.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import httpx
import pytest
from api_helpers import Consortium, serve

from sharechain.api.quotas import Limits
from sharechain.storage.blobs import BlobStore
from sharechain.storage.uploads import STALE, Uploads


def test_refused_requests_are_logged_at_most_n_times_per_source(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    limits = Limits(logs_per_minute=3, unsigned_per_minute=1000)
    running = serve(Consortium.make(tmp_path), "hospital-a", limits=limits)
    try:
        with caplog.at_level(logging.INFO, logger="sharechain.node.api"):
            codes = {httpx.get(f"{running.url}/v1/status").status_code for _ in range(20)}
        lines = [r for r in caplog.records if "refused a request from 127.0.0.1" in r.message]
    finally:
        running.stop()
    assert codes == {401}
    assert len(lines) == 3


def test_leftover_upload_parts_are_swept(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    incoming = store.root / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    streamed = incoming / f"upload-id-{'a' * 32}.part"
    abandoned = incoming / f"upload-{'b' * 64}.part"
    resumable = incoming / f"upload-{'c' * 64}.part"
    for part in (streamed, abandoned, resumable):
        part.write_bytes(b"x" * 100)
    old = time.time() - STALE - 60
    os.utime(abandoned, (old, old))
    uploads = Uploads()
    assert uploads.sweep(store, at_start=True) == 2
    assert not streamed.exists() and not abandoned.exists() and resumable.exists()
    # While running: the resumable part ages past STALE and the next sweep takes it.
    later = time.time() + STALE + 120
    assert uploads.sweep(store, now=lambda: later) == 1
    assert not resumable.exists()
    assert uploads.sweep(store, now=lambda: later + 1) == 0  # at most once a minute


def test_a_node_sweeps_leftovers_when_it_starts(tmp_path: Path) -> None:
    consortium = Consortium.make(tmp_path)
    incoming = consortium.node_dir("hospital-a") / "blobs" / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    streamed = incoming / f"upload-id-{'d' * 32}.part"
    streamed.write_bytes(b"partial")
    running = serve(consortium, "hospital-a")
    try:
        assert BlobStore(running.node.datadir.blob_dir).root == incoming.parent
        assert not streamed.exists()
    finally:
        running.stop()
