"""Tests of the streaming AEAD: round trips, digests, every tampering, Merkle proofs, memory."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharechain.crypto import digests as sha_digests
from sharechain.crypto import stream
from sharechain.crypto.stream import (
    HEADER_SIZE,
    MAX_SEGMENT_SIZE,
    TAG_SIZE,
    StreamDigests,
    decrypt_bytes,
    decrypt_stream,
    encrypt_bytes,
    encrypt_stream,
    inclusion_proof,
    merkle_root,
    parse_header,
    sealed_size,
    segment_digests,
    segment_offset,
    verify_inclusion,
)
from sharechain.errors import ConfigError, DecryptionError, IntegrityError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
SEG = 16


def fixed_rng(n: int) -> bytes:
    return b"\x5a" * n


def seal(data: bytes, segment_size: int = SEG, epoch: int = 7) -> tuple[bytes, StreamDigests]:
    return encrypt_bytes(KEY, data, epoch=epoch, segment_size=segment_size, rng=fixed_rng)


def segments(sealed: bytes, segment_size: int = SEG) -> tuple[bytes, list[bytes]]:
    chunk = segment_size + TAG_SIZE
    body = sealed[HEADER_SIZE:]
    return sealed[:HEADER_SIZE], [body[i : i + chunk] for i in range(0, len(body), chunk)]


def assert_rejected(key: bytes, sealed: bytes) -> None:
    out = io.BytesIO()
    with pytest.raises(DecryptionError) as caught:
        decrypt_stream(key, io.BytesIO(sealed), out)
    # Opaque: every failure says the same thing.
    assert str(caught.value) == str(DecryptionError())


# --- round trips and digests -----------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG, 3 * SEG + 5])
def test_round_trip_and_digests(size: int) -> None:
    data = os.urandom(size)
    sealed, digests = seal(data)
    out = io.BytesIO()
    opened = decrypt_stream(KEY, io.BytesIO(sealed), out)
    assert out.getvalue() == data
    assert opened == digests
    assert digests.size == size
    assert digests.segment_count == max(1, -(-size // SEG))
    assert digests.plaintext_sha256 == hashlib.sha256(data).digest()
    assert digests.ciphertext_sha256 == hashlib.sha256(sealed).digest()
    assert digests.segment_root == merkle_root(segment_digests(io.BytesIO(sealed)))
    assert len(sealed) == HEADER_SIZE + size + TAG_SIZE * digests.segment_count


def test_header_layout() -> None:
    sealed, _ = seal(b"hello", epoch=0x0102030405060708)
    header = parse_header(sealed[:HEADER_SIZE])
    assert sealed[0] == 1
    assert sealed[1:9] == bytes.fromhex("0102030405060708")
    assert sealed[9:13] == SEG.to_bytes(4, "big")
    assert sealed[13:45] == b"\x5a" * 32
    assert (header.version, header.epoch, header.segment_size) == (1, 0x0102030405060708, SEG)
    assert header.encode() == sealed[:HEADER_SIZE]


def test_fresh_salt_gives_fresh_ciphertext() -> None:
    first, d1 = encrypt_bytes(KEY, b"same payload", epoch=1)
    second, d2 = encrypt_bytes(KEY, b"same payload", epoch=1)
    assert first != second
    assert d1.plaintext_sha256 == d2.plaintext_sha256
    assert d1.ciphertext_sha256 != d2.ciphertext_sha256


def test_bytes_helpers_round_trip() -> None:
    sealed, _ = encrypt_bytes(KEY, b"small record", epoch=3)
    assert decrypt_bytes(KEY, sealed) == b"small record"
    assert decrypt_bytes(KEY, sealed, expected_epoch=3) == b"small record"


def test_parallel_hashing_matches_plain_hashes() -> None:
    # 64 KiB segments take the threaded digest path.
    segment_size = 64 * 1024
    data = os.urandom(10 * segment_size + 123)
    sealed, digests = seal(data, segment_size=segment_size)
    out = io.BytesIO()
    assert decrypt_stream(KEY, io.BytesIO(sealed), out) == digests
    assert out.getvalue() == data
    assert digests.plaintext_sha256 == hashlib.sha256(data).digest()
    assert digests.ciphertext_sha256 == hashlib.sha256(sealed).digest()
    leaves = segment_digests(io.BytesIO(sealed))
    assert digests.segment_root == merkle_root(leaves)
    assert digests.segment_count == 11


class Trickle(io.RawIOBase):
    """A source that hands out at most 3 bytes per read, like a slow pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]  # narrower buffer type than RawIOBase's
        chunk = self._data.read(min(3, len(buffer)))
        memoryview(buffer)[: len(chunk)] = chunk
        return len(chunk)


