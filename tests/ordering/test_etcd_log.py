"""EtcdLog against real etcd clusters on 127.0.0.1: CAS appends, reads, watch, failures."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sharechain.errors import ConfigError, OrderingError
from sharechain.ordering.etcd_log import DEFAULT_MAX_BLOCK_BYTES, EtcdLog
from sharechain.ordering.etcd_process import EtcdCluster, free_ports


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.02)


class Watcher:
    """Runs `log.watch(from_height)` in a thread and records what it yields."""

    def __init__(self, log: EtcdLog, from_height: int) -> None:
        self.seen: list[tuple[int, bytes]] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(log, from_height), daemon=True)
        self._thread.start()

    def _run(self, log: EtcdLog, from_height: int) -> None:
        try:
            for item in log.watch(from_height, self.stop):
                self.seen.append(item)
        except BaseException as exc:
            self.error = exc

    def heights(self) -> list[int]:
        return [height for height, _ in self.seen]

    def wait_for(self, height: int, timeout: float = 10.0) -> None:
        wait_until(lambda: bool(self.seen) and self.seen[-1][0] >= height, timeout)

    def close(self) -> None:
        self.stop.set()
        self._thread.join(2.0)
        assert not self._thread.is_alive(), "watch did not stop within 2 s of stop being set"
        assert self.error is None, self.error


def block(height: int, writer: str = "w") -> bytes:
    return f"{writer}:block-{height}".encode()


def assert_contiguous(log: EtcdLog) -> list[tuple[int, bytes]]:
    blocks = list(log.range(0))
    assert [height for height, _ in blocks] == list(range(log.head() + 1))
    return blocks


# -- append and reads ----------------------------------------------------------


def test_empty_log(log: EtcdLog) -> None:
    assert log.head() == -1
    assert log.get(0) is None
    assert list(log.range(0)) == []


def test_append_get_range_head(log: EtcdLog) -> None:
    for height in range(5):
        assert log.append(height, block(height))
    assert log.head() == 4
    assert log.get(3) == block(3)
    assert log.get(5) is None
    assert list(log.range(0)) == [(h, block(h)) for h in range(5)]
    assert list(log.range(1, 3)) == [(1, block(1)), (2, block(2))]
    assert list(log.range(10)) == []


def test_taken_height_is_refused_but_identical_retry_is_accepted(log: EtcdLog) -> None:
    assert log.append(0, b"first")
    assert log.append(0, b"second") is False
    assert log.append(0, b"first") is True  # a retried append whose reply was lost
    assert log.get(0) == b"first"
    assert log.head() == 0


def test_append_out_of_order_raises_and_writes_nothing(log: EtcdLog) -> None:
    assert log.append(0, block(0))
    with pytest.raises(OrderingError, match=r"height 1 is not in the log yet"):
        log.append(2, block(2))
    assert log.get(2) is None
    assert log.head() == 0
    with pytest.raises(ValueError, match="height must be >= 0"):
        log.append(-1, b"x")


def test_range_reads_in_pages(etcd_cluster: EtcdCluster, prefix: str) -> None:
    with EtcdLog(etcd_cluster.endpoints, prefix=prefix, page_size=2) as small_pages:
        for height in range(7):
            assert small_pages.append(height, block(height))
        assert list(small_pages.range(0)) == [(h, block(h)) for h in range(7)]
        assert [h for h, _ in small_pages.range(3, 6)] == [3, 4, 5]


def test_prefixes_are_separate_logs(etcd_cluster: EtcdCluster, prefix: str) -> None:
    with (
        EtcdLog(etcd_cluster.endpoints, prefix=prefix + "a/") as first,
        EtcdLog(etcd_cluster.endpoints, prefix=prefix + "b/") as second,
    ):
        assert first.append(0, b"a0")
        assert second.head() == -1
        assert second.append(0, b"b0")
        assert first.get(0) == b"a0"


# -- concurrent writers ----------------------------------------------------------


def test_racing_threads_never_fork(etcd_cluster: EtcdCluster, prefix: str) -> None:
    total = 40
    won: dict[str, list[tuple[int, bytes]]] = {}

    def writer(name: str) -> None:
        mine: list[tuple[int, bytes]] = []
        with EtcdLog(etcd_cluster.endpoints, prefix=prefix) as own_log:
            attempt = 0
            while (height := own_log.head() + 1) < total:
                data = f"{name}-{attempt}".encode()
                attempt += 1
                if own_log.append(height, data):
                    mine.append((height, data))
        won[name] = mine

    threads = [threading.Thread(target=writer, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(won) == 4

    claimed = sorted(item for items in won.values() for item in items)
    assert [height for height, _ in claimed] == list(range(total))  # each height won once
    with EtcdLog(etcd_cluster.endpoints, prefix=prefix) as reader:
        assert list(reader.range(0)) == claimed  # and the log holds exactly the winners


_WRITER_SCRIPT = """
import json, sys, time
from sharechain.ordering.etcd_log import EtcdLog
endpoints, prefix, name, total, start_at = json.loads(sys.argv[1])
time.sleep(max(0.0, start_at - time.time()))
won = []
with EtcdLog(endpoints, prefix=prefix) as log:
    attempt = 0
    while (height := log.head() + 1) < total:
        data = f"{name}-{attempt}"
        attempt += 1
        if log.append(height, data.encode()):
            won.append([height, data])
