"""Start and stop a local etcd cluster on the loopback interface.

The `etcd` ordering mode needs an etcd cluster: a handful of `etcd` processes
("members") that elect a leader with Raft and replicate every write to a
majority before acknowledging it. In production each organisation runs one
member on its own machine. For tests, benchmarks and the local network
launcher, `EtcdCluster` runs all members on this machine, listening on
127.0.0.1 only, each with its own data directory and log file under one base
directory::

    <base_dir>/m0/            data directory of member m0 (WAL and snapshots)
    <base_dir>/m0.log         everything m0 prints

Members can be stopped and restarted one by one to rehearse failures: a
member restarted with its old data directory rejoins the cluster and catches
up from the leader. A cluster of three keeps working with one member down and
stops accepting writes (without losing any) with two down.

The launcher raises etcd's request size limit to `max_request_bytes` (2 MiB by
default instead of etcd's 1.5 MiB) so a block of about 2 MiB, room for a
transaction of the largest size (1 MB) beside others, fits in one write;
clients must then be told the matching limit (`EtcdLog(max_block_bytes=...)`).
It was 8 MiB; but every entry a member keeps in memory (about 6,000, see below)
can be as large as this limit, whoever writes it, so it is kept small.

It also has each member snapshot its Raft log every `snapshot_count` entries
(`SNAPSHOT_COUNT`, 1,000, instead of etcd 3.4's 100,000). Between snapshots a
member keeps every entry in memory and in its WAL, and here every entry is a
block of up to `max_block_bytes`: with etcd's default, a busy network's members
grow by about a MiB of memory and a MiB of WAL per MiB of blocks for 100,000
blocks, whatever the compaction of the key space does (docs/etcd-ordering.md,
"Memory and WAL").
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

from sharechain.errors import ConfigError, OrderingError
from sharechain.ordering.etcd_auth import (
    NODE_PREFIX,
    add_users,
    auth_enabled,
    enable_auth,
    restrict_node_role,
)
from sharechain.ordering.etcd_tls import DevCertificates, EtcdTLS, etcd_http_client

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "SNAPSHOT_COUNT",
    "EtcdCluster",
    "MemberSpec",
    "find_etcd_binary",
    "free_ports",
]

DEFAULT_MAX_REQUEST_BYTES = 2 * 1024 * 1024
"""Request size limit the launcher gives etcd (etcd's own default is 1.5 MiB)."""

SNAPSHOT_COUNT = 1000
"""Raft entries (here: blocks) a member applies between two snapshots (etcd 3.4's default
is 100,000). A member holds in memory, and in its WAL, the entries since its last
snapshot plus the 5,000 before it (fixed in etcd 3.4): about
(`SNAPSHOT_COUNT` + 5,000) x the mean block size, where the default lets it reach
(100,000 + 5,000) x that. A snapshot of this log is small (the key space holds only
the blocks not yet pruned), so taking one every 1,000 blocks costs little."""

_INSTALL_HINT = "install etcd-server: apt-get install etcd-server, or run make system"
_STOP_GRACE_SECONDS = 5.0
_CLUSTER_STOP_GRACE_SECONDS = 1.0
_LOG_TAIL_CHARS = 2000


@dataclass(frozen=True, slots=True)
class MemberSpec:
    """Where one local member lives and listens."""

    name: str
    """Member name, unique in the cluster (`m0`, `m1`, ...)."""
    client_port: int
    """Loopback port of the client API (v3 gRPC and its JSON gateway)."""
    peer_port: int
    """Loopback port members use to talk Raft to each other."""
    data_dir: Path
    """Data directory (write-ahead log and snapshots); kept across restarts."""
    log_path: Path
    """File receiving the member's stdout and stderr."""
    scheme: str = "http"
    """`https` when the cluster requires mutual TLS, else `http`."""

    @property
    def client_url(self) -> str:
        """The URL clients connect to."""
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        """The URL other members connect to."""
        return f"{self.scheme}://127.0.0.1:{self.peer_port}"


def find_etcd_binary(binary: str = "etcd") -> str:
    """Return the full path of the etcd executable, or raise ConfigError saying how to get it."""
    path = shutil.which(binary)
    if path is None:
        raise ConfigError(f"etcd binary {binary!r} not found on PATH; {_INSTALL_HINT}")
    return path


_PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_PICKED_PORT = 20000


def _pickable_ports() -> range | None:
    """Ports below the kernel's ephemeral range, where nothing binds by itself.

    A port the kernel hands out for port 0 (a server in this process, an
    outgoing connection) can be handed out again the moment its probe socket
    closes, before etcd or a node process binds it. Ports below the ephemeral
    range are only ever taken by whoever names them. None where the range is
    unknown or leaves no room below it.
    """
    try:
        low = int(_PORT_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return range(_LOWEST_PICKED_PORT, low) if low - _LOWEST_PICKED_PORT >= 1000 else None


def free_ports(count: int) -> tuple[int, ...]:
    """`count` distinct TCP ports on 127.0.0.1 that were free when asked.

    Chosen at random below the kernel's ephemeral range (`_pickable_ports`),
    else by the kernel. All probe sockets are held open until every port is
    chosen so none repeats; a port can in principle be taken by someone else
    before etcd binds it, in which case the member exits and `start` reports it.
    """
    pool = _pickable_ports()
    sockets: list[socket.socket] = []
    try:
        attempts = 0
        while len(sockets) < count:
            attempts += 1
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            port = 0 if pool is None or attempts > 50 * count else secrets.choice(pool)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
        return tuple(sock.getsockname()[1] for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


class EtcdCluster:
    """A local etcd cluster of `members` processes, for tests and the network launcher.

    Use as a context manager, or call `start()` then `stop()`. `base_port`
    fixes the ports (member i gets client port base_port + 2i and peer port
    base_port + 2i + 1); without it free ports are picked. Heartbeat and
    election timeouts are shorter than etcd's defaults because loopback is
    fast, so a lost leader is replaced in well under a second. With `tls`,
    etcd's authentication goes on and each client's user may read and write
    only the keys under `node_prefix` (the nodes' `etcd_prefix`).
    """

    def __init__(
        self,
        base_dir: Path | str,
        members: int = 3,
        base_port: int | None = None,
        *,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        heartbeat_ms: int = 50,
        election_ms: int = 500,
        binary: str = "etcd",
        cluster_token: str = "sharechain-local",
        snapshot_count: int = SNAPSHOT_COUNT,
        extra_args: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
        tls: bool = False,
        node_prefix: str = NODE_PREFIX,
    ) -> None:
        if members < 1:
            raise ConfigError(f"an etcd cluster needs at least one member, got {members}")
        self._binary = binary
        self._node_prefix = node_prefix
        self._base_dir = Path(base_dir)
        self._max_request_bytes = max_request_bytes
        self._heartbeat_ms = heartbeat_ms
        self._election_ms = election_ms
        if snapshot_count < 1:
            raise ConfigError(f"snapshot_count must be at least 1, got {snapshot_count}")
        self._snapshot_count = snapshot_count
        self._token = cluster_token
        self._extra_args = tuple(extra_args)
        self._clock = clock
        self._certs = (
            DevCertificates(self._base_dir / "tls", tuple(f"m{i}" for i in range(members)))
            if tls
            else None
        )
        if base_port is None:
            ports = free_ports(2 * members)
        else:
            ports = tuple(range(base_port, base_port + 2 * members))
        self._specs = tuple(
            MemberSpec(
                name=f"m{i}",
                client_port=ports[2 * i],
                peer_port=ports[2 * i + 1],
                data_dir=self._base_dir / f"m{i}",
                log_path=self._base_dir / f"m{i}.log",
                scheme="https" if tls else "http",
            )
            for i in range(members)
        )
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * members
        self._logs: list[IO[bytes] | None] = [None] * members

    # -- description -----------------------------------------------------

    @property
    def members(self) -> tuple[MemberSpec, ...]:
        """Where each member lives and listens, in member order."""
        return self._specs

    @property
    def endpoints(self) -> tuple[str, ...]:
        """Client URLs of all members (running or not), in member order."""
        return tuple(spec.client_url for spec in self._specs)

    @property
    def max_request_bytes(self) -> int:
        """The request size limit the members were started with."""
        return self._max_request_bytes

    @property
    def tls(self) -> bool:
        """Whether members require mutual TLS from clients and from each other."""
        return self._certs is not None

    def client_tls(self, name: str) -> EtcdTLS | None:
        """Files for a client named `name` (e.g. an organisation id); None without TLS.

        The certificate and the etcd user's password are made on first use and
        reused after; the user is created in etcd when the cluster starts, or at
        once if it runs (`ordering.etcd_auth`: it may order, not administer).
        """
        if self._certs is None:
            return None
        files = self._certs.client(name)
        if self._auth_marker is not None and self._auth_marker.exists() and self._running():
            with self._http_client(5.0) as root:
                add_users(root, self._running_endpoints(), {name: self._certs.password(name)})
        return files

    def root_tls(self) -> EtcdTLS | None:
        """The administrator's files (etcd's root user); None without TLS."""
        return None if self._certs is None else self._certs.root()

    @property
    def _auth_marker(self) -> Path | None:
        """Present once etcd's authentication is on (TLS clusters only)."""
        return None if self._certs is None else self._certs.directory / "auth-enabled"

    def _running(self) -> bool:
        return any(self.is_running(i) for i in range(len(self._specs)))

    def _running_endpoints(self) -> tuple[str, ...]:
        return tuple(s.client_url for i, s in enumerate(self._specs) if self.is_running(i))

    def _http_client(self, timeout: float) -> httpx.Client:
        """The launcher's own client: root once authentication is on."""
        if self._certs is None:
            return etcd_http_client(None, timeout=timeout)
        marker = self._auth_marker
        if marker is not None and marker.exists():
            return etcd_http_client(self._certs.root(), timeout=timeout)
        root = self._certs.root()  # its certificate, without logging in yet
        return etcd_http_client(
            EtcdTLS(root.ca_file, root.cert_file, root.key_file), timeout=timeout
        )

    def _enable_auth(self) -> None:
        """Turn etcd's authentication on, with root and every client's user (once)."""
        certs, marker = self._certs, self._auth_marker
        if certs is None or marker is None:
            return
        if marker.exists():
            with self._http_client(5.0) as root:
                # (A cluster made before the role was held to the prefix is narrowed.)
                restrict_node_role(root, self._running_endpoints(), self._node_prefix)
                add_users(root, self._running_endpoints(), certs.users())
            return
        certs.root()  # root's password, written on first use
        with self._http_client(5.0) as plain:
            # On already (stopped before the marker was written): root adds the users.
            if not auth_enabled(plain, self._running_endpoints()):
                enable_auth(
                    plain,
                    self._running_endpoints(),
                    certs.root_password(),
                    certs.users(),
                    prefix=self._node_prefix,
                )
        marker.write_text("etcd authentication is on; root's password is in root.password\n")
        with self._http_client(5.0) as root:
            restrict_node_role(root, self._running_endpoints(), self._node_prefix)
            add_users(root, self._running_endpoints(), certs.users())

    def is_running(self, index: int) -> bool:
        """Whether member `index` has a live process."""
        proc = self._procs[index]
        return proc is not None and proc.poll() is None

    # -- lifecycle -------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Spawn every member and wait until the cluster has a leader.

        Raises ConfigError if etcd is missing or a member exits at once (see
        its log), OrderingError if no healthy cluster forms within `timeout`.
        """
        find_etcd_binary(self._binary)
        self._base_dir.mkdir(parents=True, exist_ok=True)
        if self._certs is not None:
            self._certs.authority()  # the CA and member certificates, once
        try:
            for index in range(len(self._specs)):
                self.start_member(index, wait=False)
            self.wait_healthy(timeout)
            self._enable_auth()
        except BaseException:
            self.stop()
            raise

    def start_member(self, index: int, *, wait: bool = False, timeout: float = 30.0) -> None:
        """(Re)start member `index`, reusing its data directory if it has one.

        etcd ignores the initial-cluster flags when the data directory already
        holds a write-ahead log, so the same command line serves both a fresh
        start and a restart after `stop_member`.
        """
        if self.is_running(index):
            return
        binary = find_etcd_binary(self._binary)
        spec = self._specs[index]
        self._close_log(index)
        log = spec.log_path.open("ab")
        self._logs[index] = log
        self._procs[index] = subprocess.Popen(
            [binary, *self._member_args(spec)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal should not kill members first
        )
        if wait:
            self.wait_healthy(timeout)

    def stop_member(self, index: int, timeout: float = _STOP_GRACE_SECONDS) -> None:
        """Stop member `index` (SIGTERM, then SIGKILL after `timeout`); keeps its data."""
        proc = self._procs[index]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self._procs[index] = None
        self._close_log(index)

    def kill_member(self, index: int) -> None:
        """Kill member `index` abruptly (SIGKILL), as a crash would."""
        proc = self._procs[index]
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(_STOP_GRACE_SECONDS)
        self._procs[index] = None
        self._close_log(index)

    def stop(self) -> None:
        """Stop every member, one after the other (see `stop_member`).

        One at a time because a leader told to stop hands its leadership to a
        live follower first; stopping all at once leaves it waiting for a
        transferee that is itself shutting down. The last member may still
        try to hand over to a peer that just left, so the grace period here is
        short: killing etcd loses nothing it acknowledged (its write-ahead log
        is on disk before it answers).
        """
        for index in range(len(self._procs)):
            self.stop_member(index, timeout=_CLUSTER_STOP_GRACE_SECONDS)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until every running member answers and all agree on one leader.

        Raises ConfigError if a member process has exited (with the tail of
        its log), OrderingError if the cluster is not healthy within `timeout`.
        """
        deadline = self._clock() + timeout
        last_problem = "no member answered yet"
        with self._http_client(1.0) as client:
            while True:
                self._raise_if_exited()
                running = [i for i in range(len(self._specs)) if self.is_running(i)]
                if not running:
                    raise OrderingError("no etcd member is running; call start() first")
                problem = self._health_problem(client, running)
                if problem is None:
                    return
                last_problem = problem
                if self._clock() >= deadline:
                    raise OrderingError(
                        f"etcd cluster not healthy after {timeout:.1f}s: {last_problem}; "
                        f"see the member logs in {self._base_dir}"
                    )
                time.sleep(0.05)

    def compact(self, revision: int | None = None) -> int:
        """Compact the key-value history up to `revision` (default: the current one).

        Returns the revision compacted to. Watches that ask for older
        revisions are then cancelled by etcd; `EtcdLog.watch` recovers.
        """
        errors: list[str] = []
        with self._http_client(5.0) as client:
            for index, spec in enumerate(self._specs):
                if not self.is_running(index):
                    continue
                try:
                    if revision is None:
                        reply = client.post(f"{spec.client_url}/v3/kv/range", json={"key": "AA=="})
                        reply.raise_for_status()
                        revision = int(reply.json()["header"]["revision"])
                    reply = client.post(
                        f"{spec.client_url}/v3/kv/compaction",
                        json={"revision": str(revision), "physical": True},
                    )
                    reply.raise_for_status()
                    return revision
                except httpx.HTTPError as exc:
                    errors.append(f"{spec.client_url}: {exc}")
        raise OrderingError(f"could not compact etcd: {'; '.join(errors) or 'no member running'}")

    def __enter__(self) -> EtcdCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals -------------------------------------------------------

    def _member_args(self, spec: MemberSpec) -> list[str]:
        initial_cluster = ",".join(f"{s.name}={s.peer_url}" for s in self._specs)
        return [
            f"--name={spec.name}",
            f"--data-dir={spec.data_dir}",
            f"--listen-client-urls={spec.client_url}",
            f"--advertise-client-urls={spec.client_url}",
            f"--listen-peer-urls={spec.peer_url}",
            f"--initial-advertise-peer-urls={spec.peer_url}",
            f"--initial-cluster={initial_cluster}",
            "--initial-cluster-state=new",
            f"--initial-cluster-token={self._token}",
            f"--max-request-bytes={self._max_request_bytes}",
            f"--heartbeat-interval={self._heartbeat_ms}",
            f"--election-timeout={self._election_ms}",
            f"--snapshot-count={self._snapshot_count}",
            "--logger=zap",
            "--log-outputs=stderr",
            *(self._certs.member_args(spec.name) if self._certs is not None else ()),
            *self._extra_args,
        ]

    def _health_problem(self, client: httpx.Client, running: Sequence[int]) -> str | None:
        leaders: set[str] = set()
        for index in running:
            url = self._specs[index].client_url
            try:
                reply = client.post(f"{url}/v3/maintenance/status", json={})
                reply.raise_for_status()
                leader = str(reply.json().get("leader", "0"))
            except (httpx.HTTPError, ValueError, OrderingError) as exc:
                return f"{url} does not answer ({exc})"
            if leader == "0":
                return f"{url} has no leader"
            leaders.add(leader)
        if len(leaders) != 1:
            return f"members disagree on the leader ({sorted(leaders)})"
        return None

    def _raise_if_exited(self) -> None:
        for index, proc in enumerate(self._procs):
            if proc is not None and proc.poll() is not None:
                spec = self._specs[index]
                self._procs[index] = None
                self._close_log(index)
                tail = _log_tail(spec.log_path)
                raise ConfigError(
                    f"etcd member {spec.name} exited with code {proc.returncode}; "
                    f"is port {spec.client_port} or {spec.peer_port} taken? "
                    f"log {spec.log_path} ends with:\n{tail}"
                )

    def _close_log(self, index: int) -> None:
        log = self._logs[index]
        if log is not None:
            with contextlib.suppress(OSError):
                log.close()
            self._logs[index] = None


def _log_tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return text[-_LOG_TAIL_CHARS:]
