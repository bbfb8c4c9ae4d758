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

from sharechain.errors import ConfigError

__all__ = ["EtcdTLS", "etcd_http_client"]


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
