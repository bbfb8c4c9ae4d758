"""Attack 45: a member's etcd client writes keys no node writes, under the chain's prefix or not.

A member's node holds etcd client credentials, and the node role writes keys.
Before this defence one key under `blocks/` that is not a block key (say
`blocks/x`) made every follower's range read fail to parse it, so followers
stopped for good; a `head` holding no height made every append fail
("block building failed"), so ordering stopped for all; a leader key with no
lease never expired; and keys outside the prefix, or above the head, held
etcd's space for ever. Now the nodes read only block keys, the leader mends
the head and sweeps what no node writes, any node deletes a leader key no
node wrote, and the node role may not touch keys outside the prefix. Real
nodes on a real 3-member etcd with TLS and authentication, the hostile
member using its own node's etcd credentials.
"""

from __future__ import annotations

import base64
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))

from node_helpers import Consortium, Running, etcd_network, shutdown
from test_replication import _records, wait_until

from sharechain.errors import OrderingError
from sharechain.ordering.etcd_log import EtcdLog
from sharechain.ordering.etcd_process import EtcdCluster

HOSTILE = "bank-b"
HONEST = ("hospital-a", "regulator")

Network = tuple[EtcdCluster, Consortium, dict[str, Running]]


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    # Pruning keeps no block below the attested height, so it soon passes the junk keys
    # written between two block keys (the sweep takes those above the head).
    options: dict[str, object] = {"compaction_interval": 0.5, "compaction_keep": 0}
    with etcd_network(tmp_path, HONEST, tls=True, **options) as started:
        yield started


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _put(log: EtcdLog, key: bytes, value: bytes, lease: int = 0) -> None:
    body = {"key": _b64(key), "value": _b64(value)} | ({"lease": str(lease)} if lease else {})
    log.call("/v3/kv/put", body)


def _keys(log: EtcdLog) -> set[bytes]:
    """Every key under the chain's prefix."""
    prefix = log.prefix
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    reply = log.call(
        "/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(end), "keys_only": True}
    )
    return {base64.b64decode(kv["key"]) for kv in reply.get("kvs", [])}


def _commit_rounds(running: dict[str, Running], rounds: int, tag: int) -> None:
    """Submit `rounds` batches through each honest node; every node ends at one height."""
    for i in range(rounds):
        for r in running.values():
            with r.client() as client:
                receipts = client.submit(_records(r.consortium, r.node.org, 2, tag=tag + i))
            assert {x.code for x in receipts} <= {"valid", "duplicate"}
    wait_until(lambda: len({r.node.ledger.height for r in running.values()}) == 1)
    for r in running.values():
        assert r.node.halted is None and r.node.ready


def _leading(running: dict[str, Running]) -> Running:
    wait_until(lambda: all(r.node.leader is not None for r in running.values()))
    leader = next(iter(running.values())).node.leader
    assert leader is not None and leader.org in running
    return running[leader.org]


def test_keys_under_blocks_that_name_no_block_stop_no_follower(network: Network) -> None:
    cluster, _, running = network
    _commit_rounds(running, 1, tag=1)
    start = max(r.node.ledger.height for r in running.values())
    junk = [
        b"blocks/x",  # after every block key: in every follower's range read
        b"blocks/" + str(start + 2).zfill(20).encode() + b"x",  # between two heights
        b"blocks/" + b"0" * 19 + b"_" + str(start + 3).encode(),  # int() reads "_3" as 3
        b"blocks/ " + str(start + 1).encode(),
    ]
    with EtcdLog(cluster.endpoints, tls=cluster.client_tls(HOSTILE)) as hostile:
        for key in junk:
            _put(hostile, hostile.prefix + key, b"junk")
    _commit_rounds(running, 4, tag=10)
    heights = {r.node.ledger.height for r in running.values()}
    assert heights == {max(heights)} and max(heights) >= start + 4
    # The leader swept them (none is a block key, one lies above the head).
    with EtcdLog(cluster.endpoints, tls=cluster.client_tls(HOSTILE)) as hostile:
        wait_until(lambda: not {hostile.prefix + k for k in junk} & _keys(hostile))


def test_a_head_that_holds_no_height_is_mended_and_ordering_goes_on(
    network: Network, caplog: pytest.LogCaptureFixture
) -> None:
    cluster, _, running = network
    _commit_rounds(running, 1, tag=1)
    caplog.set_level(logging.WARNING, logger="sharechain.node")
    with EtcdLog(cluster.endpoints, tls=cluster.client_tls(HOSTILE)) as hostile:
        _put(hostile, hostile.prefix + b"head", b"junk")
        _commit_rounds(running, 3, tag=20)
        height = max(r.node.ledger.height for r in running.values())
        assert hostile.head() == height
    assert any("head holding no height" in rec.getMessage() for rec in caplog.records)


@pytest.mark.parametrize("value", [b"\xff\xfe", b"mallory", b"hospital-a"])
def test_a_leader_key_no_node_wrote_is_deleted_and_a_node_leads_again(
    network: Network, value: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    cluster, _, running = network
    leader = _leading(running)
    caplog.set_level(logging.WARNING, logger="sharechain.node")
    with EtcdLog(cluster.endpoints, tls=cluster.client_tls(HOSTILE)) as hostile:
        _put(hostile, hostile.prefix + b"leader", value)  # no lease: it would never expire
        # Stop the leader: someone must take the key over, which a key no node wrote forbids.
        shutdown(running.pop(leader.node.org))

        def led_again() -> bool:
            kvs = hostile.call("/v3/kv/range", {"key": _b64(hostile.prefix + b"leader")})
            kv = (kvs.get("kvs") or [{}])[0]
            holder = base64.b64decode(kv.get("value", ""))
            return int(kv.get("lease", 0)) != 0 and holder.decode() in running

        wait_until(led_again, timeout=30.0)
    assert any("deleted etcd's leader key" in rec.getMessage() for rec in caplog.records)
    _commit_rounds(running, 2, tag=30)


def test_keys_outside_the_prefix_are_refused_and_junk_inside_it_is_swept(
    network: Network, caplog: pytest.LogCaptureFixture
) -> None:
    cluster, _, running = network
    _commit_rounds(running, 1, tag=1)
    caplog.set_level(logging.WARNING, logger="sharechain.node")
    with EtcdLog(cluster.endpoints, tls=cluster.client_tls(HOSTILE)) as hostile:
        for key in (b"elsewhere/fill", b"sharechain0", b"\x00"):
            with pytest.raises(OrderingError, match="permission denied"):
                _put(hostile, key, b"x" * 1000)
        with pytest.raises(OrderingError, match="permission denied"):
            hostile.call("/v3/kv/range", {"key": _b64(b"\x00"), "range_end": _b64(b"\x00")})
        height = hostile.head()
        inside = [b"a", b"blocks", b"blocks0", b"heads", b"leader/x", b"zzz"]
        inside.append(b"blocks/" + str(height + 50).zfill(20).encode())
        for key in inside:
            _put(hostile, hostile.prefix + key, b"x" * 1000)
        _commit_rounds(running, 1, tag=40)
        wait_until(lambda: not {hostile.prefix + k for k in inside} & _keys(hostile))
        left = _keys(hostile)
    assert hostile.prefix + b"head" in left and hostile.prefix + b"leader" in left
    assert any("no node writes" in rec.getMessage() for rec in caplog.records)
    swept = sum(
        r.node.metrics.registry.get_sample_value("sharechain_etcd_swept_keys_total") or 0
        for r in running.values()
    )
    assert swept >= len(inside)
