"""TLS files for a consortium's nodes: where a node's certificate, key and CA live.

On a real network each organisation's node gets its certificate from a CA the
consortium agrees on. For a development or test network a CA is made here:
a CA key and self-signed certificate, and for each node a key and a
certificate for `127.0.0.1` and `localhost` (and any other names given),
signed by the CA, usable both to serve (TLS server) and to connect (TLS
client, for mutual TLS). The certificates themselves come from
`sharechain.crypto.devca` (the one development CA, shared with etcd's mutual
TLS); this module only lays them out as PEM files, keys readable by their
owner only.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sharechain.crypto.devca import (
    Issued,
    issue_server,
    load_authority,
    new_authority,
    write_pem,
)

__all__ = ["DevelopmentCA", "TlsFiles", "create_ca", "issue_node_cert"]

VALIDITY_DAYS = 365
"""How long development node certificates are valid."""


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


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_ca(
    directory: Path,
    name: str = "sharechain development CA",
    *,
    now: Callable[[], dt.datetime] = _utcnow,
) -> DevelopmentCA:
    """Make a CA key and self-signed certificate in `directory` (`ca.crt`, `ca.key`)."""
    cert, key = write_pem(directory, "ca", new_authority(name, now=now()).issued())
    return DevelopmentCA(cert, key)


def issue_node_cert(
    ca: DevelopmentCA,
    directory: Path,
    name: str,
    *,
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    now: Callable[[], dt.datetime] = _utcnow,
) -> TlsFiles:
    """A key and certificate for `name` (an organisation's node) valid for `hosts`.

    Written as `<name>.crt` and `<name>.key` in `directory`; usable to serve and
    to connect (mutual TLS, e.g. to etcd).
    """
    authority = load_authority(Issued(ca.cert.read_bytes(), ca.key.read_bytes()))
    ips, dns = [], []
    for host in hosts:
        try:
            ips.append(str(ipaddress.ip_address(host)))
        except ValueError:
            dns.append(host)
    issued = issue_server(
        authority, name, ips=ips, dns=dns, client_too=True, now=now(), valid_days=VALIDITY_DAYS
    )
    cert, key = write_pem(directory, name, issued)
    return TlsFiles(cert, key, ca.cert)
