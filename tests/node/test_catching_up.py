"""A node catching up says how far it has come: in its log, its status and `node status`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from node_helpers import Consortium, Running, run_node, shutdown, shutdown_all

from sharechain.api.client import BLOCKS_ANSWER_BYTES
from sharechain.cli.operate_cmd import status_lines
from sharechain.ledger.blocks import decode_block
from sharechain.ledger.transactions import sign_transaction
from sharechain.node import catching_up
from sharechain.node.arrivals import GROUP_BLOCKS
from sharechain.node.catching_up import CatchUp, begin, end
from sharechain.node.etcd_watch import caught_up_with
from sharechain.node.replication import SYNC_LIMIT, reached_the_head
from sharechain.ordering.etcd_process import EtcdCluster


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_is_logged_at_most_every_few_seconds_with_rate_and_time_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    progress = CatchUp("bank-b", 10, 1_010, clock=clock, every=5.0)
    assert progress.figures()["eta_seconds"] is None  # no block yet: no rate
    caplog.set_level(logging.INFO, logger="sharechain.node")
    for height in range(11, 111):  # 100 blocks of 40 transactions in 4 s: nothing logged
        clock.now += 0.04
        progress.advance(height, 40)
    assert not caplog.records
    clock.now += 1.0  # 5 s since it began: a line
    progress.advance(111, 40)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == (
        "catching up from bank-b: block 111 of 1,010 (10.1%), 20 blocks/s (808 tx/s),"
        " about 44 s left"  # 899 blocks at 20.2 a second: 44.5 s
    )
    figures = progress.figures()
    assert figures == {
        "source": "bank-b",
        "start": 10,
        "height": 111,
        "target": 1_010,
        "done": 0.101,
        "blocks_per_s": 20.2,
        "tx_per_s": 808.0,
        "seconds": 5.0,
        "eta_seconds": 44.5,
    }
    progress.advance(112, 40)  # within 5 s of the last line
    assert len(caplog.records) == 1


def test_the_target_follows_a_growing_source_and_the_end_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    progress = CatchUp("the ordering log", 0, 5, clock=clock)
    progress.raise_target(3)  # never lowered
    assert progress.target == 5
    progress.raise_target(8)
    for height in range(1, 9):
        clock.now += 0.5
        progress.advance(height, 2_000)
    assert progress.figures()["done"] == 1.0 and progress.figures()["eta_seconds"] == 0.0
    caplog.set_level(logging.INFO, logger="sharechain.node")
    progress.finish()
    assert caplog.records[-1].getMessage() == (
        "caught up from the ordering log at block 8: 8 blocks,"
        " 16,000 transactions in 4 s (4,000 tx/s)"
    )
    behind = CatchUp("bank-b", 0, 100, clock=clock)
    behind.advance(1, 1)
    behind.finish()  # its loop gave up before the target (a peer went away)
    assert caplog.records[-1].getMessage().startswith("stopped catching up from bank-b at block 1")


def test_status_lines_show_the_progress() -> None:
    figures = CatchUp("hospital-a", 0, 400, clock=lambda: 0.0).figures(now=2.0)
    status = {
        "org": "bank-b",
        "ordering": "solo",
        "role": "orderer",
        "height": 0,
        "head_hash": "00" * 32,
        "state_root": "00" * 32,
        "ready": True,
        "caught_up": False,
        "catch_up": figures,
    }
    lines, alarms = status_lines(status)
    assert "catching up from hospital-a: block 0 of 400 (0.0%), 0 blocks/s (0 tx/s)," in lines[3]
    assert lines[3].endswith("time left unknown") and not alarms
    assert not any("refused" in line for line in lines)


def test_status_lines_name_the_members_blocks_the_node_refused() -> None:
    refusals = [
        {"org": "bank-b", "height": h, "block_hash": f"{h:02x}" * 32, "signature": "00" * 64}
        for h in range(3, 9)
    ]
    status = {
        "org": "bank-b",
        "ordering": "etcd",
        "role": "peer",
        "height": 9,
        "head_hash": "00" * 32,
        "state_root": "00" * 32,
        "ready": True,
        "caught_up": True,
        "refusals": refusals,
    }
    lines, alarms = status_lines(status)
    (line,) = [line for line in lines if line.startswith("refused members' blocks")]
    assert "5 (0505050505050505), 6 (" in line and line.endswith(
        "8 (0808080808080808) and 2 earlier"
    )
    assert "3 (" not in line and not alarms


def _records(consortium: Consortium, n: int, tag: int) -> list[bytes]:
    key = consortium.keys("hospital-a").signing
    return [
        sign_transaction(key, "notary.record", "hospital-a", {"digest": bytes([tag, i]) * 16}).raw
        for i in range(n)
    ]


def test_a_node_catching_up_from_its_peer_logs_its_progress_and_the_end(
    consortium: Consortium,
    orderer: Running,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with orderer.client() as client:
        for tag in range(12):  # one block each
            client.submit(_records(consortium, 5, tag))
    target = orderer.node.ledger.height
    assert target >= 12
    monkeypatch.setattr(catching_up, "EVERY", 0.0)  # a line at every block
    caplog.set_level(logging.INFO, logger="sharechain.node")
    # A second solo orderer (a restarted one, on a fresh disk) catches up from its
    # peer before it orders anything.
    late = run_node(consortium, "bank-b", peers=(("hospital-a", orderer.url),))
    try:
        assert late.node.ledger.height == target
        assert late.node.catching_up is None  # done: nothing shown any more
        with late.client() as client:
            assert client.status()["catch_up"] is None
            assert "sharechain_catch_up_blocks_left 0.0" in client.metrics()
    finally:
        shutdown(late)
    lines = [r.getMessage() for r in caplog.records if "catching up" in r.getMessage()]
    assert lines[0] == f"catching up from hospital-a: block 1 to {target}"
    progress = [line for line in lines[1:] if " of " in line]
    assert len(progress) == target  # one at each block, as EVERY asked
    assert progress[-1].startswith(f"catching up from hospital-a: block {target} of {target}")
    ends = [r.getMessage() for r in caplog.records if r.getMessage().startswith("caught up")]
    assert ends == [
        f"caught up from hospital-a at block {target}: {target} blocks,"
        f" {late_txs(orderer)} transactions in " + ends[0].split(" transactions in ")[1]
    ]


def late_txs(orderer: Running) -> int:
    """Transactions in blocks 1 up to the orderer's head (what the late node fetched)."""
    store = orderer.node.store
    return sum(
        len(decode_block(store.block_bytes(h) or b"").txs)
        for h in range(1, orderer.node.ledger.height + 1)
    )


