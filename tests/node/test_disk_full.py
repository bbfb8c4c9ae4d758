"""A full disk (a small tmpfs filled to the last byte, never the real disk): the node refuses
work with 503 disk_full, says so in health and metrics, keeps its store intact and
resumes, catching up, when space returns."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from node_helpers import ORGS, Consortium, Running, run_node, shutdown
from prometheus_client import CollectorRegistry
from test_replication import _records, wait_until
from test_snapshot_start import _with_settings

from sharechain.api.client import NodeClient
from sharechain.ledger.store import Store
from sharechain.ledger.store_reads import wal_limit_for
from sharechain.ledger.verify import verify_ledger
from sharechain.node.launcher import node_data_dir
from sharechain.node.server import ServerThread
from sharechain.node.service import Node, NodeConfig
from sharechain.storage.datadir import init_consortium
from sharechain.storage.diskspace import SPARE_FILE, DiskFullError, DiskGuard, is_disk_full


@pytest.fixture
def small_disk(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A 12 MiB tmpfs, or of the size the test asks for with `indirect` parametrisation
    (needs root to mount; skipped otherwise)."""
    size = getattr(request, "param", "12m")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({done.stderr.decode().strip()}): a real full disk "
            "needs root; the alarm's rules are tested without it in test_disk_guard.py"
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    """Fill `disk` to the last byte; the ballast file to delete to give the space back."""
    ballast = disk / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (64 * 1024, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, bytes(size))
    finally:
        os.close(fd)
    return ballast


def test_a_commit_that_finds_the_disk_full_rolls_back_and_the_store_goes_on(
    small_disk: Path,
) -> None:
    store = Store(small_disk / "ledger.db")
    try:
        ballast = _fill(small_disk)
        block = {
            "height": 0,
            "block_hash": bytes(32),
            "state_root": bytes(32),
            "timestamp": 0,
            "data": b"block",
            "txs": [],
            "writes": {f"k{i}": os.urandom(1024) for i in range(2048)},
            "history": [],
        }
        with pytest.raises(sqlite3.OperationalError) as failed:
            store.commit_block(**block)  # type: ignore[arg-type]
        assert is_disk_full(failed.value)
        assert store.head() is None and store.get("k1") is None
        ballast.unlink()
        store.commit_block(**block)  # type: ignore[arg-type]  # not wedged in a transaction
        assert store.head() is not None and store.integrity_check() == "ok"
    finally:
        store.close()
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))


def _follower_on(tmp_path: Path, disk: Path) -> tuple[Consortium, Running, NodeConfig]:
    """A consortium with a 1 MiB disk reserve, its orderer (hospital-a) running, and the
    configuration of bank-b's node, whose data directory is on `disk`."""
    init_consortium(tmp_path / "consortium", ORGS, consortium="test")
    _with_settings(tmp_path / "consortium", disk_reserve_bytes=1024 * 1024, snapshot_blocks=0)
    consortium = Consortium(tmp_path / "consortium", tmp_path)
    data_dir = node_data_dir(consortium.source, disk / "bank-b", "bank-b")
    orderer = run_node(consortium, "hospital-a", max_wait=0.005)
    config = NodeConfig(
        data_dir=data_dir,
        org="bank-b",
        orderer_url=orderer.url,
        peers=(("hospital-a", orderer.url),),
    )
    return consortium, orderer, config


def _submit_nothing(client: NodeClient) -> httpx.Response:
    """A signed submission of no transactions: a write the node refuses while its disk is full."""
    return client.http.post(
        "/v1/txs", content=b'{"txs": []}', headers={"content-type": "application/json"}
    )


