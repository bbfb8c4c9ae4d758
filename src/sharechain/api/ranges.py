"""The one `Range` a node serves of a blob: `bytes=first-last`, `bytes=first-` or `bytes=-suffix`.

A download that lost its connection resumes with `Range: bytes=<reached>-`
(`sharechain.api.transfer`); the node answers 206 with `Content-Range`, or
416 with the blob's size when the range selects nothing of it. Several
ranges in one request (multipart replies) are not served.
"""

from __future__ import annotations

import re

__all__ = ["parse_range"]

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a single `bytes=` range, None for the whole blob.

    Raises `ValueError` when the range cannot be satisfied (answered 416).
    """
    if header is None:
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None:
        raise ValueError(f"only one `bytes=first-last` range is served, not {header[:80]!r}")
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        raise ValueError("empty range")
    if first == "":
        suffix = int(last)
        if suffix == 0:
            raise ValueError("a zero-length suffix range selects nothing")
        return max(0, size - suffix), size
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if start >= size or end <= start:
        raise ValueError(f"range {header} is outside the blob of {size} bytes")
    return start, end
