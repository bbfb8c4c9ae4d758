"""Attack: a member (or anyone) sends a huge body to make a node buffer it.

Defence: the node checks the request signature from its headers before it
reads one byte of the body, and counts the body against its limit while it
streams (chunked or not), so it never holds more than the limit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_helpers import Consortium, InProcess, Process, serve, spawn

from sharechain.api.auth import sign_request
from sharechain.api.refusals import MAX_BODY_BYTES

GIB = 1 << 30
PIECE = b"\x00" * (1 << 20)


class Counted:
    """A body of `total` bytes generated piece by piece, counting what was taken."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        while self.sent < self.total:
            self.sent += len(PIECE)
            yield PIECE


@pytest.fixture
def process(tmp_path: Path) -> Iterator[Process]:
    yield from spawn(Consortium.make(tmp_path), "hospital-a")


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[InProcess]:
    with serve(Consortium.make(tmp_path), "hospital-a") as running:
        yield running


def _signed_for_junk(consortium: Consortium, url: str, path: str) -> dict[str, str]:
    """Valid signature headers of a member whose Content-Digest names a small body."""
    key = consortium.keys("bank-b").signing
    headers = sign_request(
        key, "bank-b", "POST", url.removeprefix("http://"), path, b"{}", node="hospital-a"
    )
    return {**headers, "Content-Type": "application/json"}


def test_a_signed_4_gib_chunked_body_is_cut_off_at_the_limit_in_bounded_memory(
    process: Process, tmp_path: Path
) -> None:
    consortium = Consortium(tmp_path / "consortium", tmp_path)
    body = Counted(4 * GIB)
    headers = _signed_for_junk(consortium, process.url, "/v1/txs")
    started = time.monotonic()
    try:
        reply = httpx.post(f"{process.url}/v1/txs", content=body, headers=headers, timeout=60)
        assert reply.status_code == 413 and reply.json()["error"] == "too_large"
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        pass  # the node answered 413 and closed while we were still sending
    assert body.sent < 4 * MAX_BODY_BYTES, f"the node read {body.sent} bytes of the body"
    assert time.monotonic() - started < 60
    assert process.peak_rss() < 256 << 20
    assert httpx.get(f"{process.url}/v1/health").status_code == 200


def test_an_unsigned_large_body_is_refused_before_it_is_read(in_process: InProcess) -> None:
    body = Counted(GIB)
    try:
        reply = httpx.post(f"{in_process.url}/v1/txs", content=body, timeout=30)
        assert reply.status_code == 401 and reply.json()["error"] == "unauthenticated"
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        pass
    # Socket buffers and the server's first read take a few MiB at most, never the body.
    assert body.sent <= 16 << 20, f"the node read {body.sent} bytes of an unsigned body"


def test_a_json_body_over_the_limit_is_413_not_a_parse_error(in_process: InProcess) -> None:
    """FastAPI reports any failure while reading a model's body as a 400; the guard's stays."""
    consortium = in_process.consortium
    path = "/v1/custody/" + "ab" * 32 + "/1/key"
    key = consortium.keys("bank-b").signing
    # The node answers 413 and closes while the client may still be sending: the
    # reset can then reach the client before the answer does. Try again (signed
    # afresh: a signature is good once) until an answer arrives; every one is 413.
    for _ in range(5):
        headers = sign_request(
            key,
            "bank-b",
            "PUT",
            in_process.url.removeprefix("http://"),
            path,
            b"{}",
            node="hospital-a",
        )
        body = Counted(MAX_BODY_BYTES + (4 << 20))
        try:
            reply = httpx.put(f"{in_process.url}{path}", content=body, headers=headers, timeout=30)
        except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
            assert body.sent <= MAX_BODY_BYTES + (8 << 20)
            continue
        assert reply.status_code == 413 and reply.json()["error"] == "too_large"
        assert body.sent <= MAX_BODY_BYTES + (8 << 20)
        break
    else:
        raise AssertionError("no answer in five tries: each connection was reset first")
