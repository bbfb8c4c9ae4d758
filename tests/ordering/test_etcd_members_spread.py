"""Each node starts on its own etcd member (`etcd_gateway.member_for`): given the
endpoints in the same order, every node used to read its watch and send its
appends through the first member, which did about four times the others' work."""

from __future__ import annotations

import threading
import time

import httpx

from sharechain.ordering.etcd_gateway import member_for
from sharechain.ordering.etcd_log import EtcdLog
from sharechain.ordering.etcd_process import EtcdCluster

ORGS = ("hospital-a", "bank-c", "regulator", "hospital-b")


def test_the_nodes_of_a_consortium_start_on_every_member_in_turn() -> None:
    firsts = [member_for(org, [o for o in ORGS if o != org], 3) for org in ORGS]
    # Sorted: bank-c, hospital-a, hospital-b, regulator -> members 0, 1, 2, 0.
    assert dict(zip(ORGS, firsts, strict=True)) == {
        "bank-c": 0,
        "hospital-a": 1,
        "hospital-b": 2,
        "regulator": 0,
    }
    # The same place whatever order the peers are listed in, and whether the node
    # is among them or not.
    assert member_for("hospital-b", reversed(ORGS), 3) == 2
    assert member_for("solo", [], 3) == 0
    assert member_for("bank-c", ORGS, 1) == 0


def _metric(endpoint: str, line_start: str) -> float:
    text = httpx.get(endpoint + "/metrics", timeout=5).text
    return sum(float(x.split()[-1]) for x in text.splitlines() if x.startswith(line_start))


_WATCHES = "etcd_debugging_mvcc_watch_stream_total "
_RANGES = 'grpc_server_handled_total{grpc_code="OK",grpc_method="Range"'


def test_a_log_reads_and_watches_through_the_member_it_is_given(
    fresh_cluster: EtcdCluster,
) -> None:
    endpoints = fresh_cluster.endpoints
    before = [_metric(e, _RANGES) for e in endpoints]
    with EtcdLog(endpoints, first=2, watch_idle_timeout=30.0) as log:
        assert log.head() == -1
        ranges = [_metric(e, _RANGES) - b for e, b in zip(endpoints, before, strict=True)]
        assert ranges[2] >= 1 and ranges[0] == ranges[1] == 0

        stop = threading.Event()

        def follow() -> None:
            for _ in log.watch(0):
                if stop.is_set():
                    return

        watcher = threading.Thread(target=follow, daemon=True)
        watcher.start()
        deadline = time.monotonic() + 10
        while _metric(endpoints[2], _WATCHES) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [_metric(e, _WATCHES) for e in endpoints] == [0, 0, 1]
        stop.set()
        log.append(0, b"genesis")  # an event ends the watch's wait; it sees `stop`
        watcher.join(timeout=10)
        assert not watcher.is_alive()
