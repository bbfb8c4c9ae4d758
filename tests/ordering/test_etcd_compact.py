"""Pruning, compacting and defragmenting the etcd block log; alarms (real etcd)."""

from __future__ import annotations

import base64
import itertools
from pathlib import Path

import httpx
import pytest

from sharechain.errors import OrderingError
from sharechain.ordering import etcd_compact
from sharechain.ordering.etcd_compact import Alarm, Space, prunable_height
from sharechain.ordering.etcd_log import EtcdLog
from sharechain.ordering.etcd_process import EtcdCluster, free_ports


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _fill(log: EtcdLog, count: int) -> None:
    for height in range(count):
        assert log.append(height, f"block {height}".encode())


def _lead(log: EtcdLog, org: str) -> None:
    log.call("/v3/kv/put", {"key": _b64(log.prefix + b"leader"), "value": _b64(org.encode())})


# -- the pure decision ----------------------------------------------------------


def test_prunable_height_is_the_lowest_attestation_minus_keep() -> None:
    members = ("bank-b", "regulator")
    assert prunable_height(100, {"bank-b": 80, "regulator": 90}, members, 100, keep=5) == 75
    # This node's own height bounds it too.
    assert prunable_height(60, {"bank-b": 80, "regulator": 90}, members, 100, keep=0) == 60
    # Never the tip: the head block stays in etcd, appends compare on it.
    assert prunable_height(100, {"bank-b": 100, "regulator": 100}, members, 100, keep=0) == 99


def test_prunable_height_is_zero_while_a_member_has_not_attested() -> None:
    assert prunable_height(100, {"bank-b": 80}, ("bank-b", "regulator"), 100, keep=0) == 0
    assert prunable_height(100, {"bank-b": 3}, ("bank-b",), 100, keep=5) == 0
    with pytest.raises(ValueError, match="keep must be"):
        prunable_height(100, {}, (), 100, keep=-1)


# -- prune, compact, and the append's compare-and-set afterwards ----------------


def test_prune_removes_blocks_keeps_genesis_and_tip_and_compacts(log: EtcdLog) -> None:
    _fill(log, 21)
    _lead(log, "hospital-a")
    assert etcd_compact.oldest_height(log) == 1
    pruned = etcd_compact.prune(log, 10, "hospital-a")
    assert (pruned.upto, pruned.deleted) == (10, 10)
    assert [log.get(h) for h in range(1, 11)] == [None] * 10
    assert log.get(0) == b"block 0"
    assert log.get(11) == b"block 11"
    assert log.head() == 20
    assert etcd_compact.oldest_height(log) == 11
    assert [h for h, _ in log.range(0)] == [0, *range(11, 21)]

    etcd_compact.compact(log, pruned.revision)
    etcd_compact.compact(log, pruned.revision)  # again: already compacted, no error
    with pytest.raises(OrderingError, match="compacted"):
        log.call(
            "/v3/kv/range",
            {"key": _b64(log.prefix + b"head"), "revision": str(pruned.revision - 1)},
        )
    # Repeating the round deletes nothing more and does no harm.
    assert etcd_compact.prune(log, 10, "hospital-a").deleted == 0


def test_append_refuses_a_second_block_at_a_pruned_height(log: EtcdLog) -> None:
    _fill(log, 12)
    _lead(log, "hospital-a")
    etcd_compact.prune(log, 8, "hospital-a")
    for height in (1, 5, 8):
        assert log.append(height, b"a fork") is False
        assert log.get(height) is None
    assert log.append(0, b"another genesis") is False
    assert log.append(11, b"another block 11") is False
    assert log.head() == 11
    with pytest.raises(OrderingError, match="not in the log yet"):
        log.append(13, b"a hole")
    assert log.append(12, b"block 12") is True
    assert [h for h, _ in log.range(9)] == [9, 10, 11, 12]


