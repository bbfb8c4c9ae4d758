"""A local consortium on one machine: one node process per organisation, etcd members.

`LocalNetwork` lays out a network directory and runs it::

    <dir>/network.json          what runs where (the network file); the CLI reads it
    <dir>/consortium/           genesis and every organisation's keys (development only)
    <dir>/nodes/<org>/          each node's own data directory (its key only)
    <dir>/tls/                  the development CA (ca.crt) and each node's certificate
    <dir>/etcd/                 etcd members' data (ordering=etcd)
    <dir>/logs/<org>.log        each node's log; etcd members log to etcd/m<i>.log

Nodes listen on 127.0.0.1 only. With `tls=True` (what `sharechain network up`
asks for unless given `--plain-http`) they serve HTTPS with certificates from
a development CA made here (`sharechain.api.tls`), trust only that CA at
their peers, and the network file names the CA (`tls.ca`) so that every
client built from it trusts it; this process trusts it too (`trust_ca`).
A network reopened from its file keeps the scheme it was created with.

In `solo` mode the first organisation's node orders and the others follow
it; in `etcd` mode three etcd members form the ordering service and every
node appends to it. The same class backs
`sharechain network up/down/status` (through `sharechain.node.supervisor`)
and the multi-process tests.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import IO, Any

import httpx

from sharechain.api.client import NodeClient, trust_ca
from sharechain.api.member_certs import issue_member_certs, revoke_removed_etcd_asking
from sharechain.api.tls import DevelopmentCA, TlsFiles, create_ca, issue_node_cert
from sharechain.crypto.keyfile import OrgKeys
from sharechain.errors import ConfigError
from sharechain.ordering.etcd_process import EtcdCluster, free_ports
from sharechain.ordering.etcd_tls import EtcdTLS
from sharechain.storage.datadir import DataDir, OrgSpec, init_consortium

__all__ = [
    "BIND_ATTEMPTS",
    "NETWORK_FILE",
    "NETWORK_HEARTBEAT_MS",
    "LocalNetwork",
    "NodeSpec",
    "PortTakenError",
    "default_orgs",
    "node_data_dir",
]

_log = logging.getLogger(__name__)

BIND_ATTEMPTS = 3
"""How many times `LocalNetwork.up` starts the nodes when another process took a port
drawn for one of them before it could bind it (each time on a newly drawn port)."""

_BIND_FAILURE = b"address already in use"
"""What the node's log says (uvicorn's bind error) when its port is taken."""


class PortTakenError(ConfigError):
    """A node exited because another process holds the port it was to listen on."""

    def __init__(self, org: str, port: int, message: str) -> None:
        super().__init__(message)
        self.org = org
        self.port = port


NETWORK_FILE = "network.json"
NETWORK_HEARTBEAT_MS = 100
"""Raft heartbeat of the local network's etcd members (election timeout: ten of them)."""
_MEMBER_NAMES = ("hospital-a", "hospital-b", "bank-c", "pharma-d", "insurer-e", "lab-f")


def default_orgs(count: int) -> tuple[OrgSpec, ...]:
    """`count` organisations: members, then one supervisor (`regulator`); all admins."""
    if count < 2:
        raise ConfigError("a network needs at least 2 organisations (members and a supervisor)")
    members = [
        _MEMBER_NAMES[i] if i < len(_MEMBER_NAMES) else f"member-{i + 1}" for i in range(count - 1)
    ]
    return (
        *(OrgSpec(m, ("member", "admin")) for m in members),
        OrgSpec("regulator", ("member", "supervisor", "admin")),
    )


def node_data_dir(source: Path, dest: Path, org: str) -> Path:
    """A node's data directory: the consortium's genesis and config, and only `org`'s key."""
    dd = DataDir.open(source)
    (dest / "keys").mkdir(parents=True, exist_ok=True)
    for name in ("consortium.json", "genesis.cbor", "genesis.note"):
        if not (dest / name).exists():
            shutil.copyfile(source / name, dest / name)
    key = dest / "keys" / f"{org}.key"
    if not key.exists():
        shutil.copyfile(dd.key_path(org), key)
        os.chmod(key, 0o600)
    return dest


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """Where one organisation's node lives and listens."""

    org: str
    """The organisation."""
    port: int
    """Its API port on 127.0.0.1."""
    data_dir: Path
    """Its data directory."""
    log_path: Path
    """Its log file."""
    scheme: str = "http"
    """`https` when it serves TLS."""

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"


