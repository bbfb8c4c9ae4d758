"""Attack 37: a member's etcd client orders, and administers nothing.

Every member's node holds an etcd client certificate. With etcd's
authentication off, any of them could turn it on with a root password of its
own (locking every other node out: ordering stops for all), remove the other
etcd members, or defragment them without pause. A cluster started as `network
up` starts it (`EtcdCluster(tls=True)`) runs with authentication on: each node
logs in as its organisation's user, whose role reads and writes keys and
nothing more (`ordering.etcd_auth`). Real 3-member etcd (Debian's etcd).
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sharechain.errors import ConfigError, OrderingError
from sharechain.ordering import etcd_compact
from sharechain.ordering.etcd_auth import NODE_ROLE, ROOT, delete_user, restrict_node_role
from sharechain.ordering.etcd_log import EtcdLog
from sharechain.ordering.etcd_process import EtcdCluster
from sharechain.ordering.etcd_tls import DevCertificates, EtcdTLS, etcd_http_client


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with EtcdCluster(tmp_path_factory.mktemp("etcd-rbac"), members=3, tls=True) as running:
        yield running


def _member(cluster: EtcdCluster, org: str) -> httpx.Client:
    tls = cluster.client_tls(org)
    assert tls is not None and tls.password_file is not None and tls.user == org
    return etcd_http_client(tls, timeout=5.0)


def _appends(cluster: EtcdCluster, org: str, prefix: str) -> bool:
    with EtcdLog(cluster.endpoints, prefix=prefix, timeout=5.0, tls=cluster.client_tls(org)) as log:
        height = log.head() + 1
        return log.append(height, f"block {height} by {org}".encode())


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v3/auth/user/add", {"name": "root", "password": "mine"}),
        ("/v3/auth/user/add", {"name": "mallory", "password": "mine"}),
        ("/v3/auth/user/grant", {"user": "hospital-a", "role": "root"}),
        ("/v3/auth/role/grant", {"name": "sharechain-node", "perm": {"permType": "READ"}}),
        ("/v3/auth/user/changepw", {"name": "bank-b", "password": "mine"}),
        ("/v3/auth/user/delete", {"name": "bank-b"}),
        ("/v3/auth/enable", {}),
        ("/v3/auth/disable", {}),
        ("/v3/maintenance/defragment", {}),
    ],
)
def test_a_member_s_client_cannot_administer_etcd(
    cluster: EtcdCluster, path: str, body: dict[str, object]
) -> None:
    with _member(cluster, "hospital-a") as client:
        reply = client.post(cluster.endpoints[0] + path, json=body)
    # 403 "etcdserver: permission denied"; defragmentation answers 500 "auth: permission denied"
    assert reply.status_code in (403, 500) and "permission denied" in reply.text, reply.text
    assert _appends(cluster, "bank-b", "sharechain/rbac-admin/")  # the others go on ordering


def test_a_member_s_client_cannot_remove_etcd_members(cluster: EtcdCluster) -> None:
    with _member(cluster, "hospital-a") as client:
        members = client.post(cluster.endpoints[0] + "/v3/cluster/member/list", json={}).json()
        victim = members["members"][1]["ID"]
        reply = client.post(cluster.endpoints[0] + "/v3/cluster/member/remove", json={"ID": victim})
    assert reply.status_code == 403 and "permission denied" in reply.text, reply.text
    with _member(cluster, "bank-b") as client:
        after = client.post(cluster.endpoints[0] + "/v3/cluster/member/list", json={}).json()
    assert len(after["members"]) == 3


def test_a_node_orders_and_compacts_but_its_defragmentation_is_refused(
    cluster: EtcdCluster,
) -> None:
    assert _appends(cluster, "hospital-a", "sharechain/rbac-node/")
    tls = cluster.client_tls("hospital-a")
    with EtcdLog(cluster.endpoints, prefix="sharechain/rbac-node/", timeout=5.0, tls=tls) as log:
        head = base64.b64encode(log.prefix + b"head").decode()
        revision = int(log.call("/v3/kv/range", {"key": head})["header"]["revision"])
        etcd_compact.compact(log, revision)  # compaction is a node's job, and allowed
        assert etcd_compact.alarms(log) == ()
        with etcd_http_client(tls) as client:
            failed = etcd_compact.defragment(cluster.endpoints, client)
    assert len(failed) == 3 and all("permission denied" in f for f in failed)
    root = cluster.root_tls()
    assert root is not None and root.user == ROOT
    with etcd_http_client(root) as client:
        assert etcd_compact.defragment(cluster.endpoints, client) == ()  # root may


def test_a_certificate_without_the_user_s_password_orders_nothing(cluster: EtcdCluster) -> None:
    tls = cluster.client_tls("hospital-a")
    assert tls is not None and tls.password_file is not None
    bare = EtcdTLS(tls.ca_file, tls.cert_file, tls.key_file)  # no login: no token
    with (
        EtcdLog(cluster.endpoints, prefix="sharechain/rbac-bare/", timeout=2.0, tls=bare) as log,
        pytest.raises(OrderingError, match="user name is empty"),
    ):
        log.append(0, b"junk")
    wrong = tls.password_file.parent / "wrong.password"
    wrong.write_text("not-the-password\n")
    guessed = EtcdTLS(tls.ca_file, tls.cert_file, tls.key_file, "hospital-a", wrong)
    with (
        EtcdLog(cluster.endpoints, prefix="sharechain/rbac-bare/", timeout=2.0, tls=guessed) as log,
        pytest.raises(OrderingError, match="refused the login of user 'hospital-a'"),
    ):
        log.append(0, b"junk")
    with EtcdLog(cluster.endpoints, prefix="sharechain/rbac-bare/", timeout=5.0, tls=tls) as log:
        assert log.head() == -1  # nothing was written


def test_a_removed_member_s_user_is_refused_at_once(cluster: EtcdCluster) -> None:
    tls = cluster.client_tls("clinic-c")
    with EtcdLog(cluster.endpoints, prefix="sharechain/rbac-removed/", timeout=3.0, tls=tls) as log:
        assert log.append(0, b"genesis")  # logged in, a token in hand
        root = cluster.root_tls()
        assert root is not None
        with etcd_http_client(root, timeout=5.0) as client:
            assert delete_user(client, cluster.endpoints, "clinic-c")
        # Its token is out of date at once, and logging in again fails.
        with pytest.raises(OrderingError, match="refused the login of user 'clinic-c'"):
            log.append(1, b"after its removal")
    with EtcdLog(
        cluster.endpoints, prefix="sharechain/rbac-removed/", timeout=3.0, tls=root
    ) as log:
        assert log.head() == 0


def test_a_node_logs_in_again_after_its_etcd_member_restarts(cluster: EtcdCluster) -> None:
    """Tokens live in the member that issued them: a restarted member forgets them."""
    first = cluster.endpoints[0]
    tls = cluster.client_tls("bank-b")
    with EtcdLog([first], prefix="sharechain/rbac-restart/", timeout=10.0, tls=tls) as log:
        assert log.append(0, b"before")
        cluster.stop_member(0)
        cluster.start_member(0)
        cluster.wait_healthy(30.0)
        deadline = time.monotonic() + 20
        while True:  # the member may need a moment to rejoin after its restart
            try:
                assert log.append(1, b"after")
                break
            except OrderingError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert log.get(1) == b"after"
        # A watch through the restarted member (its stream carries the token too).
        stop = threading.Event()
        seen: list[tuple[int, bytes]] = []

        def follow() -> None:
            for item in log.watch(1, stop):
                seen.append(item)
                if len(seen) == 2:
                    stop.set()

        watcher = threading.Thread(target=follow, daemon=True)
        watcher.start()
        with EtcdLog(
            cluster.endpoints, prefix="sharechain/rbac-restart/", timeout=10.0, tls=tls
        ) as other:
            assert other.append(2, b"watched")
        watcher.join(20)
        stop.set()
        assert seen == [(1, b"after"), (2, b"watched")]


def test_a_restarted_cluster_keeps_its_users_even_if_it_stopped_mid_provisioning(
    tmp_path: Path,
) -> None:
    base = tmp_path / "etcd"
    with EtcdCluster(base, members=1, tls=True) as cluster:
        assert _appends(cluster, "hospital-a", "sharechain/rbac-again/")
    # Stopped after authentication went on but before its marker was written.
    (base / "tls" / "auth-enabled").unlink()
    with EtcdCluster(base, members=1, tls=True) as cluster:
        assert _appends(cluster, "hospital-a", "sharechain/rbac-again/")
        assert _appends(
            cluster, "bank-b", "sharechain/rbac-again/"
        )  # a user made after the restart
        with _member(cluster, "bank-b") as client:
            reply = client.post(cluster.endpoints[0] + "/v3/auth/disable", json={})
        assert reply.status_code == 403 and "permission denied" in reply.text


def test_a_revoked_member_stays_revoked_across_restarts(tmp_path: Path) -> None:
    """`network revoke-etcd` (here its parts): the user is deleted and never made again."""
    base = tmp_path / "etcd"
    with EtcdCluster(base, members=1, tls=True) as cluster:
        handed = cluster.client_tls("clinic-c")
        assert handed is not None and handed.password_file is not None
        kept = tmp_path / "clinic-c.password"  # the copy its node was given
        kept.write_text(handed.password_file.read_text())
        tls = EtcdTLS(handed.ca_file, handed.cert_file, handed.key_file, "clinic-c", kept)
        assert _appends(cluster, "clinic-c", "sharechain/rbac-revoked/")
        root = cluster.root_tls()
        assert root is not None
        with etcd_http_client(root, timeout=5.0) as client:
            assert delete_user(client, cluster.endpoints, "clinic-c")
        DevCertificates(base / "tls", ("m0",)).revoke("clinic-c")
        with pytest.raises(ConfigError, match="access to etcd was revoked"):
            cluster.client_tls("clinic-c")
    with EtcdCluster(base, members=1, tls=True) as cluster:  # restarted: users made again
        assert _appends(cluster, "hospital-a", "sharechain/rbac-revoked/")
        with (
            EtcdLog(
                cluster.endpoints, prefix="sharechain/rbac-revoked/", timeout=2.0, tls=tls
            ) as log,
            pytest.raises(OrderingError, match="refused the login of user 'clinic-c'"),
        ):
            log.append(9, b"after its revocation")


def test_the_node_role_writes_only_under_the_chain_prefix_and_an_old_grant_is_narrowed(
    cluster: EtcdCluster,
) -> None:
    """Attack 45: keys outside the prefix would hold etcd's space, no node deleting them."""
    root_tls = cluster.root_tls()
    assert root_tls is not None
    everything = {"key": "AA==", "range_end": "AA=="}  # what the role had before the rule

    def writes(key: bytes) -> bool:
        with _member(cluster, "hospital-a") as client:
            url = cluster.endpoints[0] + "/v3/kv/put"
            body = {"key": base64.b64encode(key).decode(), "value": "eA=="}
            return client.post(url, json=body).status_code == 200

    assert writes(b"sharechain/anything") and not writes(b"elsewhere") and not writes(b"\x00")
    with etcd_http_client(root_tls, timeout=5.0) as root:
        grant = {"name": NODE_ROLE, "perm": {"permType": "READWRITE", **everything}}
        assert root.post(cluster.endpoints[0] + "/v3/auth/role/grant", json=grant).is_success
        assert writes(b"elsewhere")  # an old cluster's role
        assert restrict_node_role(root, cluster.endpoints, "sharechain/")
        assert not restrict_node_role(root, cluster.endpoints, "sharechain/")  # idempotent
        with pytest.raises(ConfigError, match="needs a key prefix"):
            restrict_node_role(root, cluster.endpoints, "")
        perms = root.post(
            cluster.endpoints[0] + "/v3/auth/role/get", json={"role": NODE_ROLE}
        ).json()["perm"]
    assert [base64.b64decode(p["key"]) for p in perms] == [b"sharechain/"]
    assert not writes(b"elsewhere") and writes(b"sharechain/anything")
