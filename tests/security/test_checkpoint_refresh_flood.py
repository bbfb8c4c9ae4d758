"""Attack 50: a member asks a node for fresh checkpoints without pause.

Any member may ask a node to make a quorum checkpoint of its head now
(`POST /v1/checkpoint`), and each time the node asked every peer to cosign
it: a member asking from a dozen threads made the node ask each of its peers
a dozen times, for the same head, again and again. Now a quorum checkpoint
of the head already made is answered as it is, and one gathering runs at a
time (those waiting take its note). Three real nodes in this process; the
peers count the cosignatures they are asked for.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import ORGS, Consortium

from sharechain.api.client import NodeClient
from sharechain.api.quotas import Limits
from sharechain.crypto.signed_note import parse_note
from sharechain.node.launcher import free_ports
from sharechain.node.server import ServerThread
from sharechain.node.service import Node, NodeConfig

ASKS = 16


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[dict[str, ServerThread], Consortium]]:
    """hospital-a orders, the others follow; no checkpoint of their own accord."""
    consortium = Consortium.make(tmp_path)
    cfg = consortium.source / "consortium.json"
    body = json.loads(cfg.read_text())
    settings = {"checkpoint_blocks": 10**6, "checkpoint_seconds": 3600.0}
    cfg.write_text(json.dumps({**body, "settings": settings}))
    ports = free_ports(len(ORGS))
    urls = {o.id: f"http://127.0.0.1:{p}" for o, p in zip(ORGS, ports, strict=True)}
    servers: dict[str, ServerThread] = {}
    try:
        for spec, port in zip(ORGS, ports, strict=True):
            node = Node(
                NodeConfig(
                    data_dir=consortium.node_dir(spec.id),
                    org=spec.id,
                    orderer_url=None if spec.id == "hospital-a" else urls["hospital-a"],
                    peers=tuple((o, u) for o, u in urls.items() if o != spec.id),
                    max_wait=0.005,
                    poll_interval=0.1,
                )
            )
            node.start()
            # Threat 51's limit (2 checkpoint requests per member) raised, and threat 52's
            # (requests under way per member; bank-b's node polls meanwhile, as bank-b):
            # all 16 reach the cosigner at once, as they would from 8 members.
            limits = Limits(checkpoint_waits_per_caller=ASKS, requests_per_member=2 * ASKS)
            servers[spec.id] = ServerThread(node, port, limits=limits).start()
        yield servers, consortium
    finally:
        for server in servers.values():  # told at once: their last waits overlap
            server.node.stop_event.set()
        for server in reversed(servers.values()):
            server.stop()
            server.node.stop()


def test_asking_for_checkpoints_without_pause_asks_the_peers_once_per_head(
    nodes: tuple[dict[str, ServerThread], Consortium],
) -> None:
    servers, consortium = nodes
    asked = {"bank-b": 0, "regulator": 0}
    lock = threading.Lock()
    for org in asked:
        cosigner = servers[org].app.state.cosigner
        real = cosigner.cosign

        def counted(text: str, org: str = org, real: object = real) -> str:
            with lock:
                asked[org] += 1
            return real(text)  # type: ignore[operator]

        cosigner.cosign = counted
    target = servers["hospital-a"]
    notes: list[str] = []

    def ask() -> None:
        key = consortium.keys("bank-b").signing
        with NodeClient(target.url, "bank-b", key, timeout=60.0) as client:
            reply = client._http.post("/v1/checkpoint")
            assert reply.status_code == 200, reply.text
            with lock:
                notes.append(reply.json()["note"])

    threads = [threading.Thread(target=ask) for _ in range(ASKS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(notes) == ASKS and len(set(notes)) == 1  # one quorum note, for everyone
    signers = {s.name.split("/")[0] for s in parse_note(notes[0]).signatures}
    assert signers == {"hospital-a", "bank-b", "regulator"}
    # Each peer was asked once for that head, not once per request.
    assert asked == {"bank-b": 1, "regulator": 1}
