"""Attack 40: a member's node leads and orders nothing of the others'.

Any member may hold the leader key (here written by hand on a lease of a
minute that nobody renews: a member's etcd client may keep one alive for
ever; a key on no lease the nodes delete, threat 45), and followers forward their
batches to it. The hostile leader answers each forwarded batch with an error,
with receipts for a block that never comes, or not at all (a byte a second,
of its body or of its headers: no read of the HTTP client ever times out).
Each follower doubts that leader's term (`node.doubts`) and appends its own
blocks: its transactions commit all the same. Real nodes on a real 3-member
etcd; the hostile leader is a real HTTP server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))

from liar_server import Quiet, serving
from node_helpers import Consortium, Running, run_node, shutdown_all
from test_replication import _records, wait_until

from sharechain.ordering.etcd_log import EtcdLog
from sharechain.ordering.etcd_process import EtcdCluster, free_ports

HOSTILE = "bank-b"
HONEST = ("hospital-a", "regulator")


class _Hostile(Quiet):
    """A member's node as its peers first meet it: its health names its organisation."""

    def do_GET(self) -> None:
        body = json.dumps({"status": "ok", "org": HOSTILE, "alarms": []}).encode()
        self.send_json(200, body)


class _Refuses(_Hostile):
    """Answers every forwarded batch with an error, at once."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_json(503, b'{"detail": "not now"}')


class _Lies(_Hostile):
    """Answers that every forwarded transaction committed at height 1, and orders nothing."""

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Type") == "application/cbor":
            self.send_response(415)  # the client speaks JSON then
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        txs = [bytes.fromhex(t) for t in json.loads(raw)["txs"]]
        receipts = [
            {"tx_id": hashlib.sha256(t).hexdigest(), "height": 1, "index": i, "code": "valid"}
            for i, t in enumerate(txs)
        ]
        body = json.dumps({"receipts": receipts}).encode()
        self.send_json(200, body)


_DONE = threading.Event()
"""Set when a test ends: the dripping answers stop (the server then closes)."""


class _DripsBody(_Hostile):
    """Answers a byte a second, for ever: no single read ever times out."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self._drip()

    def _drip(self) -> None:
        try:
            while not _DONE.wait(1.0):
                self.wfile.write(b" ")
                self.wfile.flush()
        except OSError:
            return


class _DripsHeaders(_DripsBody):
    """Never finishes its answer's headers: a header line a byte a second."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        self._drip()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    with EtcdCluster(tmp_path / "etcd", members=3) as running:
        yield running


def _seize_the_lead(cluster: EtcdCluster) -> None:
    """The hostile member writes the leader key for itself, on a lease that outlives the test."""
    with EtcdLog(cluster.endpoints) as log:
        key = base64.b64encode(log.prefix + b"leader").decode()
        lease = log.call("/v3/lease/grant", {"TTL": "120"})["ID"]
        value = base64.b64encode(HOSTILE.encode()).decode()
        log.call("/v3/kv/put", {"key": key, "value": value, "lease": str(lease)})


def _doubts(running: Running) -> float:
    registry = running.node.metrics.registry
    return registry.get_sample_value("sharechain_leader_doubts_total", {"leader": HOSTILE}) or 0.0


@pytest.mark.parametrize(
    ("liar", "within"),
    [(_Refuses, 15.0), (_Lies, 15.0), (_DripsBody, 40.0), (_DripsHeaders, 40.0)],
    ids=["refuses", "lies", "drips-body", "drips-headers"],
)
def test_a_leader_that_orders_nothing_is_appended_around(
    tmp_path: Path, cluster: EtcdCluster, liar: type[_Hostile], within: float
) -> None:
    consortium = Consortium.make(tmp_path)
    _seize_the_lead(cluster)
    _DONE.clear()
    # The honest nodes know each other: a block one of them reads from the log (rather
    # than being told of by its watch) waits for a peer to vouch for it (threat 46).
    ports = dict(zip(HONEST, free_ports(len(HONEST)), strict=True))
    with serving(liar) as hostile_url:
        peers = ((HOSTILE, hostile_url),)
        running = {
            org: run_node(
                consortium,
                org,
                port=ports[org],
                ordering="etcd",
                etcd_endpoints=cluster.endpoints,
                peers=peers
                + tuple((o, f"http://127.0.0.1:{p}") for o, p in ports.items() if o != org),
                max_wait=0.01,
                poll_interval=0.5,
                forward_timeout=1.0,
            )
            for org in HONEST
        }
        try:
            wait_until(lambda: all(r.node.leader is not None for r in running.values()))
            assert {r.node.leader.org for r in running.values() if r.node.leader} == {HOSTILE}
            started = time.monotonic()
            with running["hospital-a"].client() as client:
                receipts = client.submit(_records(consortium, "hospital-a", 3), timeout=within)
            assert {r.code for r in receipts} == {"valid"}
            assert time.monotonic() - started < within
            assert _doubts(running["hospital-a"]) >= 1
            # The other honest node commits the same block; the leader key is unchanged.
            height = max(r.height for r in receipts)
            wait_until(lambda: running["regulator"].node.ledger.height >= height)
            assert running["hospital-a"].node.leader.org == HOSTILE  # type: ignore[union-attr]
            # While it doubts that leader, the next batch goes into its own block at once.
            started = time.monotonic()
            with running["hospital-a"].client() as client:
                receipts = client.submit(_records(consortium, "hospital-a", 2, tag=5))
            assert {r.code for r in receipts} == {"valid"}
            assert time.monotonic() - started < 5.0
        finally:
            _DONE.set()
            shutdown_all(running.values())