def test_a_node_whose_disk_fills_refuses_work_then_resumes_and_catches_up(
    tmp_path: Path, small_disk: Path
) -> None:
    consortium, orderer, config = _follower_on(tmp_path, small_disk)
    follower: Running | None = None
    try:
        node = Node(config)
        node.start()
        follower = Running(node, ServerThread(node).start(), consortium)
        with follower.client() as client:
            assert client.submit(_records(consortium, "bank-b", 5))[0].code == "valid"
        wait_until(lambda: node.store.head() == orderer.node.store.head())
        assert node.disk.full is None

        ballast = _fill(small_disk)
        wait_until(lambda: node.disk.full is not None, timeout=5)
        with follower.client() as client:
            reply = _submit_nothing(client)
            assert reply.status_code == 503
            assert reply.json()["error"] == "disk_full" and "full" in reply.json()["detail"]
            assert client.status()["height"] >= 1  # reads go on
            health = client.health()
            assert health["status"] == "alarm" and "is full" in health["alarms"][0]
            assert "sharechain_disk_full 1.0" in client.metrics()
        # The others go on; this node does not halt, whatever it manages to commit.
        with orderer.client() as client:
            for tag in range(1, 4):
                client.submit(_records(consortium, "hospital-a", 20, tag=tag))
        assert node.halted is None and node.problem is None

        ballast.unlink()
        wait_until(lambda: node.disk.full is None, timeout=5)
        wait_until(lambda: node.store.head() == orderer.node.store.head())
        with follower.client() as client:
            assert client.submit(_records(consortium, "bank-b", 5, tag=9))[0].code == "valid"
            assert "sharechain_disk_full 0.0" in client.metrics()
            assert client.health()["status"] == "ok"
        assert node.store.integrity_check() == "ok"
        report = verify_ledger(node.store, node.registry, genesis_hash=node.datadir.genesis_hash)
        assert report.ok, report.reason
    finally:
        if follower is not None:
            shutdown(follower)
        shutdown(orderer)


def test_a_write_ahead_log_that_filled_the_disk_is_given_back_with_the_spare(
    small_disk: Path,
) -> None:
    # Committed pages the checkpoint has not copied yet, then a transaction that
    # runs out of space: the WAL now holds the whole disk, and copying it back
    # needs the database to grow by what was committed. The guard's spare is
    # that room (found by `make soak`: nodes stuck behind their own WAL).
    store = Store(small_disk / "ledger.db")
    guard = DiskGuard(small_disk, 0, CollectorRegistry(), spare=4 << 20)
    try:
        for i in range(12):  # 3 MiB committed, still only in the WAL
            store.set_meta(f"kept-{i}", os.urandom(256 * 1024))
        assert guard.check(wal=store.wal_bytes()) is None  # twice 3 MiB, capped at 4
        assert (small_disk / SPARE_FILE).stat().st_size == 4 << 20
        with pytest.raises(sqlite3.Error) as failed, store.group():
            for i in range(100):
                store.set_meta(f"lost-{i}", os.urandom(256 * 1024))
        assert is_disk_full(failed.value)
        with pytest.raises(sqlite3.Error) as copy:  # no room to copy the WAL back
            store.shrink_wal()
        assert is_disk_full(copy.value)
        assert guard.release_spare() == 4 << 20
        assert store.shrink_wal() > 4 << 20
        assert store.wal_bytes() == 0
        assert guard.check() is None  # room again: the spare is set aside anew
        assert (small_disk / SPARE_FILE).exists()
        assert store.meta("kept-11") is not None and store.meta("lost-0") is None
        assert store.integrity_check() == "ok"
    finally:
        store.close()


@pytest.mark.parametrize("small_disk", ["64m"], indirect=True)
def test_a_node_stopped_behind_its_own_write_ahead_log_gives_it_back_when_it_starts(
    tmp_path: Path, small_disk: Path
) -> None:
    # A node killed while its WAL crowded a full disk: started again, it gives the
    # WAL back (with its spare) before it opens anything else, so it starts, takes
    # work and catches up instead of failing to create its other databases.
    consortium, orderer, config = _follower_on(tmp_path, small_disk)
    data_dir = config.data_dir
    follower: Running | None = None
    Node(config).stop()  # its store, with the genesis block
    held = Store(data_dir / "ledger.db")  # open: the WAL stays, as after a SIGKILL
    try:
        for i in range(24):  # 6 MiB committed, only in the WAL
            held.set_meta(f"kept-{i}", os.urandom(256 * 1024))
        guard = DiskGuard(data_dir, 1024 * 1024, CollectorRegistry())
        assert guard.check(wal=held.wal_bytes()) is None  # the spare the node had kept
        assert (data_dir / SPARE_FILE).exists()
        _fill(small_disk)
        node = Node(config)
        node.start()
        assert node.store.wal_bytes() == 0 and node.disk.full is None
        follower = Running(node, ServerThread(node).start(), consortium)
        with orderer.client() as client:
            client.submit(_records(consortium, "hospital-a", 5))
        wait_until(lambda: node.store.head() == orderer.node.store.head())
        assert node.store.meta("kept-23") is not None
        assert node.store.integrity_check() == "ok"
    finally:
        held.close()
        if follower is not None:
            shutdown(follower)
        shutdown(orderer)


