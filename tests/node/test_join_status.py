"""An operator's views: `node status` shows the disk alarm (state, free bytes, threshold),
and `network issue-certs` issues a newly admitted member's etcd client certificate.

The whole join (propose, vote, `node start --join` with these certificates against
real etcd and node processes) runs in tests/node/test_network_story.py (the demo).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from node_helpers import Consortium, run_node, shutdown
from test_snapshot_start import _with_settings
from typer.testing import CliRunner

from sharechain.api.member_certs import issue_member_certs
from sharechain.api.tls import create_ca
from sharechain.cli.main import app
from sharechain.errors import ConfigError, OrderingError
from sharechain.node.launcher import LocalNetwork
from sharechain.ordering.etcd_log import EtcdLog
from sharechain.ordering.etcd_tls import EtcdTLS


def _status(consortium: Consortium, url: str, *extra: str) -> tuple[int, str]:
    key = consortium.source / "keys" / "hospital-a.key"
    result = CliRunner().invoke(app, ["node", "status", "--node", url, "--key", str(key), *extra])
    return result.exit_code, result.output


def test_status_shows_the_disk_guard_and_a_full_disk_is_an_alarm(consortium: Consortium) -> None:
    running = run_node(consortium, "hospital-a", max_wait=0.005)
    try:
        with running.client() as client:
            disk = client.status()["disk"]
        assert disk["full"] is False and disk["reason"] is None
        assert disk["free_bytes"] > 0 and disk["reserve_bytes"] == 64 * 1024 * 1024
        assert disk["path"] == str(consortium.node_dir("hospital-a"))
        code, text = _status(consortium, running.url)
        assert code == 0 and "disk: ok; free" in text and "threshold 64.0 MiB" in text
        code, text = _status(consortium, running.url, "--json")
        body = json.loads(text)
        assert code == 0 and body["etcd"] is None and body["disk"]["full"] is False
    finally:
        shutdown(running)
    # A reserve larger than any disk: the guard counts the disk as full from the start.
    _with_settings(consortium.node_dir("hospital-a"), disk_reserve_bytes=2**60)
    running = run_node(consortium, "hospital-a", max_wait=0.005)
    try:
        with running.client() as client:
            disk = client.status()["disk"]
        assert disk["full"] is True and "is full" in disk["reason"]
        assert disk["reserve_bytes"] == 2**60 and 0 < disk["free_bytes"] < 2**60
        code, text = _status(consortium, running.url)
        assert code == 1 and "disk: FULL" in text and "ALARM disk full" in text
    finally:
        shutdown(running)


def test_status_needs_a_running_node(consortium: Consortium) -> None:
    where = str(consortium.source)
    result = CliRunner().invoke(app, ["node", "status", "--data-dir", where])
    assert result.exit_code == 2 and "--node URL or --network FILE" in result.output


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_issue_certs_gives_a_new_member_an_etcd_client_and_an_https_certificate(
    tmp_path: Path,
) -> None:
    base = tmp_path / "net"
    # Laid out, etcd's CA made, not started. Plain HTTP: an HTTPS network would make this
    # process trust its CA for good (`trust_ca`), and the file goes with tmp_path; the
    # nodes' CA is then made as `network up` makes it, and the network file names it.
    LocalNetwork(base, orgs=2, ordering="etcd", tls=False)
    ca = create_ca(base / "tls", "sharechain network development CA")
    spec = json.loads((base / "network.json").read_text())
    (base / "network.json").write_text(json.dumps({**spec, "tls": {"ca": str(ca.cert)}}))
    result = CliRunner().invoke(
        app, ["network", "issue-certs", "clinic-c", "--dir", str(base), "--json"]
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    start = body["start"]
    etcd_ca = _cert(base / "etcd" / "tls" / "ca.crt")
    client = _cert(Path(body["etcd"]["cert"]))
    assert client.issuer == etcd_ca.subject
    # Named in O, with no common name: etcd's gateway refuses one while its
    # authentication is on; the node logs in as the etcd user clinic-c.
    assert client.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "clinic-c"
    assert not client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    password = Path(start[start.index("--etcd-password-file") + 1])
    assert password.read_text().strip() and oct(password.stat().st_mode & 0o777) == "0o600"
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usage
    client.verify_directly_issued_by(etcd_ca)
    https = _cert(Path(body["https"]["cert"]))
    https.verify_directly_issued_by(_cert(base / "tls" / "ca.crt"))
    assert oct(Path(body["etcd"]["key"]).stat().st_mode & 0o777) == "0o600"
    assert start[:3] == ["sharechain", "node", "start"] and "--join" in start
    assert start[start.index("--etcd-cert") + 1] == body["etcd"]["cert"]
    # Asked again: the same files, not a second certificate.
    again = issue_member_certs(base, "clinic-c", etcd=True, https=True)
    assert again.etcd is not None and _cert(again.etcd.cert_file) == client


def test_issue_certs_refuses_a_bad_name_and_a_missing_network(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lowercase slug"):
        issue_member_certs(tmp_path, "Clinic C", etcd=True, https=False)
    result = CliRunner().invoke(app, ["network", "issue-certs", "clinic-c", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "no network in" in result.output
    assert not list(tmp_path.iterdir())  # nothing written


def test_revoke_etcd_cuts_a_removed_member_off_for_good(tmp_path: Path) -> None:
    base = tmp_path / "net"
    net = LocalNetwork(base, orgs=2, ordering="etcd", tls=False)
    assert net.etcd is not None
    net.etcd.start()  # etcd alone: its authentication goes on, as `network up` has it
    try:
        issued = CliRunner().invoke(
            app, ["network", "issue-certs", "clinic-c", "--dir", str(base), "--json"]
        )
        assert issued.exit_code == 0, issued.output
        start = json.loads(issued.output)["start"]
        kept = tmp_path / "clinic-c.password"  # the copy its node was given
        kept.write_text(Path(start[start.index("--etcd-password-file") + 1]).read_text())
        files = json.loads(issued.output)["etcd"]
        tls = EtcdTLS(Path(files["ca"]), Path(files["cert"]), Path(files["key"]), "clinic-c", kept)
        with EtcdLog(net.etcd.endpoints, prefix="sharechain/revoke/", timeout=3.0, tls=tls) as log:
            assert log.append(0, b"genesis")  # the user issue-certs made works
            result = CliRunner().invoke(
                app, ["network", "revoke-etcd", "clinic-c", "--dir", str(base), "--json"]
            )
            assert result.exit_code == 0, result.output
            assert json.loads(result.output) == {"org": "clinic-c", "user_deleted": True}
            with pytest.raises(OrderingError, match="refused the login of user 'clinic-c'"):
                log.append(1, b"after its removal")
        again = CliRunner().invoke(app, ["network", "issue-certs", "clinic-c", "--dir", str(base)])
        assert again.exit_code == 2 and "access to etcd was revoked" in again.output
    finally:
        net.etcd.stop()


def test_a_local_network_revokes_a_removed_member_s_etcd_access_by_itself(
    tmp_path: Path,
) -> None:
    base = tmp_path / "net"
    net = LocalNetwork(base, orgs=3, ordering="etcd", node_options=("--log-level", "warning"))
    assert net.etcd is not None
    net.up(timeout=60)
    try:
        gone = "hospital-b"
        files = net.etcd.client_tls(gone)  # its node's, password file included
        assert files is not None and files.password_file is not None
        kept = tmp_path / "hospital-b.password"
        kept.write_text(files.password_file.read_text())
        tls = EtcdTLS(files.ca_file, files.cert_file, files.key_file, gone, kept)
        with EtcdLog(net.etcd.endpoints, timeout=3.0, tls=tls) as log:
            assert log.head() >= 0
        assert net.revoke_removed() == []  # nobody removed: nothing revoked

        def admin(org: str) -> list[str]:
            return ["--network", str(base / "network.json"), "--as", org, "--json"]

        proposed = CliRunner().invoke(app, ["org", "remove", gone, *admin("hospital-a")])
        assert proposed.exit_code == 0, proposed.output
        pid = str(json.loads(proposed.output)["proposal"])
        voted = CliRunner().invoke(app, ["org", "vote", pid, *admin("regulator")])
        assert voted.exit_code == 0, voted.output
        # What the supervisor of `network up` runs every few seconds.
        revoked: list[str] = []
        deadline = time.monotonic() + 30
        while not revoked and time.monotonic() < deadline:
            revoked = net.revoke_removed()
            time.sleep(0.2)
        assert revoked == [gone]
        with (
            EtcdLog(net.etcd.endpoints, timeout=3.0, tls=tls) as log,
            pytest.raises(OrderingError, match=f"refused the login of user '{gone}'"),
        ):
            log.head()
        again = CliRunner().invoke(app, ["network", "revoke-removed", "--dir", str(base)])
        assert again.exit_code == 0 and "no removed organisation has etcd access" in again.output
        issued = CliRunner().invoke(app, ["network", "issue-certs", gone, "--dir", str(base)])
        assert issued.exit_code == 2 and "access to etcd was revoked" in issued.output
    finally:
        net.down()
