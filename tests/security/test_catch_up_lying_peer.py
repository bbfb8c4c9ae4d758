"""A peer lying to a node catching up is refused and left; it cannot halt the node.

A node behind (newly admitted, restored, or whose blocks etcd pruned) fetches
blocks from its peers (`arrivals.catch_up_from_peers`). A peer serving a value
that is not a member's signed block (junk, a forged signature, a block that
does not link), or not the block more than half of the peers vouch for, lies:
the node refuses it with an ALERT and catches up from its other peers.
Halting there would let one member stop any node catching up from it. Here
the late node has three peers: the liar and two honest nodes, which vouch for
the chain (`node.vouching`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))

from liar_server import Quiet, serving
from node_helpers import ORGS, Consortium, Running, run_node, shutdown
from test_replication import wait_until

from sharechain.api.client import MAX_PEER_JSON_BYTES, MAX_SYNC_BYTES
from sharechain.codec import encode
from sharechain.ledger.transactions import sign_transaction
from sharechain.storage.datadir import OrgSpec, init_consortium

WITNESS = "insurer-d"
"""A second honest node, following the first: with it, two of the late node's three
peers vouch for the chain."""


@pytest.fixture
def consortium(tmp_path: Path) -> Consortium:
    orgs = (*ORGS, OrgSpec(WITNESS, ("member",)))
    init_consortium(tmp_path / "consortium", orgs, consortium="test")
    return Consortium(tmp_path / "consortium", tmp_path)


@pytest.fixture
def honest(consortium: Consortium) -> Iterator[Running]:
    running = run_node(consortium, "hospital-a", max_wait=0.005)
    try:
        key = consortium.keys("hospital-a").signing
        with running.client() as client:
            for tag in range(6):  # a block each
                client.submit(
                    [
                        sign_transaction(
                            key, "notary.record", "hospital-a", {"digest": bytes([tag, i]) * 16}
                        ).raw
                        for i in range(3)
                    ]
                )
        yield running
    finally:
        shutdown(running)


@pytest.fixture
def witness(consortium: Consortium, honest: Running) -> Iterator[Running]:
    running = run_node(consortium, WITNESS, orderer_url=honest.url)
    try:
        wait_until(lambda: running.node.ledger.height == honest.node.ledger.height)
        yield running
    finally:
        shutdown(running)


FLOOD = 200 << 20
"""Bytes the flooding liar offers as one answer of blocks."""


def _liar(blocks: list[bytes], *, junk_json: bool = False, flood: str = "") -> Iterator[str]:
    """A real HTTP server posing as regulator's node: a height far ahead, and `blocks`
    from any start; with `junk_json`, bytes that are not JSON where JSON is expected;
    with `flood`, an endless answer (`FLOOD` bytes) to requests under that path."""

    class Handler(Quiet):
        def do_GET(self) -> None:
            if flood and self.path.startswith(flood):
                self._flood()
                return
            if self.path.startswith(("/v1/health", "/v1/status")):
                kind = "application/json"
                answer = {"status": "ok", "org": "regulator", "height": 1_000}
                data = b"\x81\xff not json" if junk_json else json.dumps(answer).encode()
            else:
                data, kind = encode(blocks), "application/cbor"
            self.send_response(200)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _flood(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(FLOOD))
            self.end_headers()
            chunk = b" " * (1 << 20)
            with contextlib.suppress(OSError):  # the client hangs up
                for _ in range(FLOOD >> 20):
                    self.wfile.write(chunk)

    with serving(Handler) as url:
        yield url


def _forged(honest: Running) -> bytes:
    """The honest chain's block 1 with a byte of its orderer's signature changed."""
    data = bytearray(honest.node.store.block_bytes(1) or b"")
    assert data
    data[-5] ^= 0x01  # the signature is encoded last
    return bytes(data)


def behind_a_liar(
    consortium: Consortium, liar_url: str, honest: Running, witness: Running
) -> Running:
    """bank-b's node, new, catching up from the liar (asked first, as regulator) and
    from the two honest nodes (hospital-a and the witness)."""
    peers = (("regulator", liar_url), ("hospital-a", honest.url), (WITNESS, witness.url))
    return run_node(consortium, "bank-b", peers=peers)


@pytest.mark.parametrize("lie", ["junk", "forged", "not-json", "flood-blocks", "flood-status"])
def test_a_lying_peer_is_refused_and_the_node_catches_up_from_the_others(
    consortium: Consortium,
    honest: Running,
    witness: Running,
    lie: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    served = [_forged(honest)] if lie == "forged" else [b"\x00not a block"]
    target = honest.node.ledger.height
    assert target >= 6
    caplog.set_level(logging.INFO, logger="sharechain.node")
    flood = {"flood-blocks": "/v1/sync/blocks", "flood-status": "/v1/status"}.get(lie, "")
    for liar_url in _liar(served, junk_json=lie == "not-json", flood=flood):
        late = behind_a_liar(consortium, liar_url, honest, witness)
        try:
            assert late.node.halted is None
            assert late.node.ledger.height == target
            assert late.node.store.head() == honest.node.store.head()
        finally:
            shutdown(late)
    messages = [r.getMessage() for r in caplog.records]
    if lie != "junk" and lie != "forged":  # the peer is skipped, and the log says why
        why = {
            "not-json": "is not JSON",
            "flood-blocks": f"larger than {MAX_SYNC_BYTES} bytes",
            "flood-status": f"larger than {MAX_PEER_JSON_BYTES} bytes",
        }[lie]
        skipped = [m for m in messages if m.startswith("catch-up from regulator skipped:")]
        assert any(why in m for m in skipped), messages
        return
    alerts = [m for m in messages if m.startswith("ALERT")]
    refused = "catching up from regulator stopped: peer regulator offers no block"
    assert any(refused in a and "refused" in a for a in alerts), alerts
