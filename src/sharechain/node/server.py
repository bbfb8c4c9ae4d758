"""Serving a node: uvicorn in the foreground (`sharechain node start`) or in a thread (tests).

HTTPS when given a certificate and key (`TlsFiles`, e.g. from the development
CA of `sharechain.api.tls`); plain HTTP only when none is given.

`run_node` starts the node's loops, then serves its API until SIGTERM or
SIGINT, then stops the node cleanly: the loops end, waiting submitters get
an error, and the store is closed after the last commit.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import uvicorn
from fastapi import FastAPI

from sharechain.api.client import present_cert, trust_ca
from sharechain.api.quotas import Limits
from sharechain.api.tls import TlsFiles
from sharechain.node.app import Extension, create_app
from sharechain.node.lingering import LingeringH11Protocol, StoppingServer
from sharechain.node.service import Node, NodeConfig

__all__ = ["ServerThread", "run_node"]


def _config(
    app: FastAPI, log_level: str, tls: TlsFiles | None = None, *, client_certs: bool = False
) -> uvicorn.Config:
    """uvicorn's settings; with `tls`, HTTPS (and, with `client_certs`, mutual TLS)."""
    extra: dict[str, Any] = {}
    if tls is not None:
        extra = {
            "ssl_certfile": str(tls.cert),
            "ssl_keyfile": str(tls.key),
            "ssl_ca_certs": str(tls.ca),
            "ssl_cert_reqs": ssl.CERT_REQUIRED if client_certs else ssl.CERT_NONE,
        }
    return uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
        limit_concurrency=2048,
        backlog=2048,
        http=LingeringH11Protocol,  # refused bodies: the client reads the answer
        **extra,
    )


def run_node(
    config: NodeConfig,
    host: str,
    port: int,
    *,
    log_level: str = "info",
    extensions: Sequence[Extension] = (),
    tls: TlsFiles | None = None,
    client_certs: bool = False,
) -> None:
    """Run a node in the foreground until a signal stops it (`extensions`: see `create_app`).

    With `tls` it serves HTTPS with that certificate and key, and every client the
    node makes (replication, blob fetching, custody) trusts `tls.ca`; plain HTTP
    only without it. `client_certs` also requires clients to present a
    certificate from that CA (mutual TLS).
    """
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if tls is not None:
        trust_ca(tls.ca)
        present_cert(tls.cert, tls.key)  # to peers that ask for client certificates
    node = Node(config)
    try:
        node.start()
        cfg = _config(create_app(node, extensions), log_level, tls, client_certs=client_certs)
        _tune_collector()
        _keep_large_allocations_mapped()
        cfg.host, cfg.port = host, port
        StoppingServer(cfg).run()
    finally:
        node.stop()


def _tune_collector() -> None:
    """Tune Python's cyclic garbage collector for a long-running node process.

    The objects alive after start-up (modules, the API, the verified chain's
    caches) live as long as the process: `gc.freeze` moves them out of the
    collector's sight, so full collections stop re-walking them. Nearly
    everything a node allocates afterwards is freed by reference counting, so
    young collections run every 20,000 allocations instead of 700: measured on
    the network benchmark, collector CPU fell from about 5 to about 1 µs per
    transaction per node. Cycles are still collected, only later.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


M_MMAP_THRESHOLD = -3
"""glibc's `mallopt` parameter for the size from which an allocation gets a mapping of
its own (`<malloc.h>`)."""
MMAP_THRESHOLD = 256 << 10


def _keep_large_allocations_mapped() -> bool:
    """Give every allocation of `MMAP_THRESHOLD` or more a mapping of its own, returned to
    the system when it is freed; whether the C library took the setting.

    glibc does so from 128 KiB at first, but raises that threshold each time such
    a mapping is freed, up to 32 MiB; from then on it carves large buffers out of
    the allocating thread's arena, where their memory stays once they are freed.
    A node's worker threads each read blocks of up to 1.5 MiB for the members that
    ask, so with the threshold raised every thread that ever read blocks kept
    its own peak of them: one member reading blocks from a dozen threads grew
    the node by 579 MiB, against 206 MiB with the threshold fixed
    (`tests/security/test_block_reads_bounded.py`, threat 47). The cost is a
    mapping and its page faults per large buffer: a few per block committed.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False  # not glibc: its own allocator's policy stands
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


class ServerThread:
    """A node's API served by uvicorn in a background thread on 127.0.0.1 (tests, benches)."""

    def __init__(
        self,
        node: Node,
        port: int = 0,
        extensions: Sequence[Extension] = (),
        *,
        tls: TlsFiles | None = None,
        client_certs: bool = False,
        limits: Limits | None = None,
    ) -> None:
        self.node = node
        # IPPROTO_TCP by name: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
        # connections accepted from a socket that says it is TCP, and a socket made with
        # protocol 0 does not. With Nagle on, an answer's body waited for the client's
        # delayed acknowledgement of its headers: 40 ms on every reused connection.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"{'http' if tls is None else 'https'}://127.0.0.1:{self.port}"
        self.app = create_app(node, extensions, limits)
        """The node's API (its `state` holds the upkeep and the uploads in progress)."""
        self._server = StoppingServer(_config(self.app, "warning", tls, client_certs=client_certs))
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        """uvicorn's `Server.run`, closing afterwards any connection its shutdown left
        open (one whose request outlasted the grace). Left open, the collector
        reports its transport later, in whatever test runs by then, as an unclosed
        socket: clean-clone runs failed on that in `test_mailbox`'s and
        `test_clock_skewed_block`'s setup."""
        server = self._server

        async def serve() -> None:
            try:
                await server.serve(sockets=[self._sock])
            finally:
                for connection in list(server.server_state.connections):
                    if isinstance(connection, LingeringH11Protocol):
                        connection.close_now()
                await asyncio.sleep(0)  # the transports' close callbacks run

        with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
            runner.run(serve())

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
