"""Attack 38: a member raises etcd's NOSPACE alarm by hand, and ordering stops for all.

etcd 3.4 lets any authenticated user raise an alarm, naming any member id,
real or made up, and one NOSPACE alarm makes every member refuse every write.
Each node reads the alarms every few seconds (every second while one stands);
a NOSPACE alarm that no member's database size supports (each is 10% or more
below its quota) is lifted (`ordering.compaction`). A real NOSPACE is kept:
`tests/node/test_compaction.py`. Real 3-member etcd with TLS and users; a
real HTTP server as a member that answers without end.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))

from liar_server import Quiet, serving
from node_helpers import Consortium, Running, run_node, shutdown
from test_replication import _records, wait_until

from sharechain.errors import OrderingError
from sharechain.ordering import etcd_compact
from sharechain.ordering.etcd_log import EtcdLog
from sharechain.ordering.etcd_process import EtcdCluster
from sharechain.ordering.etcd_tls import etcd_http_client

MADE_UP_MEMBER = 0xDEAD


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    with EtcdCluster(tmp_path / "etcd", members=3, tls=True) as running:
        yield running


def _raise_nospace(cluster: EtcdCluster, attacker: str) -> None:
    """`attacker`'s node's etcd user raises NOSPACE for a real member and a made-up one."""
    tls = cluster.client_tls(attacker)
    with etcd_http_client(tls, timeout=5.0) as client:
        url = cluster.endpoints[0]
        listed = client.post(url + "/v3/cluster/member/list", json={}).json()
        for member in (int(listed["members"][0]["ID"]), MADE_UP_MEMBER):
            body = {"action": "ACTIVATE", "memberID": str(member), "alarm": "NOSPACE"}
            reply = client.post(url + "/v3/maintenance/alarm", json=body)
            assert reply.status_code == 200, reply.text


def _node(consortium: Consortium, cluster: EtcdCluster, org: str) -> Running:
    return run_node(
        consortium,
        org,
        ordering="etcd",
        etcd_endpoints=cluster.endpoints,
        etcd_tls=cluster.client_tls(org),
        max_wait=0.01,
        poll_interval=0.5,
    )


def _disarmed(running: Running) -> float:
    registry = running.node.metrics.registry
    return registry.get_sample_value("sharechain_etcd_alarm_disarmed_total") or 0.0


def test_a_hand_raised_nospace_alarm_is_lifted_and_ordering_goes_on(
    tmp_path: Path, cluster: EtcdCluster
) -> None:
    consortium = Consortium.make(tmp_path)
    shutdown(_node(consortium, cluster, "hospital-a"))  # the chain's genesis is in etcd
    _raise_nospace(cluster, "bank-b")
    # The attack works: with the alarm up, etcd refuses every member's writes.
    with (
        EtcdLog(cluster.endpoints, timeout=5.0, tls=cluster.client_tls("regulator")) as log,
        pytest.raises(OrderingError, match="out of space"),
    ):
        log.append(log.head() + 1, b"a block")
    running = _node(consortium, cluster, "hospital-a")  # starts under the alarm
    try:
        # The node finds both alarms unfounded (every database is nearly empty),
        # lifts them, and orders.
        wait_until(lambda: _disarmed(running) == 2, timeout=20)
        wait_until(lambda: running.node.leader is not None)  # its lease, granted after the lift
        with running.client() as client:
            receipts = client.submit(_records(consortium, "hospital-a", 3))
        assert {r.code for r in receipts} == {"valid"}
        # Raised again while the node runs: lifted within seconds, without a restart.
        _raise_nospace(cluster, "bank-b")
        wait_until(lambda: _disarmed(running) == 4, timeout=20)
        with running.client() as client:
            receipts = client.submit(_records(consortium, "hospital-a", 3, tag=7))
        assert {r.code for r in receipts} == {"valid"}
        assert running.node.halted is None
        with EtcdLog(cluster.endpoints, timeout=5.0, tls=cluster.client_tls("regulator")) as log:
            assert etcd_compact.alarms(log) == ()
        with httpx.Client() as http:
            assert http.get(f"{running.url}/v1/health").json()["status"] == "ok"
    finally:
        shutdown(running)


class _EndlessMetrics(Quiet):
    """An etcd member that says its database is small, then streams metrics without end."""

    def do_POST(self) -> None:
        body = b'{"dbSize": "4096"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        line = b"x" * 65_535 + b"\n"
        try:
            while True:
                self.wfile.write(line)
        except OSError:
            return


def test_a_member_s_endless_metrics_are_cut_off_and_lift_nothing() -> None:
    with serving(_EndlessMetrics) as url, httpx.Client() as client:
        found, failed = etcd_compact.spaces((url,), client, timeout=10.0)
    assert found == () and len(failed) == 1 and "first 4 MiB" in failed[0]
    assert not etcd_compact.unfounded(found, 1)