def test_watch_from_the_oldest_height_after_pruning(log: EtcdLog) -> None:
    _fill(log, 10)
    _lead(log, "hospital-a")
    etcd_compact.prune(log, 6, "hospital-a")
    seen = list(itertools.islice(log.watch(etcd_compact.oldest_height(log)), 3))
    assert seen == [(7, b"block 7"), (8, b"block 8"), (9, b"block 9")]


def test_only_the_leader_prunes_and_never_the_tip(log: EtcdLog) -> None:
    _fill(log, 6)
    with pytest.raises(OrderingError, match="leader key"):
        etcd_compact.prune(log, 3, "bank-b")  # nobody leads
    _lead(log, "hospital-a")
    with pytest.raises(OrderingError, match="leader key"):
        etcd_compact.prune(log, 3, "bank-b")  # somebody else leads
    with pytest.raises(OrderingError, match="tip must stay"):
        etcd_compact.prune(log, 5, "hospital-a")  # 5 is the head
    assert etcd_compact.oldest_height(log) == 1
    assert etcd_compact.prune(log, 0, "hospital-a").deleted == 0


def test_defragment_every_member_and_report_the_unreachable(etcd_cluster: EtcdCluster) -> None:
    (dead_port,) = free_ports(1)
    dead = f"http://127.0.0.1:{dead_port}"
    with httpx.Client() as client:
        assert etcd_compact.defragment(etcd_cluster.endpoints, client) == ()
        failed = etcd_compact.defragment((*etcd_cluster.endpoints, dead), client, timeout=2.0)
    assert len(failed) == 1 and failed[0].startswith(dead)


# -- the space quota ------------------------------------------------------------


def test_nospace_alarm_is_read_when_the_quota_is_reached(tmp_path: Path) -> None:
    quota = 16 * 1024 * 1024
    with (
        EtcdCluster(
            tmp_path / "etcd", members=3, extra_args=(f"--quota-backend-bytes={quota}",)
        ) as cluster,
        EtcdLog(cluster.endpoints, max_block_bytes=2 * 1024 * 1024) as log,
    ):
        assert etcd_compact.alarms(log) == ()
        block = bytes(1024 * 1024)
        with pytest.raises(OrderingError, match="out of space"):
            for height in range(64):
                log.append(height, block + height.to_bytes(4, "big"))
        found = etcd_compact.alarms(log)
        assert found and {a.kind for a in found} == {"NOSPACE"}
        assert "quota" in found[0].describe()
        # Reads still work under the alarm: nothing is lost.
        assert log.get(0) is not None


def test_alarm_descriptions_name_the_member() -> None:
    assert "NOSPACE" in Alarm(0xABC, "NOSPACE").describe()
    assert Alarm(0xABC, "CORRUPT").describe() == "etcd member abc raised alarm CORRUPT"


def test_a_nospace_alarm_is_unfounded_only_if_a_majority_has_room() -> None:
    roomy = Space("a", 10, 100)
    at_the_edge = Space("b", 91, 100)  # within HEADROOM of its quota
    assert etcd_compact.unfounded((roomy, roomy), members=3)
    assert not etcd_compact.unfounded((roomy, at_the_edge), members=3)
    assert not etcd_compact.unfounded((roomy,), members=3)  # two did not answer
    assert not etcd_compact.unfounded((), members=0)


def test_spaces_reads_each_member_s_size_and_quota(tmp_path: Path) -> None:
    quota = 16 * 1024 * 1024
    (dead_port,) = free_ports(1)
    with (
        EtcdCluster(
            tmp_path / "etcd", members=1, extra_args=(f"--quota-backend-bytes={quota}",)
        ) as cluster,
        httpx.Client() as client,
    ):
        found, failed = etcd_compact.spaces(
            (*cluster.endpoints, f"http://127.0.0.1:{dead_port}"), client, timeout=2.0
        )
    assert [(s.endpoint, s.quota) for s in found] == [(cluster.endpoints[0], quota)]
    assert 0 < found[0].db_size < quota
    assert len(failed) == 1 and failed[0].startswith(f"http://127.0.0.1:{dead_port}")
