"""A development certificate authority: one CA, server and client certificates.

A consortium in production gets its certificates from whatever PKI its
members agree on. For a local network, tests and a first deployment,
`sharechain network up` creates its own small CA with this module: a
self-signed CA certificate, server certificates naming the IP addresses and
DNS names they answer on (subject alternative names, which TLS clients
check), and client certificates naming who connects (the common name, e.g.
an organisation id) for mutual TLS. Every certificate and key is returned as
PEM bytes; nothing is written unless the caller asks (`write_pem`). Keys are
ECDSA P-256, which every TLS stack (etcd's Go, Python's OpenSSL, browsers)
accepts. Time is injected (`now=`) so certificates are reproducible in
tests. Built on pyca/cryptography's X.509 builder; nothing here is a new
construction.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "DEFAULT_VALID_DAYS",
    "Authority",
    "Issued",
    "issue_client",
    "issue_gateway_client",
    "issue_server",
    "load_authority",
    "new_authority",
    "write_pem",
]

DEFAULT_VALID_DAYS = 825
"""How long issued certificates stay valid (the longest most TLS clients accept)."""

_CA_VALID_DAYS = 3650
_BACKDATE = datetime.timedelta(minutes=5)  # tolerate a little clock skew between hosts


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its private key, PEM-encoded."""

    cert_pem: bytes
    """The X.509 certificate (PEM)."""
    key_pem: bytes
    """Its private key, unencrypted PKCS#8 (PEM): keep it readable by its owner only."""


@dataclass(frozen=True, slots=True)
class Authority:
    """A CA able to issue certificates."""

    name: str
    """Common name of the CA certificate."""
    cert: x509.Certificate
    """The self-signed CA certificate."""
    key: ec.EllipticCurvePrivateKey
    """The CA's signing key."""

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate (PEM): what every party trusts."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issued(self) -> Issued:
        """The CA certificate and key as PEM, to store and reload with `load_authority`."""
        return Issued(self.cert_pem, _key_pem(self.key))


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now(now: datetime.datetime | None) -> datetime.datetime:
    return now if now is not None else datetime.datetime.now(datetime.UTC)


def new_authority(
    name: str = "sharechain development CA", *, now: datetime.datetime | None = None
) -> Authority:
    """A fresh self-signed CA (valid ten years) that may sign end-entity certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = _now(now) - _BACKDATE
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=_CA_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(name, cert, key)


def load_authority(issued: Issued) -> Authority:
    """Reload a CA saved as `Authority.issued()`."""
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    key = serialization.load_pem_private_key(issued.key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an ECDSA key; create the CA with new_authority")
    name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    return Authority(str(name), cert, key)


def _issue(
    ca: Authority,
    common_name: str,
    usages: Sequence[x509.ObjectIdentifier],
    names: Sequence[x509.GeneralName],
    now: datetime.datetime | None,
    valid_days: int,
    subject: x509.Name | None = None,
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    start = _now(now) - _BACKDATE
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue_server(
    ca: Authority,
    common_name: str,
    *,
    ips: Sequence[str] = ("127.0.0.1",),
    dns: Sequence[str] = ("localhost",),
    client_too: bool = False,
    now: datetime.datetime | None = None,
    valid_days: int = DEFAULT_VALID_DAYS,
) -> Issued:
    """A server certificate for the given IP addresses and DNS names.

    `client_too` adds the client-authentication usage, for a process that
    both serves and connects with one certificate (etcd members to their peers).
    """
    if not ips and not dns:
        raise ValueError("a server certificate needs at least one IP address or DNS name")
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    usages = [ExtendedKeyUsageOID.SERVER_AUTH]
    if client_too:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    return _issue(ca, common_name, usages, names, now, valid_days)


def issue_client(
    ca: Authority,
    common_name: str,
    *,
    now: datetime.datetime | None = None,
    valid_days: int = DEFAULT_VALID_DAYS,
) -> Issued:
    """A client certificate naming `common_name` (e.g. an organisation id)."""
    if not common_name:
        raise ValueError("a client certificate needs a common name (who connects)")
    return _issue(ca, common_name, [ExtendedKeyUsageOID.CLIENT_AUTH], (), now, valid_days)


def issue_gateway_client(
    ca: Authority,
    organisation: str,
    *,
    now: datetime.datetime | None = None,
    valid_days: int = DEFAULT_VALID_DAYS,
) -> Issued:
    """A client certificate for etcd's JSON gateway: it names `organisation` in the
    subject's O and has no common name, which the gateway refuses while etcd's
    authentication is on (the user is the token's, `ordering.etcd_auth`)."""
    if not organisation:
        raise ValueError("a client certificate needs an organisation (who connects)")
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation)])
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    return _issue(ca, organisation, usages, (), now, valid_days, subject)


def write_pem(directory: Path, name: str, issued: Issued) -> tuple[Path, Path]:
    """Write `<name>.crt` and `<name>.key` (the key readable by its owner only); their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    cert = directory / f"{name}.crt"
    key = directory / f"{name}.key"
    cert.write_bytes(issued.cert_pem)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(issued.key_pem)
    return cert, key
