"""Attack 9: nobody without a certificate from the consortium's CA reaches etcd.

A real 3-member etcd cluster (Debian's etcd) started as `network up` starts
it: mutual TLS for clients and between members.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from sharechain.crypto.devca import issue_client, new_authority, write_pem
from sharechain.errors import OrderingError
from sharechain.node.launcher import LocalNetwork
from sharechain.ordering.etcd_log import EtcdLog
from sharechain.ordering.etcd_process import EtcdCluster
from sharechain.ordering.etcd_tls import EtcdTLS


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with EtcdCluster(tmp_path_factory.mktemp("etcd-tls"), members=3, tls=True) as running:
        yield running


def test_members_listen_on_https_only_and_require_peer_certificates(cluster: EtcdCluster) -> None:
    assert all(url.startswith("https://") for url in cluster.endpoints)
    args = " ".join(cluster._member_args(cluster.members[0]))
    for flag in ("--client-cert-auth", "--peer-client-cert-auth", "--trusted-ca-file="):
        assert flag in args


def test_a_node_with_its_certificate_appends_and_reads(cluster: EtcdCluster) -> None:
    tls = cluster.client_tls("hospital-a")
    assert tls is not None
    with EtcdLog(cluster.endpoints, prefix="sharechain/tls-ok/", timeout=5.0, tls=tls) as log:
        assert log.append(0, b"genesis")
        assert log.get(0) == b"genesis" and log.head() == 0


def test_a_client_without_a_certificate_is_refused(cluster: EtcdCluster) -> None:
    tls = cluster.client_tls("hospital-a")
    assert tls is not None
    # Trusts the CA, so the server is checked, but presents no certificate of its own.
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    with (
        httpx.Client(verify=context, timeout=3.0) as http,
        pytest.raises((httpx.HTTPError, ssl.SSLError)),
    ):
        reply = http.post(f"{cluster.endpoints[0]}/v3/kv/range", json={"key": "AA=="})
        reply.raise_for_status()
    # Plain HTTP to a TLS port gets no answer either.
    plain = cluster.endpoints[0].replace("https://", "http://")
    with httpx.Client(timeout=3.0) as http, pytest.raises(httpx.HTTPError):
        http.post(f"{plain}/v3/kv/range", json={"key": "AA=="}).raise_for_status()


def test_a_certificate_from_another_ca_is_refused(cluster: EtcdCluster, tmp_path: Path) -> None:
    tls = cluster.client_tls("hospital-a")
    assert tls is not None
    stranger = new_authority("someone else's CA")
    cert, key = write_pem(tmp_path, "intruder", issue_client(stranger, "hospital-a"))
    foreign = EtcdTLS(tls.ca_file, cert, key)
    with (
        EtcdLog(cluster.endpoints, prefix="sharechain/tls-no/", timeout=2.0, tls=foreign) as log,
        pytest.raises(OrderingError),
    ):
        log.append(0, b"junk")
    with EtcdLog(cluster.endpoints, prefix="sharechain/tls-no/", timeout=5.0, tls=tls) as log:
        assert log.head() == -1  # nothing was written


def test_network_up_runs_etcd_with_certificates_for_every_node(tmp_path: Path) -> None:
    net = LocalNetwork(tmp_path / "net", orgs=3, ordering="etcd")
    assert net.etcd is not None and net.etcd.tls
    for node in net.nodes:
        cmd = net.node_command(node)
        cert = Path(cmd[cmd.index("--etcd-cert") + 1])
        assert cert.exists() and cmd[cmd.index("--etcd-endpoints") + 1].startswith("https://")
        # Each organisation's certificate names it (in O: etcd's gateway refuses a
        # common name while its authentication is on), and its node logs in as its user.
        subject = x509.load_pem_x509_certificate(cert.read_bytes()).subject
        assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == node.org
        assert not subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        password = Path(cmd[cmd.index("--etcd-password-file") + 1])
        assert password.name == f"client-{node.org}.password" and password.read_text().strip()
