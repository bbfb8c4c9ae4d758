"""Attack 39: an organisation the chain removed keeps reading and writing the ordering log.

Its peers refuse its signed requests once the removal commits, but its node
logs in to etcd as its own user, which the removal does not touch: it would
go on reading every block from etcd, and appending to it. `sharechain network
revoke-removed` deletes the etcd user of every organisation a node's chain
records as removed (beside a deployment, as etcd's root, `--every N`); a
local network's supervisor does the same every few seconds
(`tests/node/test_join_status.py`). Real nodes on a real 3-member etcd with
TLS and users.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))

from node_helpers import ORGS, Consortium, Running, etcd_network
from test_replication import _records, wait_until

from sharechain.cli.main import app
from sharechain.errors import OrderingError
from sharechain.ordering.etcd_log import EtcdLog
from sharechain.ordering.etcd_process import EtcdCluster
from sharechain.ordering.etcd_tls import EtcdTLS

REMOVED = "bank-b"


@pytest.fixture
def network(tmp_path: Path) -> Iterator[tuple[EtcdCluster, Consortium, dict[str, Running]]]:
    with etcd_network(tmp_path, [spec.id for spec in ORGS], tls=True) as started:
        yield started


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def _as(consortium: Consortium, running: dict[str, Running], org: str) -> list[str]:
    key = consortium.source / "keys" / f"{org}.key"
    return ["--as", org, "--node", running[org].url, "--key", str(key)]


def _root_options(cluster: EtcdCluster) -> list[str]:
    root = cluster.root_tls()
    assert root is not None and root.password_file is not None
    return [
        "--etcd-endpoints",
        ",".join(cluster.endpoints),
        "--etcd-ca",
        str(root.ca_file),
        "--etcd-cert",
        str(root.cert_file),
        "--etcd-key",
        str(root.key_file),
        "--etcd-password-file",
        str(root.password_file),
    ]


def _reads_the_log(cluster: EtcdCluster, tls: EtcdTLS | None) -> int:
    with EtcdLog(cluster.endpoints, timeout=3.0, tls=tls) as log:
        return log.head()


def test_a_removed_member_s_etcd_user_is_deleted_and_the_others_order_on(
    network: tuple[EtcdCluster, Consortium, dict[str, Running]], tmp_path: Path
) -> None:
    cluster, consortium, running = network
    removed = cluster.client_tls(REMOVED)  # its node's files (asked later, the test
    # cluster would make its user again)
    wait_until(lambda: all(r.node.leader is not None for r in running.values()))
    with running["hospital-a"].client() as client:
        assert {r.code for r in client.submit(_records(consortium, "hospital-a", 3))} == {"valid"}

    code, out = _cli("org", "remove", REMOVED, "--json", *_as(consortium, running, "hospital-a"))
    assert code == 0, out
    # The regulator votes through its own node, which resolves the proposal from its chain.
    proposer, voter = running["hospital-a"].node, running["regulator"].node
    wait_until(lambda: voter.ledger.height >= proposer.ledger.height)
    code, out = _cli(
        "org", "vote", str(json.loads(out)["proposal"]), *_as(consortium, running, "regulator")
    )
    assert code == 0, out
    wait_until(lambda: all(r.node.removed_reason(REMOVED) for r in running.values()))
    # The chain's removal alone leaves its etcd user: its node still reads the log.
    assert _reads_the_log(cluster, removed) >= 1

    # Misused, the command says what is missing and deletes nothing.
    code, out = _cli("network", "revoke-removed", "--etcd-endpoints", cluster.endpoints[0])
    assert code == 2 and "--etcd-password-file" in out
    root = cluster.root_tls()
    assert root is not None
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not root's\n")
    options = _root_options(cluster)
    guessed = [*options[:-1], str(wrong)]
    reader = _as(consortium, running, "hospital-a")
    code, out = _cli("network", "revoke-removed", *guessed, *reader)
    assert code == 2 and "refused the login of user 'root'" in out
    assert _reads_the_log(cluster, removed) >= 1

    code, out = _cli("network", "revoke-removed", *options, *reader, "--json")
    assert code == 0, out
    assert json.loads(out) == {"revoked": [REMOVED]}
    with pytest.raises(OrderingError, match=f"refused the login of user '{REMOVED}'"):
        _reads_the_log(cluster, removed)
    # Nothing is left to do; the members that stay order on.
    code, out = _cli("network", "revoke-removed", *options, *reader)
    assert code == 0 and "no removed organisation has etcd access" in out
    with running["regulator"].client() as client:
        receipts = client.submit(_records(consortium, "regulator", 2, tag=9))
    assert {r.code for r in receipts} == {"valid"}
    assert _reads_the_log(cluster, cluster.client_tls("hospital-a")) >= 2