def test_the_status_shows_the_progress_while_it_lasts(orderer: Running) -> None:
    node = orderer.node
    progress = begin(node, "bank-b", node.ledger.height + 500)
    assert progress is not None
    assert begin(node, "regulator", node.ledger.height + 900) is None  # one at a time
    try:
        with orderer.client() as client:
            shown = client.status()["catch_up"]
            metrics = client.metrics()
        assert shown["source"] == "bank-b" and shown["target"] == node.ledger.height + 500
        assert shown["height"] == node.ledger.height and shown["done"] == 0.0
        assert "sharechain_catch_up_blocks_left 500.0" in metrics
        assert "sharechain_catch_up_eta_seconds NaN" in metrics  # no block yet: no rate
    finally:
        end(node, progress)
    assert node.catching_up is None
    with orderer.client() as client:
        assert client.status()["catch_up"] is None
        metrics = client.metrics()
    assert "sharechain_catch_up_blocks_left 0.0" in metrics
    assert "sharechain_catch_up_eta_seconds 0.0" in metrics


@contextmanager
def _etcd_leader(
    consortium: Consortium, tmp_path: Path
) -> Iterator[tuple[Running, Callable[[], Running]]]:
    """hospital-a's node ordering on a one-member etcd log, and a way to start bank-b's
    node against it later; both stopped at the end."""
    with EtcdCluster(tmp_path / "etcd", members=1) as cluster:
        options = {"ordering": "etcd", "etcd_endpoints": cluster.endpoints, "max_wait": 0.005}
        started = [run_node(consortium, "hospital-a", **options)]

        def start_late() -> Running:
            started.append(run_node(consortium, "bank-b", **options))
            return started[-1]

        try:
            yield started[0], start_late
        finally:
            shutdown_all(started)


