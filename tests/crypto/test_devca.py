"""The development CA: certificates that verify against it, with the names asked for."""

from __future__ import annotations

import datetime
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sharechain.crypto.devca import (
    issue_client,
    issue_server,
    load_authority,
    new_authority,
    write_pem,
)

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_a_server_certificate_names_its_addresses_and_is_signed_by_the_ca() -> None:
    ca = new_authority("test CA", now=NOW)
    issued = issue_server(ca, "m0", ips=("127.0.0.1", "::1"), dns=("etcd.example",), now=NOW)
    cert = _cert(issued.cert_pem)
    cert.verify_directly_issued_by(ca.cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["etcd.example"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.not_valid_before_utc < NOW < cert.not_valid_after_utc
    both = _cert(issue_server(ca, "m1", client_too=True, now=NOW).cert_pem)
    usage = both.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in list(usage)


def test_a_client_certificate_names_who_connects() -> None:
    ca = new_authority(now=NOW)
    cert = _cert(issue_client(ca, "hospital-a", now=NOW).cert_pem)
    cert.verify_directly_issued_by(ca.cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "hospital-a"
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert not constraints.ca


def test_another_ca_does_not_verify_and_a_reloaded_ca_still_does() -> None:
    ca, other = new_authority(now=NOW), new_authority(now=NOW)
    cert = _cert(issue_client(ca, "bank-b", now=NOW).cert_pem)
    with pytest.raises(InvalidSignature):
        cert.verify_directly_issued_by(other.cert)
    again = load_authority(ca.issued())
    assert isinstance(again.key, ec.EllipticCurvePrivateKey)
    _cert(issue_client(again, "bank-b", now=NOW).cert_pem).verify_directly_issued_by(ca.cert)


def test_bad_requests_are_refused_with_a_reason() -> None:
    ca = new_authority(now=NOW)
    with pytest.raises(ValueError, match="IP address or DNS name"):
        issue_server(ca, "m0", ips=(), dns=())
    with pytest.raises(ValueError, match="common name"):
        issue_client(ca, "")


def test_write_pem_keeps_the_key_private(tmp_path: Path) -> None:
    ca = new_authority(now=NOW)
    cert, key = write_pem(tmp_path / "tls", "client", issue_client(ca, "regulator", now=NOW))
    assert _cert(cert.read_bytes()).issuer == ca.cert.subject
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
