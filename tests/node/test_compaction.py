"""etcd mode: the leader prunes attested blocks; a node behind the pruning fetches from peers."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from node_helpers import Consortium, Running, shutdown, shutdown_all
from typer.testing import CliRunner

from sharechain.cli.main import app
from sharechain.errors import OrderingError
from sharechain.ledger.transactions import sign_transaction
from sharechain.node.server import ServerThread
from sharechain.node.service import Node, NodeConfig
from sharechain.ordering import etcd_compact
from sharechain.ordering.etcd_log import EtcdLog
from sharechain.ordering.etcd_process import EtcdCluster, free_ports

ORGS = ("hospital-a", "bank-b", "regulator")


def wait_until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)


def _records(consortium: Consortium, org: str, n: int, tag: int, note: int = 0) -> list[bytes]:
    key = consortium.keys(org).signing
    payload: dict[str, object] = {"note": "n" * note} if note else {}
    return [
        sign_transaction(
            key,
            "notary.record",
            org,
            {"digest": tag.to_bytes(4, "big") + i.to_bytes(28, "big"), **payload},
        ).raw
        for i in range(n)
    ]


def _start(
    consortium: Consortium, cluster: EtcdCluster, ports: dict[str, int], org: str, **options: object
) -> Running:
    peers = tuple((o, f"http://127.0.0.1:{p}") for o, p in ports.items() if o != org)
    settings: dict[str, object] = {
        "max_wait": 0.01,
        "max_block_txs": 50,
        "poll_interval": 0.3,
        "compaction_interval": 0.5,
        "compaction_keep": 2,
        "defrag_interval": 1.0,
        **options,
    }
    node = Node(
        NodeConfig(
            data_dir=consortium.node_dir(org),
            org=org,
            ordering="etcd",
            etcd_endpoints=cluster.endpoints,
            peers=peers,
            **settings,  # type: ignore[arg-type]
        )
    )
    node.start()
    return Running(node, ServerThread(node, port=ports[org]).start(), consortium)


def _submit(consortium: Consortium, running: Running, n: int, tag: int, note: int = 0) -> None:
    with running.client() as client:
        for start in range(0, n, 500):
            receipts = client.submit(
                _records(consortium, running.node.org, min(500, n - start), tag + start, note)
            )
            assert {r.code for r in receipts} == {"valid"}


def _pruned(running: Running) -> float:
    value = running.node.metrics.registry.get_sample_value("sharechain_etcd_pruned_height")
    return value or 0.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    with EtcdCluster(tmp_path / "etcd", members=3) as running:
        yield running


def test_attested_blocks_leave_etcd_and_a_wiped_node_catches_up_from_peers(
    consortium: Consortium, cluster: EtcdCluster, caplog: pytest.LogCaptureFixture
) -> None:
    # Elections and leads are logged at INFO: a failure shows who led when (a clean-
    # clone run once failed here after a lease expired under load, and said no more).
    caplog.set_level(logging.INFO, logger="sharechain.node")
    ports = dict(zip(ORGS, free_ports(len(ORGS)), strict=True))
    nodes = {org: _start(consortium, cluster, ports, org) for org in ORGS}
    try:
        wait_until(lambda: all(r.node.leader is not None for r in nodes.values()))
        leader = next(iter(nodes.values())).node.leader
        assert leader is not None
        for i, running in enumerate(nodes.values()):
            _submit(consortium, running, 300, tag=1000 * i)
        wait_until(lambda: len({r.node.ledger.height for r in nodes.values()}) == 1)
        height = nodes[leader.org].node.ledger.height
        with EtcdLog(cluster.endpoints) as log:
            # Every node attested the head; the leader prunes all but the last two and the tip.
            wait_until(lambda: etcd_compact.oldest_height(log) >= height - 2)
            assert log.get(0) is not None and log.get(height) is not None
            assert log.get(1) is None
            # The gauge is set once the round that deleted them ends (after the
            # deletes): wait for it rather than race it.
            wait_until(lambda: _pruned(nodes[leader.org]) >= height - 2)
            assert all(_pruned(r) == 0 for o, r in nodes.items() if o != leader.org)
            # History compacted: the revision of the first block is gone.
            with pytest.raises(OrderingError, match="compacted"):
                log.call("/v3/kv/range", {"key": "AA==", "revision": "2"})
            assert log.append(1, b"a fork at a pruned height") is False

            # A follower loses its store (an old disk, a fresh machine) and starts again:
            # the blocks it needs are no longer in etcd, so its peers supply them.
            behind = next(o for o in ORGS if o != leader.org)
            shutdown(nodes.pop(behind))
            for path in consortium.node_dir(behind).glob("ledger.db*"):
                path.unlink()
            _submit(consortium, nodes[leader.org], 200, tag=90_000)
            assert etcd_compact.oldest_height(log) > 1  # blocks 1.. only at the peers
            nodes[behind] = _start(consortium, cluster, ports, behind)
            wait_until(lambda: len({r.node.ledger.height for r in nodes.values()}) == 1)
        roots = {r.node.store.head().state_root for r in nodes.values()}  # type: ignore[union-attr]
        assert len(roots) == 1
        assert not any(r.node.halted for r in nodes.values())
    finally:
        shutdown_all(nodes.values())


def test_nospace_alarm_shows_in_health_status_and_metrics_without_a_crash(
    consortium: Consortium, tmp_path: Path
) -> None:
    quota = 16 * 1024 * 1024
    (port,) = free_ports(1)
    with EtcdCluster(
        tmp_path / "quota", members=3, extra_args=(f"--quota-backend-bytes={quota}",)
    ) as cluster:
        # No defragmentation by the node: it would shrink the files below the quota.
        running = _start(
            consortium, cluster, {"hospital-a": port}, "hospital-a", defrag_interval=3600.0
        )
        try:
            wait_until(lambda: running.node.leader is not None)
            with httpx.Client() as http:
                assert http.get(f"{running.url}/v1/health").json()["status"] == "ok"
            # bank-b and regulator run no node here, so nothing is ever attested by
            # them: the leader prunes nothing, however many rounds pass.
            _submit(consortium, running, 200, tag=0)
            time.sleep(2.0)  # four compaction rounds
            with EtcdLog(cluster.endpoints) as log:
                assert log.head() > 3 and etcd_compact.oldest_height(log) == 1
            assert _pruned(running) == 0
            # Somebody else's data fills etcd until it raises the alarm.
            with (
                EtcdLog(cluster.endpoints, prefix="junk/", max_block_bytes=2**21) as junk,
                pytest.raises(OrderingError, match="out of space"),
            ):
                for height in range(64):
                    junk.append(height, bytes(2**20) + height.to_bytes(4, "big"))
            wait_until(lambda: bool(running.node.etcd_alarms), timeout=15)
            with httpx.Client() as http:
                health = http.get(f"{running.url}/v1/health")
            assert health.status_code == 200
            assert health.json()["status"] == "alarm"
            assert "NOSPACE" in health.json()["alarms"][0]
            with running.client() as client:
                status = client.status()
            assert "NOSPACE" in status["alarms"][0]
            assert status["etcd"]["nospace"] is True and "NOSPACE" in status["etcd"]["alarms"][0]
            # `sharechain node status` says so too, and exits 1 while the alarm stands.
            key = str(consortium.source / "keys" / "hospital-a.key")
            shown = CliRunner().invoke(app, ["node", "status", "--node", running.url, "--key", key])
            assert shown.exit_code == 1 and "etcd quota: NOSPACE" in shown.output
            registry = running.node.metrics.registry
            assert registry.get_sample_value("sharechain_etcd_alarm", {"alarm": "NOSPACE"}) == 1
            assert running.node.halted is None and running.node.ready
            # A real NOSPACE stays raised: every member's database is at its quota.
            time.sleep(3.0)  # three polls while the alarm stands
            assert running.node.etcd_alarms
            assert registry.get_sample_value("sharechain_etcd_alarm_disarmed_total") == 0
            # The operator frees the space (deletes, compacts, defragments); the node
            # then finds the alarm unfounded and lifts it, and ordering resumes.
            with EtcdLog(cluster.endpoints) as operator:
                gone = operator.call(
                    "/v3/kv/deleterange",
                    {
                        "key": base64.b64encode(b"junk/").decode(),
                        "range_end": base64.b64encode(b"junk0").decode(),
                    },
                )
                etcd_compact.compact(operator, int(gone["header"]["revision"]))
            with httpx.Client() as http:
                assert etcd_compact.defragment(cluster.endpoints, http) == ()
            wait_until(lambda: not running.node.etcd_alarms, timeout=15)
            assert registry.get_sample_value("sharechain_etcd_alarm_disarmed_total") >= 1
            with httpx.Client() as http:
                assert http.get(f"{running.url}/v1/health").json()["status"] == "ok"
            _submit(consortium, running, 20, tag=50_000)
        finally:
            shutdown(running)


# Each transaction carries a note, so that the blocks written outgrow the quota: without
# pruning, compaction and defragmentation etcd would refuse writes before the end. The CI
# version writes few large transactions (the network's cost is per transaction); the soak
# version many small ones.
@pytest.mark.parametrize(
    ("transactions", "note", "quota_mib"),
    [
        pytest.param(7_000, 3_600, 24, id="7k-24MiB", marks=pytest.mark.slow),
        pytest.param(200_000, 400, 64, id="200k-64MiB", marks=pytest.mark.soak),
    ],
)
def test_a_long_run_never_reaches_a_small_quota(
    consortium: Consortium, tmp_path: Path, transactions: int, note: int, quota_mib: int
) -> None:
    quota = quota_mib * 1024 * 1024
    ports = dict(zip(ORGS, free_ports(len(ORGS)), strict=True))
    with EtcdCluster(
        tmp_path / "etcd", members=3, extra_args=(f"--quota-backend-bytes={quota}",)
    ) as cluster:
        nodes = {
            org: _start(consortium, cluster, ports, org, max_block_txs=500, defrag_interval=3.0)
            for org in ORGS
        }
        try:
            wait_until(lambda: all(r.node.leader is not None for r in nodes.values()))
            leader = nodes[ORGS[0]].node.leader
            assert leader is not None
            _submit(consortium, nodes[leader.org], transactions, tag=0, note=note)
            wait_until(lambda: len({r.node.ledger.height for r in nodes.values()}) == 1)
            with EtcdLog(cluster.endpoints) as log:
                height = log.head()
                wait_until(lambda: etcd_compact.oldest_height(log) >= height - 2)
                assert etcd_compact.alarms(log) == ()
                sizes = [s.db_size for s in log.status()]
            store = nodes[leader.org].node.store
            written = sum(len(store.block_bytes(h) or b"") for h in range(height + 1))
            # The blocks written would not fit under the quota; etcd's databases hold less
            # than either: pruning, compaction and defragmentation freed the space.
            assert written > quota
            assert max(sizes) < quota
            assert not any(r.node.etcd_alarms or r.node.halted for r in nodes.values())
            roots = {r.node.store.head().state_root for r in nodes.values()}  # type: ignore[union-attr]
            assert len(roots) == 1
            print(
                f"{transactions} txs, {height} blocks, {written} bytes, "
                f"etcd db {sizes} (quota {quota})"
            )
        finally:
            shutdown_all(nodes.values())