class ReadOnly:
    """A source with only ``read``, no ``readinto``."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._data.read(n)


@pytest.mark.parametrize("wrap", [Trickle, ReadOnly])
def test_short_reads_give_the_same_stream(wrap: Callable[[bytes], object]) -> None:
    data = os.urandom(5 * SEG + 3)
    expected, _ = seal(data)
    out = io.BytesIO()
    encrypt_stream(KEY, wrap(data), out, epoch=7, segment_size=SEG, rng=fixed_rng)  # type: ignore[call-overload]  # duck-typed sources
    assert out.getvalue() == expected
    back = io.BytesIO()
    decrypt_stream(KEY, wrap(expected), back)  # type: ignore[call-overload]  # duck-typed sources
    assert back.getvalue() == data


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=700), segment_size=st.integers(1, 64), epoch=st.integers(0, 2**64 - 1)
)
def test_round_trip_property(data: bytes, segment_size: int, epoch: int) -> None:
    sealed, digests = encrypt_bytes(KEY, data, epoch=epoch, segment_size=segment_size)
    out = io.BytesIO()
    assert decrypt_stream(KEY, io.BytesIO(sealed), out, expected_epoch=epoch) == digests
    assert out.getvalue() == data
    assert parse_header(sealed[:HEADER_SIZE]).epoch == epoch
    assert sealed_size(len(data), segment_size) == len(sealed)  # what a fetch may receive


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=200), segment_size=st.integers(1, 40), where=st.integers(0))
def test_any_flipped_bit_is_rejected(data: bytes, segment_size: int, where: int) -> None:
    sealed, _ = encrypt_bytes(KEY, data, epoch=1, segment_size=segment_size)
    bit = where % (8 * len(sealed))
    tampered = bytearray(sealed)
    tampered[bit // 8] ^= 1 << (bit % 8)
    assert_rejected(KEY, bytes(tampered))


# --- every check, negatively -----------------------------------------------------------------


def test_wrong_key_is_rejected() -> None:
    sealed, _ = seal(b"secret" * 10)
    assert_rejected(OTHER_KEY, sealed)


def test_wrong_expected_epoch_is_rejected() -> None:
    sealed, _ = seal(b"secret", epoch=4)
    with pytest.raises(DecryptionError):
        decrypt_bytes(KEY, sealed, expected_epoch=5)


@pytest.mark.parametrize("offset", range(HEADER_SIZE))
def test_flipped_header_byte_is_rejected(offset: int) -> None:
    sealed = bytearray(seal(b"x" * 40)[0])
    sealed[offset] ^= 0x01
    assert_rejected(KEY, bytes(sealed))


@pytest.mark.parametrize("where", ["first-data", "middle-data", "tag", "last-tag"])
def test_flipped_segment_bit_is_rejected(where: str) -> None:
    sealed = bytearray(seal(b"y" * (3 * SEG + 4))[0])
    offsets = {
        "first-data": HEADER_SIZE,
        "middle-data": segment_offset(SEG, 1) + 5,
        "tag": segment_offset(SEG, 1) + SEG + 3,
        "last-tag": len(sealed) - 1,
    }
    sealed[offsets[where]] ^= 0x80
    assert_rejected(KEY, bytes(sealed))


def test_missing_final_segment_is_rejected() -> None:
    header, segs = segments(seal(b"z" * (3 * SEG))[0])
    assert_rejected(KEY, header + b"".join(segs[:-1]))


@pytest.mark.parametrize("cut", [1, TAG_SIZE, SEG])
def test_cut_inside_a_segment_is_rejected(cut: int) -> None:
    sealed = seal(b"z" * (3 * SEG + 7))[0]
    assert_rejected(KEY, sealed[:-cut])


@pytest.mark.parametrize("length", [0, 1, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + TAG_SIZE - 1])
def test_header_only_or_shorter_is_rejected(length: int) -> None:
    assert_rejected(KEY, seal(b"")[0][:length])


def test_dropped_segment_is_rejected() -> None:
    header, segs = segments(seal(b"d" * (4 * SEG))[0])
    assert_rejected(KEY, header + segs[0] + segs[2] + segs[3])


def test_duplicated_segment_is_rejected() -> None:
    header, segs = segments(seal(b"d" * (3 * SEG))[0])
    assert_rejected(KEY, header + segs[0] + segs[0] + segs[1] + segs[2])


def test_reordered_segments_are_rejected() -> None:
    header, segs = segments(seal(b"r" * (3 * SEG + 1))[0])
    assert_rejected(KEY, header + segs[1] + segs[0] + segs[2] + segs[3])


@pytest.mark.parametrize("extra", [b"\x00", b"garbage" * 3, None])
def test_trailing_bytes_are_rejected(extra: bytes | None) -> None:
    sealed = seal(b"t" * (2 * SEG))[0]
    _, segs = segments(sealed)
    assert_rejected(KEY, sealed + (segs[-1] if extra is None else extra))


def test_segment_from_another_stream_is_rejected() -> None:
    # Same key, same epoch, but a different salt: segments cannot be spliced across streams.
    first, _ = encrypt_bytes(KEY, b"a" * (2 * SEG), epoch=1, segment_size=SEG)
    second, _ = encrypt_bytes(KEY, b"a" * (2 * SEG), epoch=1, segment_size=SEG)
    header, segs = segments(first)
    _, others = segments(second)
    assert_rejected(KEY, header + segs[0] + others[1])


def test_no_unauthenticated_plaintext_is_written() -> None:
    data = bytes(range(256)) * 2
    sealed = bytearray(seal(data)[0])
    sealed[segment_offset(SEG, 2) + 1] ^= 1
    out = io.BytesIO()
    with pytest.raises(DecryptionError):
        decrypt_stream(KEY, io.BytesIO(bytes(sealed)), out)
    # Only the two segments that authenticated were released.
    assert out.getvalue() == data[: 2 * SEG]


def test_forged_header_with_huge_segment_size_is_rejected_before_allocating() -> None:
    sealed = bytearray(seal(b"q")[0])
    sealed[9:13] = (2**32 - 1).to_bytes(4, "big")
    assert_rejected(KEY, bytes(sealed))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": b"short"}, "data key"),
        ({"segment_size": 0}, "segment size"),
        ({"segment_size": stream.MAX_SEGMENT_SIZE + 1}, "segment size"),
        ({"epoch": -1}, "epoch"),
        ({"epoch": 2**64}, "epoch"),
        ({"rng": lambda n: b"\x00" * (n - 1)}, "rng"),
    ],
)
def test_bad_parameters_are_config_errors(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"key": KEY, "epoch": 1, "segment_size": SEG, "rng": fixed_rng}
    args.update(kwargs)
    key = args.pop("key")
    with pytest.raises(ConfigError, match=message):
        encrypt_stream(key, io.BytesIO(b"x"), io.BytesIO(), **args)  # type: ignore[call-overload]  # table-driven


def test_decrypt_with_short_key_is_config_error() -> None:
    with pytest.raises(ConfigError):
        decrypt_bytes(b"\x00" * 16, seal(b"x")[0])


# --- segment Merkle tree ---------------------------------------------------------------------


def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1 MTH, written recursively as in the RFC."""
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    left, right = reference_root(leaves[:k]), reference_root(leaves[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def test_merkle_root_of_nothing_is_hash_of_empty() -> None:
    assert merkle_root(()) == hashlib.sha256(b"").digest()


def test_rfc6962_root_shape() -> None:
    # A hand-computed three-leaf tree: MTH = H(1 || H(1 || L0 || L1) || L2).
    d = [hashlib.sha256(bytes([i])).digest() for i in range(3)]
    leaf = [hashlib.sha256(b"\x00" + x).digest() for x in d]
    left = hashlib.sha256(b"\x01" + leaf[0] + leaf[1]).digest()
    assert merkle_root(d) == hashlib.sha256(b"\x01" + left + leaf[2]).digest()


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17])
def test_inclusion_proofs_verify_for_every_segment(count: int) -> None:
    data = os.urandom(count * SEG - 1)
    sealed, digests = seal(data)
    assert digests.segment_count == count
    _, segs = segments(sealed)
    leaves = segment_digests(io.BytesIO(sealed))
    assert merkle_root(leaves) == reference_root(list(leaves)) == digests.segment_root
    for index, segment in enumerate(segs):
        proof = inclusion_proof(leaves, index)
        verify_inclusion(segment, index, count, proof, digests.segment_root)


