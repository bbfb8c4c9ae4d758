"""Attack: a member (or anyone) sends a huge body to make a node buffer it.

Defence: the node checks the request signature from its headers before it
reads one byte of the body, and counts the body against its limit while it
streams (chunked or not), so it never holds more than the limit.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_helpers import Consortium, InProcess, Process, serve, spawn

from sharechain.api.auth import sign_request
from sharechain.api.refusals import MAX_BODY_BYTES
from sharechain.node.lingering import LINGER_BYTES, LINGER_SECONDS

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
    # Socket buffers, the server's first read and what it discards while it lingers
    # (`node.lingering`, after the answer) take a bounded amount, never the body.
    assert body.sent <= LINGER_BYTES + (16 << 20), f"the node read {body.sent} bytes"


def test_a_json_body_over_the_limit_is_413_not_a_parse_error(in_process: InProcess) -> None:
    """FastAPI reports any failure while reading a model's body as a 400; the guard's stays.

    The node answers 413 and closes while the client is still sending; it
    lingers (`node.lingering`), discarding what still comes, so the client
    reads the answer every time instead of a connection reset."""
    consortium = in_process.consortium
    path = "/v1/custody/" + "ab" * 32 + "/1/key"
    key = consortium.keys("bank-b").signing
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
        body = Counted(MAX_BODY_BYTES + (2 << 20))
        reply = httpx.put(f"{in_process.url}{path}", content=body, headers=headers, timeout=30)
        assert reply.status_code == 413 and reply.json()["error"] == "too_large"
        assert body.sent <= MAX_BODY_BYTES + (2 << 20)


def _raw(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def test_a_client_sending_its_whole_refused_body_reads_the_answer(in_process: InProcess) -> None:
    """Refused before its body is read, a client that sends the body whole before
    reading (as many do) still reads the answer: the node lingers, discarding it.
    Closing at once, the node's reset would end the client's sending with an error
    and discard the answer waiting in the client's socket."""
    size = 20 << 20
    for _ in range(3):
        with _raw(in_process.url) as sock:
            sock.sendall(
                b"POST /v1/txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % size
            )
            sock.sendall(b"\0" * size)
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:80]
        assert b'"unauthenticated"' in answer


def test_a_lingering_connection_reads_a_bounded_amount_then_closes(in_process: InProcess) -> None:
    """After an answer the node reads at most LINGER_BYTES more, or for LINGER_SECONDS."""
    with _raw(in_process.url) as sock:
        sock.sendall(
            b"POST /v1/txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n"
        )
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413")  # over the limit, refused from the headers
        started, sent = time.monotonic(), 0
        chunk = b"\0" * (1 << 16)
        with contextlib.suppress(OSError):  # reset or broken pipe once the node closed
            while time.monotonic() - started < 30:
                sock.sendall(chunk)
                sent += len(chunk)
        assert time.monotonic() - started <= LINGER_SECONDS + 5
        # The node's reads, plus what the kernel's buffers took, never the whole body.
        assert sent <= LINGER_BYTES + (32 << 20), sent
