"""A newly admitted member's certificates, issued from a local network's development CAs.

A network made by `sharechain network up` (`sharechain.node.launcher`) keeps
two development CAs in its directory: the etcd members' (`etcd/tls/`: every
etcd client shows a certificate it signed, mutual TLS) and, on HTTPS, the
nodes' (`tls/`: every node's server certificate, checked by its peers). An
organisation admitted while the network runs (`org propose` ... `org vote`)
needs both before its node can start with `node start --join URL`: the join
hands out the etcd endpoints, never key material. `issue_member_certs` is
that step (`sharechain network issue-certs`, `LocalNetwork.add_member`). A
consortium with its own PKI issues the same two certificates from its CA.

The other way round, an organisation the chain removes must lose its etcd
user, or its node goes on reading the ordering log. `revoke_member_etcd` does
it for one organisation of a local network (`sharechain network
revoke-etcd`); `revoke_removed_etcd` (a local network) and
`revoke_removed_users` (any cluster, as etcd's root) do it for every
organisation a node's chain records as removed: the local network's
supervisor runs the first every few seconds, and `sharechain network
revoke-removed --every N` runs either beside a network.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from sharechain.api.client import NodeClient
from sharechain.api.tls import DevelopmentCA, TlsFiles, issue_node_cert
from sharechain.errors import ConfigError, OrderingError, SharechainError
from sharechain.ledger.identities import check_org_id
from sharechain.ordering.etcd_auth import add_users, delete_user, list_users
from sharechain.ordering.etcd_tls import DevCertificates, EtcdTLS, etcd_http_client

__all__ = [
    "MemberCerts",
    "issue_member_certs",
    "removed_organisations",
    "revoke_member_etcd",
    "revoke_removed_etcd",
    "revoke_removed_etcd_asking",
    "revoke_removed_users",
]

_NETWORK_FILE = "network.json"
"""The local network's description (`sharechain.node.launcher._NETWORK_FILE`)."""
_ETCD_MEMBERS = ("m0", "m1", "m2")
"""The local network's etcd members (their certificates exist once the CA does)."""


@dataclass(frozen=True, slots=True)
class MemberCerts:
    """A newly admitted organisation's certificates from a local network's development CAs."""

    org: str
    """The organisation (its id is the certificates' common name)."""
    etcd: EtcdTLS | None
    """Its etcd client files: etcd requires mutual TLS (None: the network has no etcd)."""
    https: TlsFiles | None
    """Its node's HTTPS files (None: the network serves plain HTTP)."""

    def start_options(self) -> list[str]:
        """The `sharechain node start` options that use them."""
        out: list[str] = []
        if self.etcd is not None:
            out += ["--etcd-ca", str(self.etcd.ca_file), "--etcd-cert", str(self.etcd.cert_file)]
            out += ["--etcd-key", str(self.etcd.key_file)]
            if self.etcd.password_file is not None:
                out += ["--etcd-password-file", str(self.etcd.password_file)]
        if self.https is not None:
            out += ["--tls-cert", str(self.https.cert), "--tls-key", str(self.https.key)]
            out += ["--tls-ca", str(self.https.ca)]
        return out


def issue_member_certs(base: Path, org: str, *, etcd: bool, https: bool) -> MemberCerts:
    """Issue `org`'s certificates from the development CAs of the network in `base`.

    `etcd`: the network orders through etcd; `https`: its nodes serve HTTPS.

    The network's etcd members require a client certificate signed by their CA
    (`<base>/etcd/tls/ca.crt`) from every node, so a newly admitted
    organisation's node cannot reach the ordering service without one; on an
    HTTPS network its node also needs a server certificate from the nodes' CA
    (`<base>/tls/ca.crt`), which its peers check. Issued once: asked again,
    the files already there are returned. The CAs' keys never leave `base`.
    """
    try:
        check_org_id(org)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    etcd_files = None
    if etcd:
        certs = DevCertificates(base / "etcd" / "tls", _ETCD_MEMBERS)
        if not (certs.ca_file.exists() and (certs.directory / "ca.key").exists()):
            raise ConfigError(
                f"the network in {base} has no etcd CA yet ({certs.ca_file}): start it once "
                "with `sharechain network up`"
            )
        etcd_files = certs.client(org)
        _add_etcd_user(base, certs, org)
    https_files = None
    if https:
        directory = base / "tls"
        ca = DevelopmentCA(directory / "ca.crt", directory / "ca.key")
        cert, key = directory / f"{org}.crt", directory / f"{org}.key"
        if cert.exists() and key.exists():
            https_files = TlsFiles(cert, key, ca.cert)
        elif ca.cert.exists() and ca.key.exists():
            https_files = issue_node_cert(ca, directory, org)
        else:
            raise ConfigError(f"the network in {base} has no CA for its nodes ({ca.cert})")
    return MemberCerts(org, etcd_files, https_files)


