"""Tests of the content-addressed blob store: layout, verification, atomicity, bad input."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharechain.crypto.stream import encrypt_stream
from sharechain.errors import EncodingError, IntegrityError, NotFoundError
from sharechain.storage import BlobStore, parse_digest


def test_put_and_read_round_trip(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = os.urandom(3 * 1024 * 1024 + 17)  # more than one copy chunk
    digest = store.put_bytes(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.path(digest) == tmp_path / digest[:2] / digest[2:]
    assert store.path(digest).read_bytes() == data
    assert store.has(digest) and store.has(bytes.fromhex(digest))
    assert store.size(digest) == len(data)
    assert store.read_bytes(digest) == data
    out = io.BytesIO()
    assert store.read_stream(digest, out) == len(data)
    assert out.getvalue() == data
    with store.open(digest) as reader:
        assert reader.read() == data
    store.verify(digest)
    assert list(store.digests()) == [digest]


def test_empty_blob(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put_bytes(b"")
    assert digest == hashlib.sha256(b"").hexdigest()
    assert store.read_bytes(digest) == b""
    assert store.size(digest) == 0


def test_same_content_is_stored_once(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    assert store.put_bytes(b"twice") == store.put_bytes(b"twice")
    assert len(list(store.digests())) == 1
    assert list((tmp_path / ".incoming").iterdir()) == []


def test_sealed_stream_is_addressed_by_its_ciphertext_digest(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    sealed = io.BytesIO()
    digests = encrypt_stream(bytes(32), io.BytesIO(b"payload" * 1000), sealed, epoch=1)
    sealed.seek(0)
    assert store.put_stream(sealed) == digests.ciphertext_sha256.hex()


class ReadOnly:
    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._data.read(min(n, 5))


def test_put_from_a_source_without_readinto(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put_stream(ReadOnly(b"abcdefghijklmnop"))  # type: ignore[arg-type]  # duck-typed
    assert store.read_bytes(digest) == b"abcdefghijklmnop"


@settings(max_examples=25, deadline=None)
@given(data=st.binary(max_size=5000), start=st.integers(0, 5000), length=st.integers(0, 5000))
def test_range_reads(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, start: int, length: int
) -> None:
    store = BlobStore(tmp_path_factory.mktemp("ranges"))
    digest = store.put_bytes(data)
    start = min(start, len(data))
    end = min(start + length, len(data))
    assert store.read_range(digest, start, end) == data[start:end]


def test_range_outside_the_blob(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put_bytes(b"0123456789")
    for start, end in [(-1, 3), (4, 3), (0, 11), (11, 11)]:
        with pytest.raises(NotFoundError, match="outside blob"):
            store.read_range(digest, start, end)


# --- corruption is caught on read --------------------------------------------------------------


def corrupt(store: BlobStore, digest: str, offset: int = 0) -> None:
    path = store.path(digest)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def test_corrupt_blob_is_reported_by_name(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put_bytes(os.urandom(5000))
    corrupt(store, digest, 4321)
    with pytest.raises(IntegrityError, match=digest):
        store.read_bytes(digest)
    with pytest.raises(IntegrityError, match=digest):
        store.read_stream(digest, io.BytesIO())
    with pytest.raises(IntegrityError, match=digest):
        store.verify(digest)
    with store.open(digest) as reader, pytest.raises(IntegrityError, match=digest):
        reader.read()


def test_truncated_or_extended_blob_is_reported(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    first = store.put_bytes(b"a" * 100)
    second = store.put_bytes(b"b" * 100)
    store.path(first).chmod(0o644)
    store.path(first).write_bytes(b"a" * 99)
    store.path(second).chmod(0o644)
    store.path(second).write_bytes(b"b" * 101)
    for digest in (first, second):
        with pytest.raises(IntegrityError, match=digest):
            store.read_bytes(digest)


# --- absent blobs and bad names ----------------------------------------------------------------


def test_missing_blob(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    missing = "ab" * 32
    assert not store.has(missing)
    with pytest.raises(NotFoundError, match=missing):
        store.open(missing)
    with pytest.raises(NotFoundError, match=missing):
        store.size(missing)
    with pytest.raises(NotFoundError):
        store.read_bytes(missing)
    with pytest.raises(NotFoundError):
        store.read_range(missing, 0, 0)


def test_delete(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put_bytes(b"purge me")
    assert store.delete(digest) is True
    assert not store.has(digest)
    assert store.delete(digest) is False
    assert list(store.digests()) == []


@pytest.mark.parametrize(
    "bad",
    ["", "ab", "g" * 64, "A" * 64, "a" * 63, "a" * 65, "../" + "a" * 61, b"short", b"\x00" * 33],
)
def test_bad_digests_are_rejected_clearly(tmp_path: Path, bad: str | bytes) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(EncodingError, match="blob digest"):
        store.has(bad)
    with pytest.raises(EncodingError):
        store.open(bad)
    with pytest.raises(EncodingError):
        parse_digest(bad)


# --- crashes leave nothing half-written ---------------------------------------------------------


class Exploding(io.RawIOBase):
    """A source that fails after handing out some bytes, like a dropped connection."""

    def __init__(self) -> None:
        self._sent = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]  # narrower buffer type than RawIOBase's
        if self._sent:
            raise ConnectionError("peer went away")
        self._sent = True
        memoryview(buffer)[:10] = b"0123456789"
        return 10


def test_failed_write_leaves_nothing_visible(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(ConnectionError):
        store.put_stream(Exploding())  # type: ignore[arg-type]  # a RawIOBase, not typed BinaryIO
    assert list(store.digests()) == []
    assert list((tmp_path / ".incoming").iterdir()) == []


def test_crash_before_rename_leaves_nothing_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = BlobStore(tmp_path)

    def crash(src: object, dst: object) -> None:
        raise OSError("power lost")

    monkeypatch.setattr(os, "replace", crash)  # the store calls os.replace
    with pytest.raises(OSError, match="power lost"):
        store.put_bytes(b"never visible")
    assert not store.has(hashlib.sha256(b"never visible").hexdigest())
    assert list(store.digests()) == []


def test_orphaned_part_files_are_invisible_and_discarded(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    # What a killed writer leaves behind: a partial file in the incoming directory.
    (tmp_path / ".incoming" / "deadbeef.part").write_bytes(b"half a blob")
    kept = store.put_bytes(b"whole")
    assert list(store.digests()) == [kept]
    assert store.discard_incomplete() == 1
    assert list((tmp_path / ".incoming").iterdir()) == []
    assert store.read_bytes(kept) == b"whole"


def test_store_reopens_with_its_blobs(tmp_path: Path) -> None:
    digest = BlobStore(tmp_path).put_bytes(b"persisted")
    assert BlobStore(tmp_path).read_bytes(digest) == b"persisted"