def test_inclusion_proof_negatives() -> None:
    sealed, digests = seal(os.urandom(6 * SEG))
    _, segs = segments(sealed)
    leaves = segment_digests(io.BytesIO(sealed))
    root = digests.segment_root
    proof = inclusion_proof(leaves, 2)
    verify_inclusion(segs[2], 2, 6, proof, root)
    with pytest.raises(IntegrityError):
        verify_inclusion(segs[3], 2, 6, proof, root)  # another segment
    with pytest.raises(IntegrityError):
        verify_inclusion(segs[2], 3, 6, proof, root)  # wrong index
    with pytest.raises(IntegrityError):
        verify_inclusion(segs[2], 2, 9, proof, root)  # wrong count
    with pytest.raises(IntegrityError):
        verify_inclusion(segs[2], 2, 6, proof, bytes(32))  # wrong root
    with pytest.raises(IntegrityError):
        verify_inclusion(segs[2], 2, 6, (*proof[:-1], bytes(32)), root)  # tampered path
    with pytest.raises(IntegrityError):
        verify_inclusion(segs[2], 2, 6, (*proof, bytes(32)), root)  # too long
    with pytest.raises(IntegrityError):
        verify_inclusion(segs[2], 2, 6, proof[:-1], root)  # too short
    with pytest.raises(IntegrityError):
        verify_inclusion(segs[2], 6, 6, proof, root)  # out of range
    with pytest.raises(IntegrityError):
        inclusion_proof(leaves, 6)


