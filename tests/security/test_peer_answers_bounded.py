"""What a node or client reads of another node's answer is bounded, whatever it sends.

A member's node is asked things by its peers without a person watching: a
follower forwards its batches to whichever member leads and reads the receipts
back, a joining node reads the join document, a node starting from a snapshot
reads a peer's snapshot list and then the snapshot. A hostile member answering
with an endless body must not exhaust the asker's memory or disk: every
answer `NodeClient` reads is refused once it passes a cap (`api.client`), and a
snapshot download once it passes the size its peer listed (or, before it
starts, the free disk). The liar here is a real HTTP server that counts what it
managed to send before the asker hung up.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))

from liar_server import Quiet, serving
from node_helpers import Consortium

from sharechain.api.client import (
    MAX_ERROR_BYTES,
    MAX_PEER_JSON_BYTES,
    RECEIPT_BYTES,
    NodeClient,
)
from sharechain.errors import SharechainError
from sharechain.ledger.transactions import sign_transaction
from sharechain.node.joining import JoinRefusedError, join_network
from sharechain.node.snapshots import fetch_snapshot

FLOOD = 512 << 20
"""Bytes the liar offers as one answer: far more than any cap."""
SLACK = 32 << 20
"""What may pass beyond a cap before the asker hangs up: socket buffers and chunks in flight."""


@dataclass
class Liar:
    """How the liar answers each path prefix, and what it sent."""

    url: str = ""
    answers: dict[str, tuple[int, Any]] = field(default_factory=dict)
    """Path prefix -> (status, a JSON document, or None for an endless body)."""
    sent: dict[str, int] = field(default_factory=dict)
    """Path -> bytes of body written before the asker hung up."""


@pytest.fixture
def liar() -> Iterator[Liar]:
    state = Liar(answers={"/v1/health": (200, {"status": "ok", "org": "hospital-a"})})

    class Handler(Quiet):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            path = self.path.split("?")[0]
            status, doc = next(
                (a for p, a in state.answers.items() if path.startswith(p)), (404, {"detail": "?"})
            )
            data = b"" if doc is None else json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(FLOOD if doc is None else len(data)))
            self.end_headers()
            if doc is not None:
                self.wfile.write(data)
                return
            state.sent[path] = 0
            chunk = b" " * (1 << 20)
            with contextlib.suppress(OSError):  # the asker hangs up
                for _ in range(FLOOD >> 20):
                    self.wfile.write(chunk)
                    state.sent[path] += len(chunk)
            self.close_connection = True

        do_GET = do_POST = _answer

    with serving(Handler) as state.url:
        yield state


@pytest.fixture
def consortium(tmp_path: Path) -> Consortium:
    return Consortium.make(tmp_path)


def _client(liar: Liar, consortium: Consortium) -> NodeClient:
    return NodeClient(liar.url, "bank-b", consortium.keys("bank-b").signing, timeout=30)


def test_a_leader_answering_a_forwarded_batch_endlessly_is_refused_at_the_cap(
    liar: Liar, consortium: Consortium
) -> None:
    """`builder._forward` submits through `NodeClient.submit`: the receipts of a batch are
    read up to a bound per transaction, then the answer is refused."""
    key = consortium.keys("bank-b").signing
    batch = [
        sign_transaction(key, "notary.record", "bank-b", {"digest": bytes([i]) * 32}).raw
        for i in range(10)
    ]
    liar.answers["/v1/txs"] = (200, None)
    with _client(liar, consortium) as client, pytest.raises(SharechainError, match="larger than"):
        client.submit(batch)
    assert liar.sent["/v1/txs"] < MAX_PEER_JSON_BYTES + RECEIPT_BYTES * len(batch) + SLACK


@pytest.mark.parametrize("path", ["/v1/health", "/v1/ready", "/v1/status"])
def test_the_small_documents_nodes_poll_are_refused_past_four_mib(
    liar: Liar, consortium: Consortium, path: str
) -> None:
    liar.answers[path] = (200, None)  # health too: the client asks it unsigned
    with _client(liar, consortium) as client:
        call = {"/v1/health": client.health, "/v1/ready": client.ready, "/v1/status": client.status}
        with pytest.raises(SharechainError, match=f"larger than {MAX_PEER_JSON_BYTES} bytes"):
            call[path]()
    assert liar.sent[path] < MAX_PEER_JSON_BYTES + SLACK


def test_an_endless_error_answer_keeps_only_the_start_of_its_explanation(
    liar: Liar, consortium: Consortium
) -> None:
    liar.answers["/v1/datasets"] = (500, None)
    with _client(liar, consortium) as client, pytest.raises(SharechainError, match="HTTP 500"):
        client.get_json("/v1/datasets")
    assert liar.sent["/v1/datasets"] < MAX_ERROR_BYTES + SLACK


def test_a_query_answer_is_refused_past_the_callers_cap(liar: Liar, consortium: Consortium) -> None:
    liar.answers["/v1/datasets"] = (200, None)
    refused = pytest.raises(SharechainError, match="larger than 1048576 bytes")
    with _client(liar, consortium) as client, refused:
        client.get_json("/v1/datasets", cap=1 << 20)
    assert liar.sent["/v1/datasets"] < (1 << 20) + SLACK


def test_an_endless_join_document_is_refused_and_nothing_is_written(
    liar: Liar, consortium: Consortium, tmp_path: Path
) -> None:
    new = tmp_path / "new"
    (new / "keys").mkdir(parents=True)
    key = new / "keys" / "bank-b.key"
    key.write_bytes((consortium.source / "keys" / "bank-b.key").read_bytes())
    key.chmod(0o600)
    liar.answers["/v1/join"] = (200, None)
    with pytest.raises(JoinRefusedError, match=f"larger than {MAX_PEER_JSON_BYTES} bytes"):
        join_network(new, "bank-b", liar.url)
    assert liar.sent["/v1/join"] < MAX_PEER_JSON_BYTES + SLACK
    assert sorted(p.name for p in new.iterdir()) == ["keys"]


def _listing(height: int, size: int) -> dict[str, Any]:
    return {"org": "hospital-a", "every": 10, "snapshots": [{"height": height, "size": size}]}


def test_a_snapshot_longer_than_listed_is_refused_and_deleted(
    liar: Liar, consortium: Consortium, tmp_path: Path
) -> None:
    listed = 2 << 20
    liar.answers["/v1/snapshots/7"] = (200, None)
    liar.answers["/v1/snapshots"] = (200, _listing(7, listed))
    out = tmp_path / "dl" / "snap"
    out.parent.mkdir()
    with pytest.raises(SharechainError, match=f"more than the {listed} bytes it listed"):
        fetch_snapshot(liar.url, consortium.keys("bank-b"), out)
    assert liar.sent["/v1/snapshots/7"] < listed + SLACK
    assert list(out.parent.iterdir()) == []  # neither the snapshot nor its part


def test_a_snapshot_listed_larger_than_the_free_disk_is_not_downloaded(
    liar: Liar, consortium: Consortium, tmp_path: Path
) -> None:
    liar.answers["/v1/snapshots/7"] = (200, None)
    liar.answers["/v1/snapshots"] = (200, _listing(7, 1 << 60))
    out = tmp_path / "snap"
    with pytest.raises(SharechainError, match="free some space"):
        fetch_snapshot(liar.url, consortium.keys("bank-b"), out)
    assert "/v1/snapshots/7" not in liar.sent  # refused before asking for it
    assert not out.exists()
