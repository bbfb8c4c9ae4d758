"""Attack 10: read or alter the traffic between clients and nodes, or between nodes.

`sharechain network up` makes a development CA for the network and starts
every node on HTTPS with a certificate from it; the network file names the
CA, so a command given `--network FILE` trusts it, and so do the nodes
towards each other. A client that does not trust the CA (or speaks plain
HTTP) gets nothing. Plain HTTP only when asked for (`--plain-http`:
`tests/node/test_network_cli.py`).
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from api_helpers import Consortium, serve

from sharechain.api.client import present_cert
from sharechain.api.tls import create_ca, issue_node_cert


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from sharechain.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_network_up_serves_https_that_the_cli_trusts_and_strangers_do_not(
    tmp_path: Path,
) -> None:
    base = tmp_path / "net"
    up = _cli("network", "up", "--orgs", "2", "--dir", str(base), "--json")
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        net = json.loads(up.stdout)
        ca = Path(net["tls"]["ca"])
        assert ca.is_file() and ca.parent == base / "tls"
        urls = [n["url"] for n in net["nodes"]]
        assert all(u.startswith("https://127.0.0.1:") for u in urls)
        # A command given the network file trusts the CA: a signed write, then a read at
        # the other node, which got the block from the orderer over HTTPS.
        doc = tmp_path / "doc.txt"
        doc.write_text("over https")
        record = _cli("notarize", str(doc), "--network", str(base), "--as", "regulator", "--json")
        assert record.returncode == 0, record.stderr + record.stdout
        status = _cli("network", "status", "--dir", str(base), "--json")
        assert status.returncode == 0, status.stderr + status.stdout
        rows = json.loads(status.stdout)["nodes"]
        assert all(r["ready"] for r in rows) and {r["attestations"] for r in rows} == {"ok"}
        assert len({r["height"] for r in rows}) == 1 and rows[0]["height"] >= 1
        # With the CA, a plain client reaches the node; without it, or over HTTP, nothing.
        assert (
            httpx.get(
                urls[0] + "/v1/health", verify=ssl.create_default_context(cafile=ca)
            ).status_code
            == 200
        )
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(urls[0] + "/v1/health", verify=ssl.create_default_context())
        with pytest.raises(httpx.HTTPError):
            httpx.get(urls[0].replace("https://", "http://") + "/v1/health", timeout=3)
        # The command line without the network file (so without the CA) refuses the node.
        info = _cli("chain", "info", "--node", urls[0], "--as", "regulator",
                    "--data-dir", net["consortium_dir"])  # fmt: skip
        assert info.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in info.stdout + info.stderr
        assert "Traceback" not in info.stdout + info.stderr
    finally:
        down = _cli("network", "down", "--dir", str(base))
    assert down.returncode == 0, down.stderr


def test_a_node_requiring_client_certificates_takes_the_processes_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What `node start --tls-client-certs` asks of its peers, and `$SHARECHAIN_TLS_*` gives
    # a command line: a certificate from the CA that every client of the process shows.
    ca = create_ca(tmp_path / "pki")
    files = issue_node_cert(ca, tmp_path / "pki", "hospital-a")
    member = issue_node_cert(ca, tmp_path / "pki", "bank-b")
    running = serve(Consortium.make(tmp_path), "hospital-a", tls=files, client_certs=True)
    try:
        with running.client("bank-b", ca=ca.cert) as client, pytest.raises(httpx.TransportError):
            client.status()  # no certificate of ours
        monkeypatch.setenv("SHARECHAIN_TLS_CA", str(ca.cert))
        monkeypatch.setenv("SHARECHAIN_TLS_CERT", str(member.cert))
        monkeypatch.setenv("SHARECHAIN_TLS_KEY", str(member.key))
        with running.client("bank-b") as client:
            assert client.status()["org"] == "hospital-a"
        monkeypatch.delenv("SHARECHAIN_TLS_CERT")
        present_cert(member.cert, member.key)  # what a node serving HTTPS does for its peers
        try:
            with running.client("bank-b") as client:
                assert client.status()["org"] == "hospital-a"
        finally:
            present_cert(None)
        with running.client("bank-b") as client, pytest.raises(httpx.TransportError):
            client.status()
    finally:
        running.stop()
