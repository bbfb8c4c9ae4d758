"""Keys under the log's prefix that no node writes: read past, mended, swept (real etcd).

An etcd client (every member's node holds credentials) can put any key. The
log reads only block keys and canonical heads; the leader's upkeep deletes the
rest (`etcd_compact.sweep` above the head and outside `blocks/`, `scrub`
between block keys). Attack 45 in docs/security.md.
"""

from __future__ import annotations

import base64

import pytest
from test_etcd_log import Watcher

from sharechain.ordering import etcd_compact
from sharechain.ordering.etcd_lease import Election, Leader
from sharechain.ordering.etcd_log import HEAD_UNREADABLE, EtcdLog, LogOutOfStep, parse_height
from sharechain.ordering.etcd_process import EtcdCluster


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _put(log: EtcdLog, key: bytes, value: bytes = b"junk") -> None:
    log.call("/v3/kv/put", {"key": _b64(log.prefix + key), "value": _b64(value)})


def _keys(log: EtcdLog) -> list[bytes]:
    end = log.prefix[:-1] + bytes([log.prefix[-1] + 1])
    reply = log.call(
        "/v3/kv/range", {"key": _b64(log.prefix), "range_end": _b64(end), "keys_only": True}
    )
    return [base64.b64decode(kv["key"])[len(log.prefix) :] for kv in reply.get("kvs", [])]


def _append_blocks(log: EtcdLog, count: int) -> None:
    for height in range(count):
        assert log.append(height, f"block {height}".encode())


def _key(height: int) -> bytes:
    return b"blocks/" + str(height).zfill(20).encode()


JUNK_BETWEEN = [_key(2) + b"x", _key(1) + b"_0", _key(4) + b" "]
"""Keys that sort between block keys 1..5; Python's int() reads the last two as 10 and 4."""


@pytest.mark.parametrize(
    ("raw", "width", "height"),
    [
        (b"0", None, 0),
        (b"42", None, 42),
        (b"042", None, None),
        (b" 42", None, None),
        (b"4_2", None, None),
        (b"+42", None, None),
        (b"-1", None, None),
        (b"", None, None),
        ("٤٢".encode(), None, None),  # Arabic-Indic digits: int() takes them as text
        (b"9" * 21, None, None),
        (b"0" * 18 + b"42", 20, 42),
        (b"42", 20, None),
        (b"0" * 19 + b"_", 20, None),
    ],
)
def test_parse_height_takes_only_what_the_log_writes(
    raw: bytes, width: int | None, height: int | None
) -> None:
    assert parse_height(raw, width=width) == height


def test_reads_pass_over_keys_that_name_no_block(etcd_cluster: EtcdCluster, prefix: str) -> None:
    with EtcdLog(etcd_cluster.endpoints, prefix=prefix, page_size=1) as log:
        _append_blocks(log, 6)
        for key in [*JUNK_BETWEEN, b"blocks/x", b"blocks/ 1"]:
            _put(log, key)
        want = [(h, f"block {h}".encode()) for h in range(6)]
        assert list(log.range(0)) == want  # pages of one key: a junk page does not end it
        assert [h for h, _ in log.range(2, 5)] == [2, 3, 4]
        assert log.lowest_height(1) == 1
        watcher = Watcher(log, from_height=1)
        try:
            watcher.wait_for(5)
            _put(log, _key(6) + b"y")  # followed: a junk event is no block 6
            assert log.append(6, b"block 6")
            watcher.wait_for(6)
        finally:
            watcher.close()
        assert watcher.seen == [(h, f"block {h}".encode()) for h in range(1, 7)]


def test_a_head_that_holds_no_height_is_reported_and_mended(
    etcd_cluster: EtcdCluster, prefix: str
) -> None:
    with EtcdLog(etcd_cluster.endpoints, prefix=prefix) as log:
        _append_blocks(log, 3)
        _put(log, b"head", b"two")
        assert log.head() == HEAD_UNREADABLE
        with pytest.raises(LogOutOfStep, match="head holds b'two', not a height"):
            log.append(3, b"block 3")
        assert not log.move_head(HEAD_UNREADABLE, 2, b"not block 2")  # must be the block there
        assert log.move_head(HEAD_UNREADABLE, 2, b"block 2")
        assert log.head() == 2 and not log.move_head(HEAD_UNREADABLE, 2, b"block 2")
        assert log.append(3, b"block 3")


def test_sweep_and_scrub_delete_what_no_node_writes_and_nothing_else(
    etcd_cluster: EtcdCluster, prefix: str
) -> None:
    with EtcdLog(etcd_cluster.endpoints, prefix=prefix) as log:
        _append_blocks(log, 6)
        _put(log, b"leader", b"hospital-a")
        nodes = {_key(h) for h in range(6)} | {b"head", b"leader"}
        outside = [b"a", b"blocks", b"blocks/ 1", _key(0) + b"x", b"blocks0", b"heads"]
        outside += [b"leader/x", b"zzz", _key(6), _key(9) + b"x", b"blocks/x", _key(5) + b"x"]
        for key in [*outside, *JUNK_BETWEEN]:
            _put(log, key)
        # Not the leader, or a head that moved meanwhile: nothing is deleted.
        assert etcd_compact.sweep(log, "bank-b", 5).deleted == 0
        assert etcd_compact.sweep(log, "hospital-a", 4).deleted == 0
        swept = etcd_compact.sweep(log, "hospital-a", 5)
        assert swept.deleted == len(outside) - 1  # `_key(5) + b"x"` sorts below block 6
        left = set(_keys(log))
        assert left == nodes | set(JUNK_BETWEEN) | {_key(5) + b"x"}
        scrubbed, cursor, rounds = 0, None, 0
        while True:  # pages of two names: the pass takes a few rounds
            done = etcd_compact.scrub(log, 5, cursor, page=2)
            scrubbed, cursor, rounds = scrubbed + done.deleted, done.cursor, rounds + 1
            if cursor is None:
                break
        assert scrubbed == len(JUNK_BETWEEN) + 1 and rounds > 1
        assert set(_keys(log)) == nodes
        assert list(log.range(0)) == [(h, f"block {h}".encode()) for h in range(6)]


def test_a_leader_key_no_node_wrote_is_cleared_and_a_node_s_is_kept(
    etcd_cluster: EtcdCluster, prefix: str
) -> None:
    with EtcdLog(etcd_cluster.endpoints, prefix=prefix) as log:
        election = Election(log)
        lease = election.grant()

        def put(value: bytes, held: bool) -> None:
            body = {"key": _b64(log.prefix + b"leader"), "value": _b64(value)}
            log.call("/v3/kv/put", body | ({"lease": str(lease)} if held else {}))

        members = {"hospital-a", "bank-b"}
        assert election.clear_foreign(members) is None  # no key: nothing to do
        assert election.campaign("hospital-a", lease) == Leader("hospital-a", lease)
        assert election.clear_foreign(members) is None and election.clear_foreign(None) is None
        put(b"mallory", held=True)  # a live lease, a name no member has
        assert election.clear_foreign(None) is None  # a node behind the chain does not judge
        removed = election.clear_foreign(members)
        assert removed is not None and "no member of the chain" in removed
        assert election.current() is None
        for value, held in ((b"hospital-a", False), (b"\xff\xfe", True)):
            put(value, held)
            assert election.clear_foreign(None) is not None and election.current() is None
        put(b"bank-b", held=False)
        assert "held by no lease" in (election.clear_foreign(members) or "")
        election.revoke(lease)
