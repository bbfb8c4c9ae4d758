"""The C tokeniser never reads outside the buffers it is given.

`sharechain.crypto._tokens.hex_tokens` takes an Arrow string array's raw
offsets and data buffers; it checks every offset (in order, not negative,
not past the data) before hashing anything, so damaged or hostile buffers
are refused with `ValueError` instead of reading memory that is not the
column's. docs/security.md has the line.
"""

from __future__ import annotations

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