class LocalNetwork:
    """A network directory and the processes that run it."""

    def __init__(
        self,
        base: Path,
        *,
        orgs: int = 4,
        ordering: str = "solo",
        python: str = sys.executable,
        node_options: Sequence[str] = (),
        governance: Mapping[str, Any] | None = None,
        tls: bool = False,
    ) -> None:
        self.base = base
        self.python = python
        self.node_options = tuple(node_options)
        spec_file = base / NETWORK_FILE
        if spec_file.exists():
            body = json.loads(spec_file.read_text())
            self.ordering = body["ordering"]
            tls = bool(body.get("tls"))  # the scheme it was created with
            scheme = "https" if tls else "http"
            self.nodes = tuple(
                NodeSpec(n["org"], n["port"], Path(n["data_dir"]), Path(n["log"]), scheme)
                for n in body["nodes"]
            )
            etcd_ports = body.get("etcd_base_port")
        else:
            if ordering not in ("solo", "etcd"):
                raise ConfigError(f"--ordering must be solo or etcd, not {ordering!r}")
            self.ordering = ordering
            specs = default_orgs(orgs)
            init_consortium(
                base / "consortium", specs, consortium="local-network", governance=governance
            )
            ports = free_ports(len(specs))
            self.nodes = tuple(
                NodeSpec(
                    s.id,
                    port,
                    node_data_dir(base / "consortium", base / "nodes" / s.id, s.id),
                    base / "logs" / f"{s.id}.log",
                    "https" if tls else "http",
                )
                for s, port in zip(specs, ports, strict=True)
            )
            etcd_ports = _consecutive_free_ports(6) if ordering == "etcd" else None
        self.etcd: EtcdCluster | None = None
        if self.ordering == "etcd":
            # etcd's default heartbeat (100 ms), not the tests' 50 ms: three idle
            # members then cost 4 % of a core instead of 6 %, and a member lost
            # is replaced within a second rather than half a second.
            self.etcd = EtcdCluster(
                base / "etcd",
                members=3,
                base_port=etcd_ports,
                heartbeat_ms=NETWORK_HEARTBEAT_MS,
                election_ms=10 * NETWORK_HEARTBEAT_MS,
                tls=True,  # etcd is never open: members and nodes show certificates
            )
        self._etcd_base_port = etcd_ports
        self.tls: dict[str, TlsFiles] = _node_certificates(base / "tls", self.nodes) if tls else {}
        """Each node's HTTPS files (empty on plain HTTP)."""
        if self.tls:
            trust_ca(self.ca)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}
        self._log_starts: dict[str, int] = {}
        self._joining: dict[str, str] = {}
        """Organisations added at runtime, with the member node they join through."""
        self._unchecked = ""
        """Why `revoke_removed` last found no node to ask (logged once)."""
        self.write_file(state="created")

    # -- the network file -----------------------------------------------------

    def write_file(self, *, state: str, error: str = "") -> None:
        body: dict[str, Any] = {
            "version": 1,
            "state": state,
            "error": error,
            "ordering": self.ordering,
            "dir": str(self.base),
            "consortium_dir": str(self.base / "consortium"),
            "supervisor_pid": os.getpid() if state == "up" else None,
            "nodes": [
                {
                    "org": n.org,
                    "port": n.port,
                    "url": n.url,
                    "data_dir": str(n.data_dir),
                    "log": str(n.log_path),
                    "pid": self._procs[n.org].pid if n.org in self._procs else None,
                }
                for n in self.nodes
            ],
            "etcd_base_port": self._etcd_base_port,
            "etcd_endpoints": list(self.etcd.endpoints) if self.etcd else [],
            "etcd_tls": _tls_json(self.etcd.client_tls("operator")) if self.etcd else None,
            "tls": {"ca": str(self.ca)} if self.ca is not None else None,
        }
        tmp = self.base / (NETWORK_FILE + ".tmp")
        tmp.write_text(json.dumps(body, indent=2) + "\n")
        os.replace(tmp, self.base / NETWORK_FILE)

    @property
    def ca(self) -> Path | None:
        """The CA certificate the nodes' certificates chain to (None on plain HTTP)."""
        return next(iter(self.tls.values())).ca if self.tls else None

    def spec(self, org: str) -> NodeSpec:
        for n in self.nodes:
            if n.org == org:
                return n
        raise ConfigError(f"no organisation {org!r} in this network")

    def keys(self, org: str) -> OrgKeys:
        return DataDir.open(self.base / "consortium").keys(org)

    def client(self, org: str, timeout: float = 30.0) -> NodeClient:
        """A client of `org`'s node, signing as `org`."""
        url = self.spec(org).url
        return NodeClient(url, org, self.keys(org).signing, timeout=timeout, ca=self.ca)

    # -- processes ----------------------------------------------------------------

    def node_command(self, node: NodeSpec) -> list[str]:
        cmd = [
            self.python,
            "-m",
            "sharechain.cli.node_cmd",
            "start",
            "--data-dir",
            str(node.data_dir),
            "--org",
            node.org,
            "--listen",
            f"127.0.0.1:{node.port}",
            "--ordering",
            self.ordering,
        ]
        for peer in self.nodes:
            if peer.org != node.org:
                cmd += ["--peer", f"{peer.org}={peer.url}"]
        files = self.tls.get(node.org)
        if files is not None:
            cmd += ["--tls-cert", str(files.cert), "--tls-key", str(files.key)]
            cmd += ["--tls-ca", str(files.ca)]
        if self.ordering == "etcd" and self.etcd is not None:
            cmd += ["--etcd-endpoints", ",".join(self.etcd.endpoints)]
            try:
                tls = self.etcd.client_tls(node.org)
            except ConfigError:  # revoked (`network revoke-etcd`): it starts without access
                tls = None
            if tls is not None:
                cmd += ["--etcd-ca", str(tls.ca_file), "--etcd-cert", str(tls.cert_file)]
                cmd += ["--etcd-key", str(tls.key_file)]
                if tls.password_file is not None:
                    cmd += ["--etcd-password-file", str(tls.password_file)]
            cmd += ["--max-block-bytes", str(self.etcd.max_request_bytes - 64 * 1024)]
        elif node.org != self.nodes[0].org:
            cmd += ["--orderer-url", self.nodes[0].url]
        if node.org in self._joining:
            cmd += ["--join", self._joining[node.org]]
        return cmd + list(self.node_options)

    def add_member(self, org: str, data_dir: Path, *, through: str) -> NodeSpec:
        """Start the node of `org`, admitted on the chain since the network started.

        `data_dir` holds `org`'s key file (`keys/<org>.key`) and nothing else yet.
        Its certificates are issued here (`sharechain.api.member_certs`, what an
        operator runs as `sharechain network issue-certs`) and it starts with
        `node start --join <through's URL>`: it fetches the consortium's
        configuration from that node, then syncs from its peers while nobody
        stops. It is then part of this network (the network file lists it).
        """
        check = self.spec(through)
        if any(n.org == org for n in self.nodes):
            raise ConfigError(f"{org} already has a node in this network")
        certs = issue_member_certs(
            self.base, org, etcd=self.ordering == "etcd", https=self.ca is not None
        )
        if certs.https is not None:
            self.tls[org] = certs.https
        (port,) = free_ports(1)
        spec = NodeSpec(org, port, data_dir, self.base / "logs" / f"{org}.log", check.scheme)
        self.nodes = (*self.nodes, spec)
        self._joining[org] = check.url
        self.start_node(org)
        self.write_file(state="up" if self._procs else "created")
        return spec

    def start_node(self, org: str) -> None:
        node = self.spec(org)
        if org in self._procs and self._procs[org].poll() is None:
            return
        self._close_log(org)
        node.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = node.log_path.open("ab")
        self._logs[org] = log
        self._log_starts[org] = log.tell()  # where this run's lines start
        self._procs[org] = subprocess.Popen(
            self.node_command(node),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop_node(self, org: str, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`."""
        proc = self._procs.pop(org, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._close_log(org)

    def kill_node(self, org: str) -> None:
        """SIGKILL, as a crash would."""
        proc = self._procs.pop(org, None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)
        self._close_log(org)

    def revoke_removed(self) -> list[str]:
        """Cut the organisations the chain removed off etcd (`revoke_removed_etcd`), as the
        first running node that answers reports the chain; those revoked now. The
        supervisor calls it every few seconds, so a removal needs no operator step."""
        if self.etcd is None:
            return []
        running = [n.org for n in self.nodes if self.is_running(n.org)]
        try:
            revoked = revoke_removed_etcd_asking(
                self.base, ((org, partial(self.client, org, timeout=5.0)) for org in running)
            )
        except ConfigError as exc:
            if str(exc) != self._unchecked:  # logged once while it lasts
                _log.warning("removed members' etcd access not checked: %s", exc)
            self._unchecked = str(exc)
            return []
        self._unchecked = ""
        return revoked

    def is_running(self, org: str) -> bool:
        proc = self._procs.get(org)
        return proc is not None and proc.poll() is None

    def exited(self, org: str) -> int | None:
        """The exit code of `org`'s node if it was started and has exited on its own
        (None while it runs, and after `stop_node` or `kill_node`)."""
        proc = self._procs.get(org)
        return None if proc is None else proc.poll()

    def _close_log(self, org: str) -> None:
        log = self._logs.pop(org, None)
        if log is not None:
            log.close()

    def up(self, timeout: float = 90.0, bind_attempts: int = BIND_ATTEMPTS) -> None:
        """Start etcd (if used) and every node; wait until all are ready and caught up.

        A port is drawn free and bound by the node a moment later; another process
        can take it in between (a second network, a test worker). The node then
        exits ("address already in use") and the network moves it to a new port,
        restarting the nodes already up (their `--peer` URLs name the old one)
        and rewriting the network file: at most `bind_attempts` ports in all.
        """
        try:
            if self.etcd is not None:
                self.etcd.start(timeout=30.0)
            moves = 0
            while True:
                for node in self.nodes:
                    self.start_node(node.org)
                try:
                    self.wait_ready(timeout=timeout)
                    break
                except PortTakenError as exc:
                    moves += 1
                    if moves >= bind_attempts:
                        raise
                    self._move(exc.org)
        except BaseException:
            self.down()
            raise
        self.write_file(state="up")

    def _move(self, org: str) -> None:
        """Give `org`'s node a newly drawn port; stop every node, whose peer lists
        name the old one (`up` starts them again)."""
        old = self.spec(org)
        for node in self.nodes:
            self.stop_node(node.org)
        (port,) = free_ports(1)
        self.nodes = tuple(replace(n, port=port) if n.org == org else n for n in self.nodes)
        self.write_file(state="created")
        _log.warning("port %d of %s was taken by another process; moved to %d", old.port, org, port)

    def _check_running(self, org: str) -> None:
        """Raise if `org`'s node was started and has exited (`PortTakenError` when
        another process holds its port)."""
        proc = self._procs.get(org)
        if proc is None or proc.poll() is None:
            return
        node = self.spec(org)
        if self._port_taken(org):
            raise PortTakenError(
                org,
                node.port,
                f"node {org} could not listen on port {node.port}: another process "
                f"holds it; see {node.log_path}",
            )
        raise ConfigError(f"node {org} exited with code {proc.returncode}; see {node.log_path}")

    def _port_taken(self, org: str) -> bool:
        """Whether the end of the log of `org`'s node's last run says its port was taken."""
        try:
            with self.spec(org).log_path.open("rb") as log:
                end = log.seek(0, os.SEEK_END)
                log.seek(max(self._log_starts.get(org, 0), end - (64 << 10)))
                return _BIND_FAILURE in log.read().lower()
        except OSError:
            return False

    def wait_ready(self, orgs: Sequence[str] | None = None, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        pending = list(orgs or [n.org for n in self.nodes])
        verify: Any = True if self.ca is None else ssl.create_default_context(cafile=self.ca)
        genesis = DataDir.open(self.base / "consortium").genesis_hash.hex()
        with httpx.Client(timeout=2.0, verify=verify) as http:
            while pending:
                for org in pending:  # any of them: the others may wait for it
                    self._check_running(org)
                org = pending[0]
                try:
                    reply = http.get(self.spec(org).url + "/v1/ready")
                    answer: Any = reply.json() if reply.status_code in (200, 503) else None
                    stranger = _stranger(answer, org, genesis)
                    if stranger:
                        # Another process holds the port (ours cannot bind it and is
                        # about to exit): never take its answer for our node's.
                        why = f"port {self.spec(org).port} is answered by {stranger}"
                    elif reply.status_code == 200 and answer.get("caught_up"):
                        pending.pop(0)
                        continue
                    else:
                        why = reply.text[:300]
                except (httpx.HTTPError, ValueError) as exc:
                    why = str(exc)
                if time.monotonic() > deadline:
                    raise ConfigError(
                        f"node {org} not ready after {timeout:.0f}s ({why}); "
                        f"see {self.spec(org).log_path}"
                    )
                time.sleep(0.1)

    def down(self) -> None:
        """Stop every node (SIGTERM, they finish their blocks), then the etcd members."""
        for node in reversed(self.nodes):
            proc = self._procs.get(node.org)
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for node in reversed(self.nodes):
            self.stop_node(node.org)
        if self.etcd is not None:
            self.etcd.stop()
        self.write_file(state="down")

    def __enter__(self) -> LocalNetwork:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


def _stranger(ready: Any, org: str, genesis: str) -> str:
    """Who answered `/v1/ready` instead of `org`'s node of this consortium ('' if it did)."""
    if not isinstance(ready, dict):
        return "something that is not a sharechain node"
    if ready.get("org") == org and ready.get("genesis_hash") == genesis:
        return ""
    return (
        f"the node of {ready.get('org')!r} in consortium "
        f"{str(ready.get('genesis_hash'))[:16]}..., not {org!r} of {genesis[:16]}..."
    )


def _consecutive_free_ports(count: int) -> int:
    """A base port with `count` consecutive free ports above it (etcd wants fixed ports)."""
    for _ in range(50):
        (base,) = free_ports(1)
        if base + count > 65535:
            continue
        try:
            socks = []
            import socket

            for p in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise ConfigError("could not find free consecutive ports for etcd on 127.0.0.1")


def _node_certificates(directory: Path, nodes: Sequence[NodeSpec]) -> dict[str, TlsFiles]:
    """Each node's certificate from the network's development CA, made the first time."""
    ca = DevelopmentCA(directory / "ca.crt", directory / "ca.key")
    if not (ca.cert.exists() and ca.key.exists()):
        ca = create_ca(directory, "sharechain network development CA")
    out = {}
    for n in nodes:
        cert, key = directory / f"{n.org}.crt", directory / f"{n.org}.key"
        made = cert.exists() and key.exists()
        out[n.org] = TlsFiles(cert, key, ca.cert) if made else issue_node_cert(ca, directory, n.org)
    return out


def _tls_json(tls: EtcdTLS | None) -> dict[str, str] | None:
    """The operator's etcd client files, for `network status` (None without TLS)."""
    if tls is None:
        return None
    files = {"ca": str(tls.ca_file), "cert": str(tls.cert_file), "key": str(tls.key_file)}
    if tls.password_file is not None:
        files |= {"user": tls.user, "password_file": str(tls.password_file)}
    return files
