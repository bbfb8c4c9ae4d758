"""A user's client sends a request refused as busy (429, `Retry-After`) again, within bounds."""

from __future__ import annotations

import httpx
import pytest

from sharechain.api.auth import NonceCache, verify_headers
from sharechain.api.client import MAX_BUSY_WAIT, MAX_ERROR_BYTES, NodeClient
from sharechain.crypto.signing import SigningKey
from sharechain.errors import SharechainError

KEY = SigningKey.from_seed(bytes(range(32)))
URL = "http://127.0.0.1:8000"


class _Busy:
    """A node that refuses the first `refusals` requests to each path with `answer`, then
    serves them; it checks each signature as a node does (a nonce is accepted once)."""

    def __init__(self, refusals: int, answer: httpx.Response) -> None:
        self.refusals = refusals
        self.answer = answer
        self.seen: list[bytes] = []
        self.asked: dict[str, int] = {}
        self.nonces = NonceCache()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        verify_headers(
            method=request.method,
            authority=request.url.netloc.decode(),
            target=f"{request.url.path}?{request.url.query.decode()}",
            headers={k.lower(): v for k, v in request.headers.items()},
            has_body=bool(request.content),
            public_key=lambda org: KEY.public_key if org == "bank-b" else None,
            nonces=self.nonces,
            node="hospital-a",
        )
        self.seen.append(request.content)
        path = request.url.path
        self.asked[path] = self.asked.get(path, 0) + 1
        if self.asked[path] <= self.refusals:
            return self.answer
        return httpx.Response(200, json={"height": 7})


def _busy(retry_after: str | None = "1", size: int = 40) -> httpx.Response:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return httpx.Response(429, headers=headers, json={"detail": "b" * size})


def _client(node: _Busy, retries: int, waits: list[float]) -> NodeClient:
    return NodeClient(
        URL,
        "bank-b",
        KEY,
        node="hospital-a",
        transport=httpx.MockTransport(node),
        busy_retries=retries,
        sleep=waits.append,
    )


def test_a_busy_refusal_is_waited_out_and_each_send_is_signed_afresh() -> None:
    node, waits = _Busy(2, _busy("1")), []
    with _client(node, 3, waits) as client:
        assert client.status() == {"height": 7}
        receipts = client.submit([b"\x01" * 40], wait=False)  # a body goes again whole
    assert waits == [1.0] * 4
    assert len(node.seen) == 6 and node.seen[-1] == node.seen[-2] == node.seen[-3] != b""
    assert receipts == []


def test_after_its_retries_the_last_refusal_is_the_answer() -> None:
    node, waits = _Busy(10, _busy("0.5")), []
    with _client(node, 3, waits) as client, pytest.raises(SharechainError, match="HTTP 429"):
        client.status()
    assert waits == [0.5, 0.5, 0.5] and len(node.seen) == 4


@pytest.mark.parametrize(
    "answer",
    [
        _busy(None),  # no Retry-After: nothing says when
        _busy("Wed, 21 Oct 2026 07:28:00 GMT"),  # a date, not a short wait
        _busy(str(MAX_BUSY_WAIT + 1)),  # longer than a command should sit
        _busy("-1"),
        _busy("1", size=MAX_ERROR_BYTES),  # an explanation larger than any node's
        httpx.Response(503, headers={"Retry-After": "1"}, json={"detail": "not ready"}),
    ],
    ids=["no-retry-after", "http-date", "too-long", "negative", "large-body", "503"],
)
def test_other_refusals_are_answered_at_once(answer: httpx.Response) -> None:
    node, waits = _Busy(1, answer), []
    with _client(node, 3, waits) as client, pytest.raises(SharechainError):
        client.status()
    assert waits == [] and len(node.seen) == 1


def test_a_node_s_client_of_its_peers_does_not_retry() -> None:
    node, waits = _Busy(1, _busy("1")), []
    with _client(node, 0, waits) as client, pytest.raises(SharechainError, match="HTTP 429"):
        client.status()
    assert waits == [] and len(node.seen) == 1