def test_segment_digests_reject_malformed_streams() -> None:
    sealed = seal(b"m" * (2 * SEG))[0]
    with pytest.raises(IntegrityError):
        segment_digests(io.BytesIO(sealed[:10]))
    with pytest.raises(IntegrityError):
        segment_digests(io.BytesIO(sealed[: HEADER_SIZE + 3]))
    with pytest.raises(IntegrityError):
        segment_digests(io.BytesIO(sealed + b"\x01"))


# --- large payload, bounded memory -----------------------------------------------------------

LARGE_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, os, random, sys, time
    from sharechain.bench.memory import peak_rss_kib
    from sharechain.crypto.stream import decrypt_stream, encrypt_stream

    root = sys.argv[1]
    total_mib = int(sys.argv[2])
    block = random.Random(42).randbytes(1 << 20)
    plain_hash = hashlib.sha256()
    with open(os.path.join(root, "plain"), "wb") as f:
        for i in range(total_mib):
            chunk = i.to_bytes(8, "big") + block[8:]   # every MiB differs
            plain_hash.update(chunk)
            f.write(chunk)
    key = os.urandom(32)
    start = time.perf_counter()
    with open(os.path.join(root, "plain"), "rb") as src, \\
            open(os.path.join(root, "sealed"), "wb") as dst:
        sealed = encrypt_stream(key, src, dst, epoch=1)
    middle = time.perf_counter()
    with open(os.path.join(root, "sealed"), "rb") as src, \\
            open(os.path.join(root, "opened"), "wb") as dst:
        opened = decrypt_stream(key, src, dst)
    end = time.perf_counter()
    print(json.dumps({
        "expected": plain_hash.hexdigest(),
        "sealed": sealed.plaintext_sha256.hex(),
        "opened": opened.plaintext_sha256.hex(),
        "same": sealed == opened,
        "size": opened.size,
        "opened_size": os.path.getsize(os.path.join(root, "opened")),
        "encrypt_s": middle - start,
        "decrypt_s": end - middle,
        "maxrss_kib": peak_rss_kib(),
    }))
    """
)


# 512 MiB in `make test` (more than twice the memory bound: a copy of the whole payload
# in memory fails it) without writing 6 GiB beside the other workers' fsyncs; 2 GiB in
# `make soak`.
@pytest.mark.parametrize(
    "total_mib",
    [
        pytest.param(512, id="512MiB", marks=pytest.mark.slow),
        pytest.param(2048, id="2GiB", marks=pytest.mark.soak),
    ],
)
def test_a_large_round_trip_in_bounded_memory(tmp_path: Path, total_mib: int) -> None:
    done = subprocess.run(
        [sys.executable, "-c", LARGE_SCRIPT, str(tmp_path), str(total_mib)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    report = json.loads(done.stdout)
    assert report["expected"] == report["sealed"] == report["opened"]
    assert report["same"] is True
    assert report["size"] == report["opened_size"] == total_mib << 20
    # Memory, not speed: `make bench` (`aead`, `share`) reports the stream's rates.
    assert report["maxrss_kib"] < 200 * 1024, report


def test_without_digests_the_stream_is_identical_and_still_authenticated() -> None:
    key = bytes(range(32))
    data = bytes(range(256)) * 1000
    salt = bytes(32)
    sealed, digests = encrypt_bytes(key, data, epoch=3, segment_size=4096, rng=lambda n: salt)
    out = io.BytesIO()
    assert (
        encrypt_stream(
            key,
            io.BytesIO(data),
            out,
            epoch=3,
            segment_size=4096,
            rng=lambda n: salt,
            digests=False,
        )
        is None
    )
    assert out.getvalue() == sealed
    plain = io.BytesIO()
    assert decrypt_stream(key, io.BytesIO(sealed), plain, digests=False) is None
    assert plain.getvalue() == data
    assert digests.size == len(data)
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(DecryptionError):
        decrypt_stream(key, io.BytesIO(bytes(tampered)), io.BytesIO(), digests=False)


# --- the threaded pipeline ----------------------------------------------------------------------

PIPE_SEG = 64 * 1024  # the smallest segment size that takes the threaded path


def seal_both_ways(
    data: bytes, monkeypatch: pytest.MonkeyPatch, **kw: bool
) -> tuple[tuple[bytes, StreamDigests], tuple[bytes, StreamDigests]]:
    """Seal `data` serially and through the threads; returns both results."""
    results = []
    for threshold in (MAX_SEGMENT_SIZE + 1, 1):  # serial, then threaded
        monkeypatch.setattr(stream, "_PARALLEL_MIN_SEGMENT", threshold)
        results.append(seal(data, segment_size=PIPE_SEG))
    return results[0], results[1]


@pytest.mark.parametrize(
    "size",
    [0, 1, PIPE_SEG - 1, PIPE_SEG, PIPE_SEG + 1, 3 * PIPE_SEG, 40 * PIPE_SEG + 777],
)
@pytest.mark.parametrize("paired", [True, False], ids=["paired-sha", "hashlib"])
def test_threaded_pipeline_matches_the_serial_one(
    size: int, paired: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 40 segments wrap around the 16 reusable slots more than twice. An odd number of
    # threaded segments leaves the last one without a partner for the paired digest.
    if not paired:  # the hashlib lanes, as on a CPU without SHA extensions
        monkeypatch.setattr(sha_digests, "ACCELERATED", False)
    data = os.urandom(size)
    (serial, serial_digests), (threaded, threaded_digests) = seal_both_ways(data, monkeypatch)
    assert threaded == serial
    assert threaded_digests == serial_digests
    assert threaded_digests.plaintext_sha256 == hashlib.sha256(data).digest()
    assert threaded_digests.ciphertext_sha256 == hashlib.sha256(threaded).digest()
    assert threaded_digests.segment_root == merkle_root(segment_digests(io.BytesIO(threaded)))
    for threshold in (MAX_SEGMENT_SIZE + 1, 1):
        monkeypatch.setattr(stream, "_PARALLEL_MIN_SEGMENT", threshold)
        out = io.BytesIO()
        assert decrypt_stream(KEY, io.BytesIO(threaded), out) == threaded_digests
        assert out.getvalue() == data


@settings(max_examples=15, deadline=None)
@given(size=st.integers(0, 20 * PIPE_SEG))
def test_threaded_round_trip_property(size: int) -> None:
    data = os.urandom(size)
    sealed, digests = seal(data, segment_size=PIPE_SEG)
    assert digests.ciphertext_sha256 == hashlib.sha256(sealed).digest()
    out = io.BytesIO()
    opened = decrypt_stream(KEY, io.BytesIO(sealed), out, ciphertext_sha256=False)
    assert out.getvalue() == data
    assert opened.plaintext_sha256 == digests.plaintext_sha256 == hashlib.sha256(data).digest()
    assert opened.segment_root == digests.segment_root
    assert (opened.size, opened.segment_count) == (digests.size, digests.segment_count)


def test_opening_without_the_whole_stream_digest_leaves_it_empty() -> None:
    data = os.urandom(5 * PIPE_SEG + 9)
    sealed, digests = seal(data, segment_size=PIPE_SEG)
    opened = decrypt_stream(KEY, io.BytesIO(sealed), io.BytesIO(), ciphertext_sha256=False)
    assert opened.ciphertext_sha256 == b""
    assert opened == dataclasses.replace(digests, ciphertext_sha256=b"")


@pytest.mark.parametrize("whole_stream", [True, False])
@pytest.mark.parametrize("segment", [0, 1, 17, 39])
def test_threaded_open_rejects_a_tampered_segment(segment: int, whole_stream: bool) -> None:
    data = os.urandom(40 * PIPE_SEG)
    sealed = bytearray(seal(data, segment_size=PIPE_SEG)[0])
    sealed[segment_offset(PIPE_SEG, segment) + 5] ^= 0x01
    out = io.BytesIO()
    with pytest.raises(DecryptionError):
        decrypt_stream(KEY, io.BytesIO(bytes(sealed)), out, ciphertext_sha256=whole_stream)
    # Only the authentic segments before the bad one were written, in order.
    assert out.getvalue() == data[: segment * PIPE_SEG]


def test_threaded_open_rejects_reordered_and_truncated_streams() -> None:
    sealed, _ = seal(os.urandom(20 * PIPE_SEG + 3), segment_size=PIPE_SEG)
    header, segs = segments(sealed, PIPE_SEG)
    for forged in (
        header + b"".join(segs[:-1]),
        header + b"".join([*segs[:5], segs[6], segs[5], *segs[7:]]),
        header + b"".join([*segs[:9], segs[8], *segs[9:]]),
    ):
        with pytest.raises(DecryptionError):
            decrypt_stream(KEY, io.BytesIO(forged), io.BytesIO(), ciphertext_sha256=False)


class FailingSink(io.RawIOBase):
    """A destination whose disk fills up after `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        data = memoryview(data)
        if self.written + len(data) > self.limit:
            raise OSError(28, "No space left on device")
        self.written += len(data)
        return len(data)


@pytest.mark.parametrize("direction", ["seal", "open"])
def test_a_write_failure_on_the_writer_thread_reaches_the_caller(direction: str) -> None:
    data = os.urandom(30 * PIPE_SEG)
    sealed, _ = seal(data, segment_size=PIPE_SEG)
    sink = cast(BinaryIO, FailingSink(limit=10 * PIPE_SEG))
    with pytest.raises(OSError, match="No space left"):
        if direction == "seal":
            encrypt_stream(KEY, io.BytesIO(data), sink, epoch=7, segment_size=PIPE_SEG)
        else:
            decrypt_stream(KEY, io.BytesIO(sealed), sink)


def test_slots_in_flight_are_bounded() -> None:
    assert stream._slot_count(1 << 20) == 16
    assert stream._slot_count(PIPE_SEG) == 16
    assert stream._slot_count(MAX_SEGMENT_SIZE) == 2  # 2 x 16 MiB, as before