def revoke_member_etcd(base: Path, org: str) -> bool:
    """Cut `org`'s node off from the etcd of the network in `base` (its organisation was
    removed on the chain): its etcd user is deleted, so its token stops working at once,
    and its password with it, so no restart makes the user again. True if a user was
    deleted (False: it had none in the running etcd)."""
    try:
        check_org_id(org)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    certs = DevCertificates(base / "etcd" / "tls", _ETCD_MEMBERS)
    if not (certs.directory / "auth-enabled").exists():
        raise ConfigError(
            f"the network in {base} has no etcd with its authentication on; start it with "
            "`sharechain network up` (etcd ordering)"
        )
    with etcd_http_client(certs.root(), timeout=10.0) as root:
        try:
            deleted = delete_user(root, _endpoints(base), org)
        except (OrderingError, httpx.HTTPError) as exc:
            raise ConfigError(
                f"could not delete {org}'s etcd user: {exc}; is the network up "
                f"(`sharechain network status --dir {base}`)?"
            ) from None
    certs.revoke(org)
    return deleted


def removed_organisations(client: NodeClient) -> set[str]:
    """The organisations `client`'s node records as removed from the consortium."""
    from sharechain.sharing.remote_chain import organisations  # the same layer, loaded late

    return {o.id for o in organisations(client) if o.status == "removed"}


def revoke_removed_etcd(base: Path, client: NodeClient) -> list[str]:
    """Revoke the etcd access of every removed organisation of the network in `base`
    that still has it (`revoke_member_etcd`), as `client`'s node reports the chain;
    the organisations revoked now (none on a network without etcd authentication)."""
    certs = DevCertificates(base / "etcd" / "tls", _ETCD_MEMBERS)
    if not (certs.directory / "auth-enabled").exists():
        return []
    due = sorted(org for org in removed_organisations(client) if not certs.revoked(org))
    for org in due:
        revoke_member_etcd(base, org)
    return due


def revoke_removed_etcd_asking(
    base: Path, clients: Iterable[tuple[str, Callable[[], NodeClient]]]
) -> list[str]:
    """`revoke_removed_etcd`, reading the chain from the first of `clients` (organisation,
    client maker) whose node answers: a node that is down, or whose organisation was
    itself removed, does not. `ConfigError` with each one's reason if none answered."""
    failures = []
    for org, make in clients:
        try:
            with make() as client:
                return revoke_removed_etcd(base, client)
        except (SharechainError, OSError, httpx.HTTPError) as exc:
            failures.append(f"{org}: {exc}")
    raise ConfigError(f"no node of the network in {base} answered: {'; '.join(failures)}")


def revoke_removed_users(
    client: NodeClient, root: httpx.Client, endpoints: Sequence[str]
) -> list[str]:
    """Delete the etcd user of every organisation `client`'s node records as removed;
    `root` is logged in as etcd's root. The users deleted now."""
    removed = removed_organisations(client)
    try:
        due = sorted(removed & list_users(root, endpoints))
        for org in due:
            delete_user(root, endpoints, org)
    except OrderingError as exc:
        raise ConfigError(f"could not revoke removed members' etcd users: {exc}") from None
    return due


def _endpoints(base: Path) -> list[str]:
    try:
        return list(json.loads((base / _NETWORK_FILE).read_text())["etcd_endpoints"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"cannot read the etcd endpoints from {base / _NETWORK_FILE}: {exc}"
        ) from None


def _add_etcd_user(base: Path, certs: DevCertificates, org: str) -> None:
    """Create `org`'s etcd user (its node may order, not administer) in the running
    network's etcd, as its root; nothing to do before etcd's authentication is on
    (the cluster creates every client's user when it starts)."""
    if not (certs.directory / "auth-enabled").exists():
        return
    endpoints = _endpoints(base)
    with etcd_http_client(certs.root(), timeout=10.0) as root:
        try:
            add_users(root, endpoints, {org: certs.password(org)})
        except (OrderingError, httpx.HTTPError) as exc:
            raise ConfigError(
                f"could not create {org}'s etcd user: {exc}; is the network up "
                f"(`sharechain network status --dir {base}`)?"
            ) from None
