"""Chunked blob receiving below the node: storage outcomes, their wire answers, byte ranges.

`sharechain.storage.uploads` says what a chunk came to; `sharechain.api.chunk_replies`
is how the node answers it; `sharechain.api.ranges` is the one `Range` a node serves.
The routes over them are tested at a running node in `tests/node/test_delivery.py`.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from sharechain.api.chunk_replies import chunk_reply
from sharechain.api.ranges import parse_range
from sharechain.errors import TooLargeError
from sharechain.storage.blobs import BlobStore
from sharechain.storage.uploads import (
    DigestMismatch,
    Outcome,
    Received,
    Stored,
    Uploads,
    WriteFailed,
    WrongOffset,
)


def test_a_blob_received_in_chunks_is_kept_only_under_its_digest(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    data = bytes(range(256)) * 1000
    digest = hashlib.sha256(data).digest()
    uploads = Uploads()

    async def run() -> list[object]:
        return [
            await uploads.receive_chunk(store, digest, 0, data[:100_000], False),
            await uploads.receive_chunk(store, digest, 200_000, data[200_000:], True),
            await uploads.receive_chunk(store, digest, 100_000, data[100_000:], True),
            await uploads.receive_chunk(store, hashlib.sha256(b"y").digest(), 0, b"x", True),
        ]

    received, skipped, stored, mismatch = asyncio.run(run())
    assert received == Received(digest.hex(), 100_000)
    assert skipped == WrongOffset(digest.hex(), 100_000)
    assert stored == Stored(digest, len(data))
    assert isinstance(mismatch, DigestMismatch)
    assert store.read_bytes(digest) == data
    assert not list((tmp_path / "blobs" / ".incoming").glob("upload-*"))
    uploads.close()


def test_a_streamed_final_chunk_must_name_its_digest(tmp_path: Path) -> None:
    uploads = Uploads()
    with pytest.raises(ValueError, match="names the digest"):
        asyncio.run(uploads.receive_streamed(BlobStore(tmp_path), "ab" * 8, None, 0, b"", True))


def test_open_uploads_per_member_are_bounded(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    uploads = Uploads(per_member=1)
    uploads.admit(store, "a" * 64, "bank-a")
    uploads.admit(store, "b" * 64, "bank-b")  # another member has its own share
    asyncio.run(uploads.receive_chunk(store, bytes.fromhex("a" * 64), 0, b"x", False))
    with pytest.raises(TooLargeError, match="bank-a has 1 uploads open"):
        uploads.admit(store, "c" * 64, "bank-a")
    uploads.close()


@pytest.mark.parametrize(
    ("outcome", "status", "kind"),
    [
        (Received("ab", 3), 200, None),
        (Stored(b"\x01" * 32, 3), 200, None),
        (WrongOffset("ab", 3), 409, "conflict"),
        (DigestMismatch("ab"), 422, "digest_mismatch"),
        (WriteFailed("ab", OSError(28, "No space left on device")), 503, "unavailable"),
    ],
)
def test_each_outcome_has_its_status_and_body(outcome: Outcome, status: int, kind: str) -> None:
    got, body = chunk_reply(outcome)
    assert got == status
    dumped = body.model_dump()
    assert dumped.get("error") == kind
    if isinstance(outcome, WrongOffset):
        assert dumped["received"] == 3 and "send from there" in dumped["detail"]
    if isinstance(outcome, Stored):
        assert dumped == {"digest": "01" * 32, "stored": True, "size": 3}


@pytest.mark.parametrize(
    ("header", "span"),
    [
        (None, None),
        ("bytes=0-9", (0, 10)),
        ("bytes=90-", (90, 100)),
        ("bytes=-10", (90, 100)),
        ("bytes=95-200", (95, 100)),
    ],
)
def test_one_byte_range_is_served(header: str | None, span: tuple[int, int] | None) -> None:
    assert parse_range(header, 100) == span


@pytest.mark.parametrize(
    "header", ["bytes=100-", "bytes=-0", "bytes=-", "bytes=0-1,5-6", "items=0-1"]
)
def test_a_range_that_selects_nothing_is_refused(header: str) -> None:
    with pytest.raises(ValueError):
        parse_range(header, 100)
