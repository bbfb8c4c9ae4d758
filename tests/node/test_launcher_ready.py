"""The launcher waits for *its* node: another process answering on the node's port is
never taken for it (two networks, or two test workers, can draw the same free port)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sharechain.errors import ConfigError
from sharechain.node.launcher import LocalNetwork
from sharechain.storage.datadir import DataDir


@contextmanager
def _answering(port: int, body: dict[str, Any]) -> Iterator[None]:
    """A real HTTP server on 127.0.0.1:`port` whose `/v1/ready` says `body` (200)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            raw = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _ready(org: str, genesis: str) -> dict[str, Any]:
    return {
        "org": org,
        "genesis_hash": genesis,
        "ready": True,
        "caught_up": True,
        "height": 3,
        "problem": None,
        "halted": None,
    }


@pytest.mark.parametrize("who", ["same org, other consortium", "other org, same consortium"])
def test_a_ready_answer_from_another_node_is_not_ours(tmp_path: Path, who: str) -> None:
    net = LocalNetwork(tmp_path / "net", orgs=2, ordering="solo")
    node = net.nodes[0]
    ours = DataDir.open(tmp_path / "net" / "consortium").genesis_hash.hex()
    body = (
        _ready(node.org, "ab" * 32)
        if who.startswith("same org")
        else _ready(net.nodes[1].org, ours)
    )
    with _answering(node.port, body), pytest.raises(ConfigError) as err:
        net.wait_ready([node.org], timeout=0.5)
    assert f"port {node.port} is answered by the node of" in str(err.value)
    assert "not ready" in str(err.value)


def test_the_answer_of_our_own_node_is_taken(tmp_path: Path) -> None:
    net = LocalNetwork(tmp_path / "net", orgs=2, ordering="solo")
    node = net.nodes[0]
    ours = DataDir.open(tmp_path / "net" / "consortium").genesis_hash.hex()
    with _answering(node.port, _ready(node.org, ours)):
        net.wait_ready([node.org], timeout=5)  # returns: the answer is its node's