def test_a_node_behind_the_ordering_log_reports_its_catching_up(
    consortium: Consortium,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(catching_up, "EVERY", 0.0)
    with _etcd_leader(consortium, tmp_path) as (first, start_late):
        with first.client() as client:
            for tag in range(10):
                client.submit(_records(consortium, 5, tag))
        target = first.node.ledger.height
        caplog.set_level(logging.INFO, logger="sharechain.node")
        late = start_late()
        deadline = time.monotonic() + 30
        while late.node.ledger.height < target or late.node.catching_up is not None:
            assert time.monotonic() < deadline, "the late node did not catch up"
            time.sleep(0.05)
        assert late.node.caught_up
    messages = [r.getMessage() for r in caplog.records]
    assert f"catching up from the ordering log: block 1 to {target}" in messages
    shown = [m for m in messages if m.startswith("catching up from the ordering log: block ")]
    assert any(f" of {target} " in m for m in shown)  # progress lines against the log's head
    (done,) = [m for m in messages if m.startswith("caught up from the ordering log")]
    assert done.startswith(f"caught up from the ordering log at block {target}: {target} blocks,")


def test_a_peer_height_that_makes_no_sense_counts_as_none() -> None:
    from sharechain.node.arrivals import _height

    assert _height({"height": 41}) == 41
    for junk in ({}, {"height": "41"}, {"height": True}, {"height": 4.5}, {"height": None}):
        assert _height(junk) == -1  # then nothing is shown: the node is "there already"


def test_a_node_counts_as_caught_up_at_the_head_or_a_group_behind_it_on_watched_blocks() -> None:
    assert caught_up_with(head=50, height=50, watched=False)
    assert caught_up_with(head=49, height=50, watched=False)  # compacted or voided above
    assert caught_up_with(head=50 + GROUP_BLOCKS, height=50, watched=True)
    assert not caught_up_with(head=51 + GROUP_BLOCKS, height=50, watched=True)
    # A backlog read by range may be hours old: its next block would be judged as live.
    assert not caught_up_with(head=51, height=50, watched=False)


@contextmanager
def _steady_load(consortium: Consortium, running: Running, loaders: int = 4) -> Iterator[None]:
    """`loaders` clients submit batches of 20 notary records to `running` back to back."""
    key = consortium.keys("hospital-a").signing
    stop = threading.Event()

    def load(loader: int) -> None:
        with running.client() as client:
            for batch in range(100_000):
                if stop.is_set():
                    return
                digests = [bytes([loader, i]) + batch.to_bytes(6, "big") * 5 for i in range(20)]
                client.submit(
                    [
                        sign_transaction(key, "notary.record", "hospital-a", {"digest": d}).raw
                        for d in digests
                    ]
                )

    threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(loaders)]
    for thread in threads:
        thread.start()
    try:
        yield
        assert all(thread.is_alive() for thread in threads)  # the chain was still growing
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


def _wait_caught_up(late: Running, source: Running, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not late.node.caught_up:
        assert time.monotonic() < deadline, (
            f"not caught up at {late.node.ledger.height} of {source.node.ledger.height}"
        )
        time.sleep(0.02)


def test_a_node_started_while_the_log_keeps_growing_reports_it_caught_up(
    consortium: Consortium, tmp_path: Path
) -> None:
    # Under steady load a block is appended while each group commits, so the log's
    # head is rarely the node's height itself: the node must still count as caught up
    # (`GET /v1/ready` waits for it), and only within a group's reach of the head.
    with _etcd_leader(consortium, tmp_path) as (first, start_late):
        with first.client() as client:
            for tag in range(40):
                client.submit(_records(consortium, 5, tag))
        # Two clients: the follower, in the same process as the leader, keeps up with
        # them even on a loaded machine.
        with _steady_load(consortium, first, loaders=2):
            late = start_late()
            _wait_caught_up(late, first)
            lag = first.node.ledger.height - late.node.ledger.height
            assert lag <= 4 * GROUP_BLOCKS  # near the head (the leader went on meanwhile)


def test_a_solo_follower_started_under_steady_load_reports_it_caught_up(
    consortium: Consortium,
) -> None:
    # Its orderer answers each long-poll as soon as a block is built, so under steady
    # load no answer is ever empty: a whole answer short of the limit tells instead.
    orderer = run_node(consortium, "hospital-a", max_wait=0.005)
    late: Running | None = None
    try:
        with orderer.client() as client:
            for tag in range(40):
                client.submit(_records(consortium, 5, tag))
        with _steady_load(consortium, orderer):
            late = run_node(consortium, "bank-b", orderer_url=orderer.url)
            _wait_caught_up(late, orderer)
            assert orderer.node.ledger.height - late.node.ledger.height <= SYNC_LIMIT
    finally:
        for running in (late, orderer):
            if running is not None:
                shutdown(running)


def test_an_answer_reached_the_head_when_short_of_the_limit_with_room_for_a_block() -> None:
    block = b"b" * 1000
    assert reached_the_head([], 64, 1 << 20)
    assert reached_the_head([block] * 63, 64, 1 << 20)
    assert not reached_the_head([block] * 64, 64, 1 << 20)  # the limit cut it
    big = [b"b" * (BLOCKS_ANSWER_BYTES // 4)] * 3
    assert not reached_the_head(big, 64, BLOCKS_ANSWER_BYTES // 2)  # the byte bound may have
    assert reached_the_head(big, 64, BLOCKS_ANSWER_BYTES // 4)
