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

With a password file the client also logs in to etcd as `user`
(`sharechain.ordering.etcd_auth`): a cluster with authentication on lets a
node order and nothing more.
"""

from __future__ import annotations

import os
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.x509.oid import NameOID

from sharechain.crypto.devca import (
    Authority,
    Issued,
    issue_gateway_client,
    issue_server,
    load_authority,
    new_authority,
    write_pem,
)
from sharechain.errors import ConfigError
from sharechain.ordering.etcd_auth import ROOT, EtcdAuth

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
    user: str = ""
    """The etcd user it logs in as (a node's: its organisation id); "" with no password."""
    password_file: Path | None = None
    """A file holding that user's password (etcd's authentication on); None: no login."""

    def auth(self) -> EtcdAuth | None:
        """The login of `user` with the password in `password_file` (None without one)."""
        if self.password_file is None:
            return None
        try:
            password = self.password_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the etcd password file {self.password_file}: {exc.strerror or exc}"
            ) from None
        if not self.user or not password:
            raise ConfigError(
                f"the etcd password file {self.password_file} is empty, or no etcd user is "
                "named for it; write the password the etcd operator set for this node's user"
            )
        return EtcdAuth.for_credentials(self.user, password)

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
    if tls is not None and (auth := tls.auth()) is not None:
        options["auth"] = auth
    if timeout is not None:
        options["timeout"] = timeout
    return httpx.Client(**options)


class DevCertificates:
    """A local cluster's development CA and certificates, kept in one directory.

    `ca.crt`/`ca.key`, one certificate per member (`<name>.crt`, serving
    clients and peers on 127.0.0.1/localhost and a client towards its
    peers), and `client-<name>.crt` per client, with its etcd password
    (`client-<name>.password`, the user `<name>`); `root.password` is the
    administrator's. Created on first use, reloaded after, so a restarted
    cluster keeps its certificates and users.
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
        """The files of client `name` (its certificate names it), issued on first use;
        it logs in as the etcd user `name`."""
        if name == ROOT:
            raise ConfigError("root is etcd's administrator, not a client; use root()")
        if self.revoked(name):
            raise ConfigError(
                f"{name}'s access to etcd was revoked (`sharechain network revoke-etcd`: its "
                "organisation left the consortium); its node cannot order here"
            )
        return self._files(name, name)

    def revoked(self, name: str) -> bool:
        """Whether client `name`'s etcd access was revoked (`revoke`)."""
        return (self.directory / f"client-{name}.revoked").exists()

    def revoke(self, name: str) -> None:
        """Mark client `name` revoked: its password is gone, and no restart makes its
        user again. (Deleting the user in a running etcd is the caller's.)"""
        (self.directory / f"client-{name}.revoked").write_text("revoked\n")
        (self.directory / f"client-{name}.password").unlink(missing_ok=True)

    def root(self) -> EtcdTLS:
        """The administrator's files: a client certificate and root's password."""
        return self._files("cluster", ROOT)

    def users(self) -> dict[str, str]:
        """Every client's etcd user and password (root's not among them)."""
        names = (
            p.name.removeprefix("client-").removesuffix(".password")
            for p in sorted(self.directory.glob("client-*.password"))
        )
        return {name: self.password(name) for name in names if name != "cluster"}

    def password(self, name: str) -> str:
        """Client `name`'s etcd password (made on first use)."""
        return self._password(self.directory / f"client-{name}.password")

    def root_password(self) -> str:
        return self._password(self.directory / "root.password")

    def _files(self, name: str, user: str) -> EtcdTLS:
        cert = self.directory / f"client-{name}.crt"
        key = self.directory / f"client-{name}.key"
        if not (cert.exists() and key.exists()) or _has_common_name(cert):
            # (Certificates issued before etcd's authentication named the client in
            # their common name, which the gateway then refuses: issued again.)
            cert, key = write_pem(
                self.directory, f"client-{name}", issue_gateway_client(self.authority(), name)
            )
        secret = self.directory / ("root.password" if user == ROOT else f"client-{name}.password")
        self._password(secret)
        return EtcdTLS(self.ca_file, cert, key, user, secret)

    @staticmethod
    def _password(path: Path) -> str:
        """The password in `path`, written (random, owner-readable only) on first use."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(24) + "\n")
        return path.read_text().strip()

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


def _has_common_name(cert: Path) -> bool:
    subject = x509.load_pem_x509_certificate(cert.read_bytes()).subject
    return bool(subject.get_attributes_for_oid(NameOID.COMMON_NAME))