def test_a_node_started_on_a_disk_something_else_filled_starts_and_refuses_work(
    tmp_path: Path, small_disk: Path
) -> None:
    consortium, orderer, config = _follower_on(tmp_path, small_disk)
    follower: Running | None = None
    try:
        first = Node(config)
        first.start()
        first.stop()
        assert (config.data_dir / SPARE_FILE).exists()  # set aside while there was room
        ballast = _fill(small_disk)  # another program's files, while the node was down
        node = Node(config)  # the spare makes room to open the store
        node.start()
        assert not (config.data_dir / SPARE_FILE).exists()
        assert node.disk.full is not None and "is full" in node.disk.full
        follower = Running(node, ServerThread(node).start(), consortium)
        with follower.client() as client:
            reply = _submit_nothing(client)
            assert reply.status_code == 503 and reply.json()["error"] == "disk_full"
        ballast.unlink()
        wait_until(lambda: node.disk.full is None, timeout=5)
        with orderer.client() as client:
            client.submit(_records(consortium, "hospital-a", 5))
        wait_until(lambda: node.store.head() == orderer.node.store.head())
        assert node.store.integrity_check() == "ok"
        assert (config.data_dir / SPARE_FILE).exists()  # set aside again
    finally:
        if follower is not None:
            shutdown(follower)
        shutdown(orderer)


def test_a_node_without_a_spare_on_a_full_disk_says_the_disk_is_full(
    tmp_path: Path, small_disk: Path
) -> None:
    _, orderer, config = _follower_on(tmp_path, small_disk)
    try:
        Node(config).stop()  # never started: no spare set aside
        assert not (config.data_dir / SPARE_FILE).exists()
        store_bytes = (config.data_dir / "ledger.db").read_bytes()
        ballast = _fill(small_disk)
        with pytest.raises(DiskFullError) as refused:
            Node(config)
        message = str(refused.value)
        assert "is full" in message and "free space there and start it again" in message
        assert "restore" not in message  # the store is not damaged: nothing to restore
        assert (config.data_dir / "ledger.db").read_bytes() == store_bytes
        ballast.unlink()
        node = Node(config)
        assert node.store.integrity_check() == "ok" and node.ledger.height == 0
        node.stop()
    finally:
        shutdown(orderer)


@pytest.mark.parametrize("small_disk", ["512m"], indirect=True)
def test_a_store_keeps_its_write_ahead_log_to_a_sixteenth_of_its_disk(small_disk: Path) -> None:
    path = small_disk / "ledger.db"
    assert wal_limit_for(str(path)) == 32 << 20  # 512 MiB / 16, between 16 and 256 MiB
    store = Store(path)
    try:
        with store.group():  # one transaction of 48 MiB: the WAL grows past the limit
            for i in range(192):
                store.set_meta(f"big-{i}", os.urandom(256 * 1024))
        assert store.wal_bytes() > 40 << 20
        # The writer checkpoints past the limit; the next transaction starts the WAL
        # over and SQLite trims the file to the limit (with 256 MiB it kept 48).
        for i in range(3):
            store.set_meta(f"small-{i}", b"x")
        assert store.wal_bytes() <= 32 << 20
        assert store.meta("big-191") is not None and store.integrity_check() == "ok"
    finally:
        store.close()
