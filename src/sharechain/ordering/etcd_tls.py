"""How a sharechain process connects to etcd: mutual TLS with its own certificate.

etcd holds the block log; whoever can write to it can fill a height with
junk. So etcd is never left open: its members require client certificates
signed by the consortium's CA (`--client-cert-auth --trusted-ca-file`) and
talk to each other over TLS too (`--peer-client-cert-auth`). A node
presents its organisation's client certificate and checks the member's
server certificate against the same CA. `EtcdTLS` names the three files;
`etcd_http_client` builds the one kind of HTTP client every etcd caller
uses (the log, the leader lease, compaction, the launcher's health checks),
so none of them can forget a setting.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from sharechain.crypto.devca import (
    Authority,
    Issued,
    issue_client,
    issue_server,
    load_authority,
    new_authority,
    write_pem,
)
from sharechain.errors import ConfigError

__all__ = ["DevCertificates", "EtcdTLS", "etcd_http_client"]


@dataclass(frozen=True, slots=True)
class EtcdTLS:
    """The files a client needs to talk to etcd over mutual TLS."""

    ca_file: Path
    """PEM certificate of the CA that signed the etcd members' server certificates."""
    cert_file: Path
    """This client's certificate (PEM), signed by the CA etcd trusts (`--trusted-ca-file`)."""
    key_file: Path
    """Its private key (PEM)."""

    def context(self) -> ssl.SSLContext:
        """An SSL context that checks the members against `ca_file` and presents our certificate.

        Build it once and share it: loading certificates costs far more CPU
        than a request.
        """
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file))
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load the etcd TLS files (CA {self.ca_file}, certificate "
                f"{self.cert_file}, key {self.key_file}): {exc}; check the paths and that the "
                "key matches the certificate"
            ) from None
        return context


def etcd_http_client(
    tls: EtcdTLS | None = None,
    context: ssl.SSLContext | None = None,
    *,
    timeout: float | None = None,
) -> httpx.Client:
    """The HTTP client for etcd's JSON gateway: mutual TLS when `tls` is given.

    Pass `context` (from `tls.context()`) to share one SSL context among
    several clients. Without `tls` the client has httpx's defaults (plain
    `http://` endpoints, which only a loopback test cluster should use).
    """
    if context is None and tls is not None:
        context = tls.context()
    options: dict[str, Any] = {}
    if context is not None:
        options["verify"] = context
    if timeout is not None:
        options["timeout"] = timeout
    return httpx.Client(**options)


class DevCertificates:
    """A local cluster's development CA and certificates, kept in one directory.

    `ca.crt`/`ca.key`, one certificate per member (`<name>.crt`, serving
    clients and peers on 127.0.0.1/localhost and a client towards its
    peers), and `client-<name>.crt` per client. Created on first use,
    reloaded after, so a restarted cluster keeps its certificates.
    """

    def __init__(self, directory: Path, members: tuple[str, ...]) -> None:
        self.directory = directory
        self.members = members

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    def authority(self) -> Authority:
        """The CA, created with every member's certificate the first time."""
        cert, key = self.ca_file, self.directory / "ca.key"
        if cert.exists() and key.exists():
            return load_authority(Issued(cert.read_bytes(), key.read_bytes()))
        ca = new_authority("sharechain etcd development CA")
        write_pem(self.directory, "ca", ca.issued())
        for name in self.members:
            write_pem(self.directory, name, issue_server(ca, name, client_too=True))
        return ca

    def client(self, name: str) -> EtcdTLS:
        """The files of client `name` (its certificate names it), issued on first use."""
        cert = self.directory / f"client-{name}.crt"
        key = self.directory / f"client-{name}.key"
        if not (cert.exists() and key.exists()):
            cert, key = write_pem(
                self.directory, f"client-{name}", issue_client(self.authority(), name)
            )
        return EtcdTLS(self.ca_file, cert, key)

    def member_args(self, name: str) -> list[str]:
        """etcd's flags for member `name`: mutual TLS for clients and for peers."""
        ca = self.ca_file
        cert, key = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        return [
            "--client-cert-auth",
            f"--trusted-ca-file={ca}",
            f"--cert-file={cert}",
            f"--key-file={key}",
            "--peer-client-cert-auth",
            f"--peer-trusted-ca-file={ca}",
            f"--peer-cert-file={cert}",
            f"--peer-key-file={key}",
        ]
