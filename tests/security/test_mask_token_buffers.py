"""The C tokeniser never reads outside the buffers it is given.

`sharechain.crypto._tokens.hex_tokens` takes an Arrow string array's raw
offsets and data buffers; it checks every offset (in order, not negative,
not past the data) before hashing anything, so damaged or hostile buffers
are refused with `ValueError` instead of reading memory that is not the
column's. docs/security.md has the line.
"""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest

_tokens = pytest.importorskip("sharechain.crypto._tokens", reason="built without a compiler")


def test_damaged_buffers_and_bad_arguments_are_refused() -> None:
    key = bytes(32)
    data = b"abcdef"
    backwards = pa.array([0, 4, 2], pa.int32()).buffers()[1]
    beyond = pa.array([0, 7], pa.int32()).buffers()[1]
    negative = pa.array([-1, 2], pa.int32()).buffers()[1]
    for offsets in (backwards, beyond, negative):
        with pytest.raises(ValueError, match="out of order or outside"):
            _tokens.hex_tokens(key, "blake2b", offsets, data, False)
    good = pa.array([0, 3], pa.int32()).buffers()[1]
    with pytest.raises(ValueError, match="whole offsets"):
        _tokens.hex_tokens(key, "blake2b", b"\x00\x00", data, False)
    with pytest.raises(ValueError, match="unknown token algorithm"):
        _tokens.hex_tokens(key, "md5", good, data, False)
    for bad_key in (b"", bytes(65)):
        with pytest.raises(ValueError, match="1 to 64 bytes"):
            _tokens.hex_tokens(bad_key, "blake2b", good, data, False)


def test_offsets_another_thread_rewrites_meanwhile_are_never_read_outside_the_data() -> None:
    """The offsets are checked with the interpreter lock held, and hashed without it: a
    writable offsets buffer (a bytearray) that another thread rewrites meanwhile is
    checked again pair by pair, so each call gives the tokens of the offsets as they
    were, or refuses; it never hashes bytes outside `data` (it read up to 2 GiB past
    it, and crashed or returned garbage tokens, before)."""
    key = bytes(32)
    n = 50_000
    data = (bytes(range(256)) * (8 * n // 256 + 1))[: 8 * n]
    good = pa.array(range(0, 8 * n + 1, 8), pa.int32()).buffers()[1].to_pybytes()
    hostile = bytearray(good)
    hostile[4 * n : 4 * n + 4] = (2**31 - 1).to_bytes(4, "little")  # the last end: 2 GiB out
    offsets = bytearray(good)
    expected = _tokens.hex_tokens(key, "blake2b", good, data, False)
    stop = threading.Event()

    def rewrite() -> None:
        while not stop.is_set():
            offsets[:] = hostile
            offsets[:] = good

    writer = threading.Thread(target=rewrite)
    writer.start()
    outcomes = {"same": 0, "refused": 0}
    try:
        for _ in range(200):
            try:
                got = _tokens.hex_tokens(key, "blake2b", offsets, data, False)
            except ValueError as exc:
                assert "changed while" in str(exc) or "outside the data" in str(exc)
                outcomes["refused"] += 1
                continue
            assert got == expected
            outcomes["same"] += 1
    finally:
        stop.set()
        writer.join()
    assert sum(outcomes.values()) == 200
