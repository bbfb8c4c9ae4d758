"""Members snapshot their Raft log every `snapshot_count` blocks (real etcd).

Between two snapshots an etcd member keeps every entry in memory and in its
WAL; here every entry is a block. The launcher's `--snapshot-count` is what
bounds both (docs/etcd-ordering.md, "Memory and WAL"); the soak test in
tests/security/test_etcd_memory_bound.py measures the bound itself.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sharechain.errors import ConfigError
from sharechain.ordering.etcd_log import EtcdLog
from sharechain.ordering.etcd_process import SNAPSHOT_COUNT, EtcdCluster

_UNIT = Path(__file__).parents[2] / "deploy" / "systemd" / "etcd-member.service"


def _snapshots(base: Path) -> list[Path]:
    return sorted((base / "m0" / "member" / "snap").glob("*.snap"))


def _append(cluster: EtcdCluster, blocks: int) -> None:
    with EtcdLog(cluster.endpoints) as log:
        for height in range(blocks):
            assert log.append(height, b"block %d" % height)


def test_a_member_snapshots_after_snapshot_count_blocks(tmp_path: Path) -> None:
    with EtcdCluster(tmp_path / "few", members=1, snapshot_count=20) as cluster:
        _append(cluster, 60)
        taken = _snapshots(tmp_path / "few")
    assert taken, "no Raft snapshot after 60 blocks with snapshot_count=20"
    # The snapshot's name ends with the Raft index it was taken at: past the first 20.
    assert max(int(p.stem.split("-")[1], 16) for p in taken) >= 20

    # The same blocks under etcd's own default take none: the flag is what snapshots.
    with EtcdCluster(tmp_path / "default", members=1, snapshot_count=100_000) as cluster:
        _append(cluster, 60)
        assert _snapshots(tmp_path / "default") == []


def test_snapshot_count_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="snapshot_count must be at least 1"):
        EtcdCluster(tmp_path, members=1, snapshot_count=0)


def test_the_deployed_unit_snapshots_as_often_as_the_launcher() -> None:
    found = re.search(r"--snapshot-count[ =](\d+)", _UNIT.read_text())
    assert found is not None, f"{_UNIT.name} does not set --snapshot-count"
    assert int(found.group(1)) == SNAPSHOT_COUNT
