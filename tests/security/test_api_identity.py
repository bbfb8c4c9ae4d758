"""Attack: replay a request signed for node A at node B (or over plain HTTP to a TLS node).

Defence: every signature covers `sharechain-node`, the organisation whose node the
request is meant for; each node refuses (401) a request signed for another node or
not naming one. Nodes serve HTTPS given a certificate (`sharechain.api.tls` makes a
development CA), and clients check it against the CA they are given.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_helpers import Consortium, InProcess, serve

from sharechain.api.auth import sign_request
from sharechain.api.client import NodeClient
from sharechain.api.tls import create_ca, issue_node_cert


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[tuple[InProcess, InProcess]]:
    consortium = Consortium.make(tmp_path)
    a = serve(consortium, "hospital-a")
    try:
        b = serve(consortium, "bank-b")
        try:
            yield a, b
        finally:
            b.stop()
    finally:
        a.stop()


def test_a_request_signed_for_one_node_is_refused_by_another(
    two_nodes: tuple[InProcess, InProcess],
) -> None:
    a, b = two_nodes
    key = a.consortium.keys("regulator").signing
    authority = a.url.removeprefix("http://")
    headers = sign_request(key, "regulator", "GET", authority, "/v1/status", node="hospital-a")
    # Replayed at B with A's Host, so even `@authority` matches what was signed.
    replayed = httpx.get(f"{b.url}/v1/status", headers={**headers, "Host": authority})
    assert replayed.status_code == 401
    assert "signed for node 'hospital-a'" in replayed.json()["detail"]
    assert httpx.get(f"{a.url}/v1/status", headers=headers).status_code == 200


def test_a_signature_that_names_no_node_is_refused(
    two_nodes: tuple[InProcess, InProcess],
) -> None:
    a, _ = two_nodes
    key = a.consortium.keys("regulator").signing
    headers = sign_request(key, "regulator", "GET", a.url.removeprefix("http://"), "/v1/status")
    reply = httpx.get(f"{a.url}/v1/status", headers=headers)
    assert reply.status_code == 401 and "sharechain-node" in reply.json()["detail"]


def test_the_client_names_the_node_it_talks_to(two_nodes: tuple[InProcess, InProcess]) -> None:
    a, b = two_nodes
    with a.client("regulator") as to_a, b.client("regulator") as to_b:
        assert to_a.status()["org"] == "hospital-a" and to_a.node_id() == "hospital-a"
        assert to_b.status()["org"] == "bank-b" and to_b.node_id() == "bank-b"
    key = a.consortium.keys("regulator").signing
    with NodeClient(b.url, "regulator", key, node="hospital-a") as misdirected:
        reply = misdirected.http.get("/v1/status")
        assert reply.status_code == 401


@pytest.fixture
def tls_node(tmp_path: Path) -> Iterator[tuple[InProcess, Path]]:
    ca = create_ca(tmp_path / "pki")
    files = issue_node_cert(ca, tmp_path / "pki", "hospital-a")
    running = serve(Consortium.make(tmp_path), "hospital-a", tls=files)
    try:
        yield running, ca.cert
    finally:
        running.stop()


def test_a_node_serves_https_that_a_client_with_the_ca_trusts(
    tls_node: tuple[InProcess, Path],
) -> None:
    running, ca = tls_node
    assert running.url.startswith("https://")
    with running.client("bank-b", ca=ca) as client:
        assert client.status()["org"] == "hospital-a"


def test_a_client_without_the_ca_refuses_the_node(
    tls_node: tuple[InProcess, Path], tmp_path: Path
) -> None:
    running, _ = tls_node
    other = create_ca(tmp_path / "other")
    for ca in (None, other.cert):
        with (
            running.client("bank-b", ca=ca) as client,
            pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
        ):
            client.status()
    plain = running.url.replace("https://", "http://")
    with pytest.raises(httpx.TransportError):  # no plain HTTP on a TLS node
        httpx.get(f"{plain}/v1/health", timeout=5)


def test_a_node_asking_for_client_certificates_refuses_clients_without_one(
    tmp_path: Path,
) -> None:
    ca = create_ca(tmp_path / "pki")
    files = issue_node_cert(ca, tmp_path / "pki", "hospital-a")
    member = issue_node_cert(ca, tmp_path / "pki", "bank-b")
    running = serve(Consortium.make(tmp_path), "hospital-a", tls=files, client_certs=True)
    try:
        with running.client("bank-b", ca=ca.cert, cert=(member.cert, member.key)) as client:
            assert client.status()["org"] == "hospital-a"
        with running.client("bank-b", ca=ca.cert) as client, pytest.raises(httpx.TransportError):
            client.status()
    finally:
        running.stop()
