"""Helpers for the attack tests on a node's API: consortiums, nodes in-process and as processes.

Kept out of a `conftest.py` (other attack suites share this directory): test
modules import what they use.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from sharechain.api.client import NodeClient
from sharechain.api.quotas import Limits
from sharechain.contracts._fields import derive_id
from sharechain.crypto.keyfile import OrgKeys
from sharechain.ledger.transactions import sign_transaction
from sharechain.node.launcher import node_data_dir
from sharechain.node.server import ServerThread
from sharechain.node.service import Node, NodeConfig
from sharechain.ordering.etcd_process import free_ports
from sharechain.sharing.remote import publish_remote
from sharechain.storage.datadir import DataDir, OrgSpec, init_consortium

ORGS = (
    OrgSpec("hospital-a", ("member", "admin")),
    OrgSpec("bank-b", ("member", "admin")),
    OrgSpec("regulator", ("member", "supervisor", "admin")),
)


@dataclass
class Consortium:
    source: Path
    base: Path

    @classmethod
    def make(cls, base: Path) -> Consortium:
        init_consortium(base / "consortium", ORGS, consortium="attacks")
        return cls(base / "consortium", base)

    def keys(self, org: str) -> OrgKeys:
        return DataDir.open(self.source).keys(org)

    def node_dir(self, org: str) -> Path:
        return node_data_dir(self.source, self.base / "nodes" / org, org)


@dataclass
class InProcess:
    """A node serving its API from a thread of the test process."""

    node: Node
    server: ServerThread
    consortium: Consortium

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, org: str, **options: object) -> NodeClient:
        key = self.consortium.keys(org).signing
        return NodeClient(self.url, org, key, timeout=20.0, **options)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.server.stop()
        self.node.stop()

    def __enter__(self) -> InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    consortium: Consortium, org: str, *, limits: Limits | None = None, **server: object
) -> InProcess:
    node = Node(NodeConfig(data_dir=consortium.node_dir(org), org=org, max_wait=0.005))
    node.start()
    thread = ServerThread(node, limits=limits, **server).start()  # type: ignore[arg-type]
    return InProcess(node, thread, consortium)


class Serving(Protocol):
    """A running node as `publish_and_grant` uses it (in-process or its own process)."""

    @property
    def consortium(self) -> Consortium: ...

    def client(self, org: str) -> NodeClient: ...


def publish_and_grant(running: Serving, work: Path) -> tuple[str, str]:
    """hospital-a publishes a small dataset (owner custody); bank-b gets a grant: ids."""
    src = work / "data.bin"
    src.write_bytes(os.urandom(2000))
    with running.client("hospital-a") as owner:
        keys = running.consortium.keys("hospital-a")
        pub = publish_remote(owner, keys, src, peers={"hospital-a": owner}, title="t")

    def submit(org: str, type: str, payload: dict[str, object]) -> bytes:
        stx = sign_transaction(running.consortium.keys(org).signing, type, org, payload)
        with running.client(org) as c:
            return c.submit_checked(stx.raw).tx_id

    body = {"dataset": pub.dataset, "purpose": "research", "duration": 86_400_000}
    rid = derive_id("request", submit("bank-b", "access.request", body))
    submit("regulator", "access.approve", {"request": rid})
    gid = derive_id("grant", submit("hospital-a", "access.approve", {"request": rid}))
    return pub.dataset, gid


def free_port() -> int:
    (port,) = free_ports(1)
    return port


@dataclass
class Process:
    """A node running as its own process (`sharechain.cli.node_cmd start`)."""

    proc: subprocess.Popen[bytes]
    url: str
    org: str
    consortium: Consortium

    def client(self, org: str, timeout: float = 30.0) -> NodeClient:
        """A client signing as `org` (a member of the node's consortium)."""
        return NodeClient(self.url, org, self.consortium.keys(org).signing, timeout=timeout)

    def peak_rss(self) -> int:
        """The process's peak resident set size in bytes (VmHWM)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc status")


def spawn(consortium: Consortium, org: str) -> Iterator[Process]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "sharechain.cli.node_cmd", "start", "--data-dir"]
    cmd += [str(consortium.node_dir(org)), "--org", org, "--listen", f"127.0.0.1:{port}"]
    cmd += ["--ordering", "solo"]
    log = (consortium.base / f"{org}.log").open("wb")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (consortium.base / f"{org}.log").read_text()[-2000:]
                raise AssertionError(f"the node did not start: {tail}")
            time.sleep(0.1)
        yield Process(proc, url, org, consortium)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def timed_during_flood(
    flood: Callable[[NodeClient], int],
    honest: Callable[[NodeClient], float],
    process: Process,
    *,
    attacker: str = "bank-b",
    victim: str = "regulator",
    flooders: int = 64,
    rounds: int = 20,
) -> tuple[list[float], Counter[int]]:
    """`attacker` runs `flood` (one request, its status code) without pause from
    `flooders` threads while `victim` runs `honest` (one request, its seconds)
    `rounds` times, once the flood has had a second to take what it can (more
    flooders than the node's 40 worker threads, so without a share they hold them all): the
    victim's timings and the flood's status codes. A flood request whose kept-alive
    connection closed under it (`httpx.TransportError`: a node may close one it
    answered early) has no status: the flooder goes on on a new connection."""
    stop = threading.Event()
    codes: Counter[int] = Counter()
    lock = threading.Lock()

    def run() -> None:
        with process.client(attacker) as c:
            while not stop.is_set():
                try:
                    code = flood(c)
                except httpx.TransportError:
                    continue
                with lock:
                    codes[code] += 1

    workers = [threading.Thread(target=run) for _ in range(flooders)]
    for w in workers:
        w.start()
    try:
        time.sleep(1.0)
        with process.client(victim) as c:
            timings = []
            for _ in range(rounds):
                timings.append(honest(c))
                time.sleep(0.02)
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=15)
    return timings, codes
