"""Fixtures running real etcd clusters on 127.0.0.1 for the ordering tests."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from sharechain.ordering.etcd_log import ETCD_DEFAULT_MAX_REQUEST_BYTES, EtcdLog
from sharechain.ordering.etcd_process import DEFAULT_MAX_REQUEST_BYTES, EtcdCluster


def _running_cluster(
    base_dir: Path, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(base_dir, members=3, max_request_bytes=max_request_bytes)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """A 3-member cluster shared by a test module, with etcd's default request size limit.

    Tests sharing it must not stop members; each uses its own key prefix.
    """
    yield from _running_cluster(
        tmp_path_factory.mktemp("etcd"), max_request_bytes=ETCD_DEFAULT_MAX_REQUEST_BYTES
    )


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A 3-member cluster of this test alone, in tmp_path; free to stop members."""
    yield from _running_cluster(tmp_path / "etcd")


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix unique to the test, so tests on a shared cluster do not meet."""
    return "test/" + re.sub(r"[^A-Za-z0-9_]", "_", request.node.name) + "/"


@pytest.fixture
def log(etcd_cluster: EtcdCluster, prefix: str) -> Iterator[EtcdLog]:
    """An EtcdLog on the shared cluster under the test's own prefix."""
    with EtcdLog(etcd_cluster.endpoints, prefix=prefix, timeout=10.0) as etcd_log:
        yield etcd_log