print(json.dumps(won))
"""


def test_racing_processes_never_fork(etcd_cluster: EtcdCluster, prefix: str) -> None:
    total = 30
    start_at = time.time() + 1.5  # both processes start racing at the same moment
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WRITER_SCRIPT,
                json.dumps([etcd_cluster.endpoints, prefix, f"p{i}", total, start_at]),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    claimed: list[tuple[int, bytes]] = []
    for proc in procs:
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        claimed.extend((height, data.encode()) for height, data in json.loads(out))
    claimed.sort()
    assert [height for height, _ in claimed] == list(range(total))
    with EtcdLog(etcd_cluster.endpoints, prefix=prefix) as reader:
        assert list(reader.range(0)) == claimed


# -- watch -------------------------------------------------------------------------


def test_watch_catches_up_then_follows(log: EtcdLog) -> None:
    for height in range(5):
        assert log.append(height, block(height))
    watcher = Watcher(log, from_height=2)
    try:
        watcher.wait_for(4)
        for height in range(5, 10):
            assert log.append(height, block(height))
        watcher.wait_for(9)
    finally:
        watcher.close()
    assert watcher.seen == [(h, block(h)) for h in range(2, 10)]


def test_watch_from_empty_log_waits_for_first_block(log: EtcdLog) -> None:
    watcher = Watcher(log, from_height=0)
    try:
        time.sleep(0.3)
        assert watcher.seen == []
        assert log.append(0, block(0))
        watcher.wait_for(0)
    finally:
        watcher.close()
    assert watcher.seen == [(0, block(0))]


def test_watch_continues_across_compaction(etcd_cluster: EtcdCluster, log: EtcdLog) -> None:
    for height in range(3):
        assert log.append(height, block(height))
    watcher = Watcher(log, from_height=0)
    try:
        watcher.wait_for(2)
        etcd_cluster.compact()
        for height in range(3, 6):
            assert log.append(height, block(height))
        watcher.wait_for(5)
    finally:
        watcher.close()
    assert watcher.seen == [(h, block(h)) for h in range(6)]


def test_watch_recovers_when_its_start_revision_was_compacted(
    etcd_cluster: EtcdCluster, log: EtcdLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Force the race: between the catch-up read and the watch request, two
    # blocks land and the history is compacted, so etcd cancels the watch.
    for height in range(3):
        assert log.append(height, block(height))
    opened: list[int] = []
    open_watch = log._open_watch

    def compacting_open_watch(endpoint: int, height: int, revision: int) -> object:
        opened.append(revision)
        if len(opened) == 1:
            assert log.append(3, block(3))
            assert log.append(4, block(4))
            assert etcd_cluster.compact() > revision
        return open_watch(endpoint, height, revision)

    monkeypatch.setattr(log, "_open_watch", compacting_open_watch)
    watcher = Watcher(log, from_height=1)
    try:
        watcher.wait_for(4)
        assert log.append(5, block(5))
        watcher.wait_for(5)
    finally:
        watcher.close()
    assert watcher.seen == [(h, block(h)) for h in range(1, 6)]
    assert len(opened) >= 2  # the cancelled watch was re-established


def test_watch_survives_its_endpoint_going_away(fresh_cluster: EtcdCluster) -> None:
    with (
        EtcdLog(fresh_cluster.endpoints) as follower,
        EtcdLog(fresh_cluster.endpoints[1:]) as writer,
    ):
        for height in range(3):
            assert writer.append(height, block(height))
        watcher = Watcher(follower, from_height=0)
        try:
            watcher.wait_for(2)
            fresh_cluster.stop_member(0)  # the member the follower reads from
            for height in range(3, 8):
                assert writer.append(height, block(height))
            watcher.wait_for(7)
        finally:
            watcher.close()
    assert watcher.seen == [(h, block(h)) for h in range(8)]


# -- failures and limits -------------------------------------------------------------


def test_quorum_loss_fails_clearly_without_forking(fresh_cluster: EtcdCluster) -> None:
    endpoints = fresh_cluster.endpoints
    with EtcdLog(endpoints, timeout=3.0) as log:
        for height in range(3):
            assert log.append(height, block(height))

        fresh_cluster.stop_member(0)
        for height in range(3, 6):
            assert log.append(height, block(height))
        reachable = [status.reachable for status in log.status()]
        assert reachable == [False, True, True]

        fresh_cluster.stop_member(1)
        started = time.monotonic()
        with pytest.raises(OrderingError, match="no etcd quorum answered") as failure:
            log.append(6, block(6))
        assert time.monotonic() - started < 3.0 + 1.5
        assert all(endpoint in str(failure.value) for endpoint in endpoints)
        assert "majority of the etcd members" in str(failure.value)

        fresh_cluster.start_member(1, wait=True)
        # The timed-out append may or may not have landed; it is never a fork.
        assert log.get(6) in (None, block(6))
        next_height = log.head() + 1
        for height in range(next_height, next_height + 3):
            assert log.append(height, block(height))
        blocks = assert_contiguous(log)
    assert blocks == [(h, block(h)) for h in range(next_height + 3)]


def test_block_near_the_size_limit_is_stored(log: EtcdLog) -> None:
    # The shared cluster runs with etcd's default 1.5 MiB request limit.
    data = bytes(range(256)) * (DEFAULT_MAX_BLOCK_BYTES // 256)
    assert len(data) > DEFAULT_MAX_BLOCK_BYTES - 256
    assert log.append(0, data)
    assert log.get(0) == data


def test_block_above_the_size_limit_is_refused_before_sending(log: EtcdLog) -> None:
    with pytest.raises(OrderingError, match=r"above the limit of \d+ bytes"):
        log.append(0, b"\x01" * (DEFAULT_MAX_BLOCK_BYTES + 1))
    assert log.get(0) is None
    assert log.head() == -1


def test_block_above_the_server_limit_is_refused_clearly(
    etcd_cluster: EtcdCluster, prefix: str
) -> None:
    # A client configured with a larger limit than the members: etcd refuses.
    with EtcdLog(etcd_cluster.endpoints, prefix=prefix, max_block_bytes=4 << 20) as log:
        with pytest.raises(OrderingError, match=r"too large.*--max-request-bytes"):
            log.append(0, b"\x02" * (2 << 20))
        assert log.get(0) is None


def test_status_reports_every_member(etcd_cluster: EtcdCluster, log: EtcdLog) -> None:
    statuses = log.status()
    assert [status.endpoint for status in statuses] == list(etcd_cluster.endpoints)
    assert [status.name for status in statuses] == ["m0", "m1", "m2"]
    assert all(status.reachable and status.error == "" for status in statuses)
    assert sum(status.is_leader for status in statuses) == 1
    assert len({status.leader_id for status in statuses}) == 1
    assert all(status.raft_index > 0 and status.db_size > 0 for status in statuses)


def test_unreachable_endpoints_raise_within_timeout() -> None:
    endpoints = [f"http://127.0.0.1:{port}" for port in free_ports(2)]
    with EtcdLog(endpoints, timeout=0.5) as log:
        started = time.monotonic()
        with pytest.raises(OrderingError, match="no etcd quorum answered") as failure:
            log.head()
        assert time.monotonic() - started < 2.0
        assert all(endpoint in str(failure.value) for endpoint in endpoints)
        assert [status.reachable for status in log.status()] == [False, False]


def test_missing_etcd_binary_is_a_config_error(tmp_path: Path) -> None:
    cluster = EtcdCluster(tmp_path, binary="etcd-not-installed-here")
    with pytest.raises(ConfigError, match="apt-get install etcd-server"):
        cluster.start()


def test_the_watch_marks_what_a_range_read_returned_and_what_an_event_delivered(
    log: EtcdLog,
) -> None:
    """A range read returns what a key holds now (rewritten or not): `node.vouching`
    checks those; an event is the first write of its height after the read."""
    for height in range(3):
        assert log.append(height, block(height))
    log.call(  # rewritten by hand after it was appended: a range read sees the rewrite
        "/v3/kv/put",
        {"key": _b64(log.block_key(1)), "value": _b64(b"rewritten")},
    )
    stop = threading.Event()
    seen: list[tuple[int, bytes, bool]] = []

    def run() -> None:
        for item in log.watch_marked(0, stop):
            seen.append(item)

    reader = threading.Thread(target=run, daemon=True)
    reader.start()
    try:
        wait_until(lambda: len(seen) == 3)
        assert log.append(3, block(3))
        wait_until(lambda: len(seen) == 4)
    finally:
        stop.set()
        reader.join(2.0)
    assert seen == [
        (0, block(0), False),
        (1, b"rewritten", False),
        (2, block(2), False),
        (3, block(3), True),
    ]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _watch_readers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "etcd-watch" and t.is_alive()}


def test_a_closed_log_leaves_no_watch_reader_inside_its_connection(
    etcd_cluster: EtcdCluster, prefix: str
) -> None:
    """`close` returns once every watch stream's reader has left its connection.

    A reader still waiting in a connection that `close` then closed kept waiting
    on a descriptor whose number the next file opened could take. When its wait
    ended, OpenSSL read that file and wrote a TLS alert into it: a node restarted
    in the same process found "SQLit" followed by a TLS record as its ledger
    database's header ("file is not a database"). Before, the reader stayed
    until its idle timeout (5 s), after `close`.
    """
    before = _watch_readers()
    log = EtcdLog(etcd_cluster.endpoints, prefix=prefix, timeout=10.0)
    try:
        assert log.append(0, block(0))
        watcher = Watcher(log, from_height=0)
        watcher.wait_for(0)
        wait_until(lambda: bool(_watch_readers() - before))  # its stream waits for events
        watcher.close()
    finally:
        log.close()
    assert _watch_readers() - before == set()
