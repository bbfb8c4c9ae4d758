"""A development certificate authority for a consortium's nodes (TLS between them).

On a real network each organisation's node gets its certificate from a CA the
consortium agrees on. For a development or test network `network up` makes
one here: a CA key and self-signed certificate, and for each node a key and
a certificate for `127.0.0.1` and `localhost` (and any other names given),
signed by the CA, usable both to serve (TLS server) and to connect (TLS
client, for mutual TLS). Everything is written as PEM with the keys readable
by their owner only. The construction is the usual X.509 one, made with
`cryptography`; nothing here is invented.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["DevelopmentCA", "TlsFiles", "create_ca", "issue_node_cert"]

VALIDITY = dt.timedelta(days=365)
"""How long development certificates are valid."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where a party's TLS material is (PEM files)."""

    cert: Path
    """Its certificate."""
    key: Path
    """Its private key (mode 0600)."""
    ca: Path
    """The CA certificate to trust (peers' certificates are checked against it)."""


@dataclass(frozen=True, slots=True)
class DevelopmentCA:
    """A development CA on disk."""

    cert: Path
    """The CA certificate (PEM): what clients and nodes trust."""
    key: Path
    """The CA private key (PEM, mode 0600): what signs node certificates."""


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def create_ca(
    directory: Path,
    name: str = "sharechain development CA",
    *,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> DevelopmentCA:
    """Make a CA key and self-signed certificate in `directory` (`ca.pem`, `ca-key.pem`)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = now() - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + VALIDITY)
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
    ca = DevelopmentCA(directory / "ca.pem", directory / "ca-key.pem")
    _write_key(ca.key, key)
    _write_cert(ca.cert, cert)
    return ca


def issue_node_cert(
    ca: DevelopmentCA,
    directory: Path,
    name: str,
    *,
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> TlsFiles:
    """A key and certificate for `name` (an organisation's node) valid for `hosts`.

    Written as `<name>.pem` and `<name>-key.pem` in `directory`; usable to serve
    and to connect (mutual TLS, e.g. to etcd).
    """
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{ca.key} is not the EC key of a development CA")
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    start = now() - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / f"{name}.pem", directory / f"{name}-key.pem", ca.cert)
    _write_key(files.key, key)
    _write_cert(files.cert, cert)
    return files
