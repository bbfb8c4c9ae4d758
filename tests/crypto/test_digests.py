"""The paired SHA-256 primitive against hashlib, with and without the C extension."""

from __future__ import annotations

import hashlib
import os
import platform
import random
import threading
from pathlib import Path

import pytest

from sharechain.crypto import digests

# Block boundaries and the padding's two cases (tail below 56 bytes, or not).
SIZES = [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 4096 + 17, 1 << 16]


def _cpu_has_sha_extensions() -> bool:
    if platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " sha_ni" in flags


# Where the extension is not in use, only the hashlib path exists to test (and the
# first test below fails if that happens on a CPU with the SHA instructions).
MODES = ["extension", "hashlib"] if digests.ACCELERATED else ["hashlib"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "hashlib":
        monkeypatch.setattr(digests, "ACCELERATED", False)
    return str(request.param)


def test_the_extension_is_built_and_used_where_the_cpu_has_sha() -> None:
    # The extension is optional at install time; this catches a build that silently failed.
    if _cpu_has_sha_extensions():
        assert digests.ACCELERATED


@pytest.mark.parametrize("size_x", SIZES)
def test_pair_equals_two_hashlib_digests(mode: str, size_x: int) -> None:
    for size_y in SIZES:
        x, y = os.urandom(size_x), os.urandom(size_y)
        assert digests.sha256_pair(x, y) == (
            hashlib.sha256(x).digest(),
            hashlib.sha256(y).digest(),
        )


def test_running_pairs_equal_hashlib_for_any_split(mode: str) -> None:
    rng = random.Random(7)
    for _ in range(300):
        prefix = os.urandom(rng.randrange(0, 100))
        a, b = digests.new(prefix), digests.new()
        ref_a, ref_b = hashlib.sha256(prefix), hashlib.sha256()
        for _ in range(rng.randrange(1, 8)):
            da = os.urandom(rng.randrange(0, 300))
            db = bytearray(os.urandom(rng.randrange(0, 300)))
            digests.update2(a, da, b, memoryview(db))
            ref_a.update(da)
            ref_b.update(db)
            if rng.random() < 0.3:  # single updates between pairs keep their place
                a.update(db)
                ref_a.update(db)
        assert a.digest() == ref_a.digest()
        assert b.digest() == ref_b.digest()


def test_digest_does_not_end_the_hasher(mode: str) -> None:
    h = digests.new(b"abc")
    first = h.digest()
    h.update(b"def")
    assert first == hashlib.sha256(b"abc").digest()
    assert h.digest() == hashlib.sha256(b"abcdef").digest()


def test_large_inputs_take_the_interleaved_path_correctly(mode: str) -> None:
    # Different lengths and a misaligned start: the common blocks run side by side,
    # the rest of the longer one alone.
    x = os.urandom((1 << 20) + 16)
    y = os.urandom(1 << 20)
    a, b = digests.new(b"h" * 45), digests.new()
    digests.update2(a, x, b, y)
    assert a.digest() == hashlib.sha256(b"h" * 45 + x).digest()
    assert b.digest() == hashlib.sha256(y).digest()
    assert digests.sha256_pair(x, y) == (hashlib.sha256(x).digest(), hashlib.sha256(y).digest())


def test_extension_refuses_misuse() -> None:
    _sha256x = pytest.importorskip("sharechain.crypto._sha256x", reason="built without a compiler")
    if not _sha256x.ACCELERATED:  # no object may exist where the instructions do not
        with pytest.raises(RuntimeError, match="no SHA extensions"):
            _sha256x.Sha256()
        return
    h = _sha256x.Sha256()
    with pytest.raises(ValueError, match="two different hashers"):
        _sha256x.update2(h, b"x", h, b"y")
    with pytest.raises(TypeError):
        _sha256x.update2(h, "text", _sha256x.Sha256(), b"y")  # type: ignore[arg-type]  # str has no buffer
    assert h.copy().digest() == hashlib.sha256().digest()


def test_a_copy_taken_while_another_thread_updates_is_refused_not_torn() -> None:
    """`update` hashes without the interpreter lock; `copy` on another thread meanwhile
    copied a state half-way through it (the digest of neither the bytes before nor
    after). It is refused like any other use by two threads at once."""
    _sha256x = pytest.importorskip("sharechain.crypto._sha256x", reason="built without a compiler")
    if not _sha256x.ACCELERATED:
        pytest.skip("no SHA instructions: no object exists to share")
    chunk = os.urandom(8 << 20)
    h = _sha256x.Sha256()
    done = threading.Event()
    reference = hashlib.sha256()
    states = {reference.digest()}  # the digest at every update's end
    for _ in range(40):
        reference.update(chunk)
        states.add(reference.digest())
    copies: list[bytes] = []
    refused = 0

    def update() -> None:
        for _ in range(40):
            h.update(chunk)
        done.set()

    thread = threading.Thread(target=update)
    thread.start()
    while not done.is_set():
        try:
            copies.append(h.copy().digest())
        except RuntimeError as exc:
            assert "two threads at once" in str(exc)
            refused += 1
    thread.join()
    assert set(copies) <= states
    assert refused > 0  # the copies did meet updates under way


def test_mixed_hashers_fall_back_to_sequential_updates() -> None:
    a, b = digests.new(), hashlib.sha256()
    digests.update2(a, b"left", b, b"right")
    assert a.digest() == hashlib.sha256(b"left").digest()
    assert b.digest() == hashlib.sha256(b"right").digest()
