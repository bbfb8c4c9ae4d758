"""One member's large blocks cannot grow etcd's memory or WAL without bound (real etcd).

A member that fills blocks with large transactions makes every etcd entry
large. etcd keeps the entries since its last Raft snapshot (plus 5,000 before
it) in memory and in its WAL, whatever the pruning and compaction of the key
space: with etcd's default of a snapshot every 100,000 entries, each member
grows by about as much as the blocks written, for 100,000 blocks. The
launcher's members snapshot every `SNAPSHOT_COUNT` blocks, so both stop
growing after (`SNAPSHOT_COUNT` + 5,000) blocks. Soak: about a minute.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import httpx
import pytest

from sharechain.ordering import etcd_compact
from sharechain.ordering.etcd_log import EtcdLog
from sharechain.ordering.etcd_process import SNAPSHOT_COUNT, EtcdCluster

BLOCK = 100 * 1024
"""Bytes a block: large, as a member sending large transactions makes them."""
PLATEAU = SNAPSHOT_COUNT + 5_000 + 500
"""Blocks after which memory and WAL no longer grow (etcd 3.4 keeps 5,000 entries
behind each snapshot), with a margin."""
MORE = 2_500
"""Blocks appended after the plateau: 244 MiB that an unbounded member would add."""
MIB = 1024 * 1024


def _resident(endpoint: str) -> int:
    text = httpx.get(f"{endpoint}/metrics", timeout=10).text
    found = re.search(r"^process_resident_memory_bytes (\S+)$", text, re.M)
    assert found is not None, "etcd's /metrics has no process_resident_memory_bytes"
    return int(float(found.group(1)))


def _oldest_wal_index(member_dir: Path) -> int:
    """The Raft index the member's oldest WAL file starts at (`<seq>-<index>.wal`)."""
    names = sorted((member_dir / "member" / "wal").glob("*.wal"))
    return int(names[0].stem.split("-")[1], 16)


def _purged(member_dir: Path, within: float) -> bool:
    """Whether the WAL's first file is gone within `within` s (etcd purges every 30 s)."""
    deadline = time.monotonic() + within
    while _oldest_wal_index(member_dir) == 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(1.0)
    return True


def _append(log: EtcdLog, start: int, end: int, payload: bytes) -> None:
    """Blocks `start`..`end`-1, pruning all but the last 10 and compacting every 100,
    as the nodes' compaction keeps the key space small."""
    for height in range(start, end):
        assert log.append(height, payload + height.to_bytes(8, "big"))
        if height % 100 == 99:
            first = log.prefix + b"blocks/" + b"%020d" % 0
            upto = log.prefix + b"blocks/" + b"%020d" % (height - 10)
            reply = log.call(
                "/v3/kv/deleterange",
                {"key": etcd_compact._b64(first), "range_end": etcd_compact._b64(upto)},
            )
            etcd_compact.compact(log, int(reply["header"]["revision"]))


@pytest.mark.soak
@pytest.mark.timeout(900)
def test_etcd_memory_and_wal_stop_growing_under_large_blocks(tmp_path: Path) -> None:
    payload = os.urandom(BLOCK - 8)
    with (
        EtcdCluster(tmp_path / "etcd", members=1) as cluster,
        EtcdLog(cluster.endpoints, max_block_bytes=cluster.max_request_bytes - 8192) as log,
    ):
        endpoint = cluster.endpoints[0]
        _append(log, 0, PLATEAU, payload)
        rss_at = _resident(endpoint)
        _append(log, PLATEAU, PLATEAU + MORE, payload)
        rss_end = _resident(endpoint)
        purged = _purged(tmp_path / "etcd" / "m0", within=60.0)

    # Unbounded (measured with etcd's default): memory +456 MiB over the last 2,500
    # blocks, and the WAL holds every block from the first (918 MiB). Bounded: +33 MiB,
    # and the WAL files before the last snapshots are deleted (367 MiB left).
    assert rss_end - rss_at < 150 * MIB, (rss_at // MIB, rss_end // MIB)
    assert purged, "the member still keeps its first WAL file: its log was never snapshotted"
