"""The development CA: a CA certificate, node certificates for local names, private keys."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID

from sharechain.api.tls import create_ca, issue_node_cert


def test_a_node_certificate_is_signed_by_the_ca_for_local_names(tmp_path: Path) -> None:
    ca = create_ca(tmp_path)
    files = issue_node_cert(ca, tmp_path, "hospital-a", hosts=("127.0.0.1", "localhost", "node-a"))
    root = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(root)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "node-a"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert files.ca == ca.cert


def test_private_keys_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    ca = create_ca(tmp_path)
    files = issue_node_cert(ca, tmp_path, "bank-b")
    for key in (ca.key, files.key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_a_certificate_of_another_ca_does_not_verify(tmp_path: Path) -> None:
    ours, theirs = create_ca(tmp_path / "a"), create_ca(tmp_path / "b")
    files = issue_node_cert(theirs, tmp_path / "b", "x")
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    root = x509.load_pem_x509_certificate(ours.cert.read_bytes())
    with pytest.raises(InvalidSignature):  # same CA name, another key
        cert.verify_directly_issued_by(root)
