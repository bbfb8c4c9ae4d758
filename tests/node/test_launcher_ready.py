"""The launcher waits for *its* node: another process answering on the node's port is
never taken for it (two networks, or two test workers, can draw the same free port),
and `up` moves a node whose port was taken to a new one."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sharechain.errors import ConfigError
from sharechain.ledger.transactions import sign_transaction
from sharechain.node.launcher import NETWORK_FILE, LocalNetwork, PortTakenError
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


@contextmanager
def _holding(*ports: int) -> Iterator[None]:
    """Another process's listening sockets on `ports` (here: this one's)."""
    socks = []
    try:
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind(("127.0.0.1", port))
            sock.listen()
        yield
    finally:
        for sock in socks:
            sock.close()


def test_up_moves_a_node_whose_port_was_taken(tmp_path: Path) -> None:
    # The orderer's port: the other node forwards to it, so the network only works
    # if every node was restarted with the new URL.
    net = LocalNetwork(tmp_path / "net", orgs=2, ordering="solo")
    orderer, member = net.nodes
    with _holding(orderer.port):
        net.up(timeout=60)
        try:
            moved = net.spec(orderer.org)
            assert moved.port != orderer.port
            listed = json.loads((tmp_path / "net" / NETWORK_FILE).read_text())
            assert listed["state"] == "up"
            assert {n["org"]: n["port"] for n in listed["nodes"]} == {
                orderer.org: moved.port,
                member.org: member.port,
            }
            raw = sign_transaction(
                net.keys(member.org).signing,
                "notary.record",
                member.org,
                {"digest": bytes(range(32))},
            ).raw
            with net.client(member.org) as c:
                assert c.submit_checked(raw).code == "valid"
            with net.client(orderer.org) as c:
                assert c.status()["height"] >= 1
            assert b"address already in use" in orderer.log_path.read_bytes().lower()
        finally:
            net.down()


def test_up_gives_up_after_its_attempts_and_says_why(tmp_path: Path) -> None:
    net = LocalNetwork(tmp_path / "net", orgs=2, ordering="solo")
    node = net.nodes[1]
    with _holding(node.port), pytest.raises(PortTakenError) as err:
        net.up(timeout=60, bind_attempts=1)
    assert err.value.org == node.org and err.value.port == node.port
    assert f"could not listen on port {node.port}: another process holds it" in str(err.value)
    assert json.loads((tmp_path / "net" / NETWORK_FILE).read_text())["state"] == "down"
    assert not any(net.is_running(n.org) for n in net.nodes)
