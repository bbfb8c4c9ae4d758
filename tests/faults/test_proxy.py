"""The link proxy on real sockets: forwarding, delay, cut and restore, bounds."""

from __future__ import annotations

import gc
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from sharechain.errors import ConfigError
from sharechain.faults.proxy import LinkProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxy(echo: int) -> Iterator[LinkProxy]:
    with LinkProxy(echo, max_delay=2.0, max_connections=4) as p:
        yield p


def _round_trip(port: int, data: bytes = b"ping") -> tuple[bytes, float]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        t0 = time.monotonic()
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got, time.monotonic() - t0


def test_forwards_both_ways(proxy: LinkProxy) -> None:
    payload = bytes(range(256)) * 1024  # several chunks
    assert _round_trip(proxy.port, payload)[0] == payload
    assert proxy.state().accepted == 1
    assert proxy.url == f"http://127.0.0.1:{proxy.port}"


def test_delay_is_added_each_way_and_removed(proxy: LinkProxy) -> None:
    _, direct = _round_trip(proxy.port)
    proxy.delay(0.3)
    got, slow = _round_trip(proxy.port)
    assert got == b"ping"
    assert slow >= 0.6 - 0.02 > direct  # 0.3 s there and 0.3 s back
    assert proxy.state().delay == 0.3
    proxy.delay(0)
    assert _round_trip(proxy.port)[1] < 0.3


def test_cut_resets_open_connections_and_refuses_new_ones(proxy: LinkProxy) -> None:
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    s.sendall(b"a")
    assert s.recv(1) == b"a"
    proxy.cut()
    with pytest.raises(OSError):  # reset (or a read of nothing, then a failed write)
        got = s.recv(1)
        assert got == b""
        s.sendall(b"b" * 100_000)
        s.recv(1)
    s.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    assert proxy.state().cut and proxy.state().connections == 0
    proxy.restore()
    assert _round_trip(proxy.port)[0] == b"ping"
    assert not proxy.state().cut


def test_a_dead_target_fails_the_callers_connection(echo: int) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        unused = probe.getsockname()[1]
    with LinkProxy(unused) as p, pytest.raises(ConnectionResetError):
        _round_trip(p.port)


def test_connections_beyond_the_bound_are_reset(proxy: LinkProxy) -> None:
    held = [socket.create_connection(("127.0.0.1", proxy.port), timeout=5) for _ in range(4)]
    try:
        for s in held:
            s.sendall(b"x")
            assert s.recv(1) == b"x"
        assert proxy.state().connections == 4
        with pytest.raises(ConnectionResetError):  # the fifth is reset at once
            _round_trip(proxy.port)
    finally:
        for s in held:
            s.close()


def test_bounds_are_enforced() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        LinkProxy(80, target_host="10.0.0.1")
    with pytest.raises(ConfigError, match="loopback"):
        LinkProxy(80, target_host="example.org")
    p = LinkProxy(80, max_delay=1.0)
    with pytest.raises(ConfigError, match=r"0 to 1\.0 s"):
        p.delay(5)
    with pytest.raises(ConfigError):
        p.delay(-1)


def _established_at(port: int) -> int:
    """Established TCP sockets whose local port is `port` (this host, from /proc/net/tcp)."""
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for row in table:
            fields = row.split()
            local, state = fields[1], fields[3]
            count += int(local.rsplit(":", 1)[1], 16) == port and state == "01"
    return count


def _connect_until(port: int, opened: list[socket.socket], stop: threading.Event) -> None:
    """Connect to `port` again and again until `stop`, keeping each socket that connected."""
    while not stop.is_set():
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", port))
            opened.append(s)
        except OSError:
            s.close()


def _close_while_connections_arrive(echo: int) -> int:
    """Close a proxy while 16 threads connect and one spins; its sockets then left open."""
    p = LinkProxy(echo).start()
    opened: list[socket.socket] = []
    stop = threading.Event()

    def open_many() -> None:
        _connect_until(p.port, opened, stop)

    def spin() -> None:  # a busy process: the proxy's loop falls behind its backlog
        while not stop.is_set():
            sum(range(10_000))

    threads = [threading.Thread(target=open_many) for _ in range(16)]
    threads.append(threading.Thread(target=spin))
    for t in threads:
        t.start()
    time.sleep(0.3)
    try:
        p.close()
    finally:
        stop.set()
        for t in threads:
            t.join()
    try:
        assert opened  # the openers did get through while it ran
        deadline = time.monotonic() + 2
        while _established_at(p.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        return _established_at(p.port)
    finally:
        for s in opened:
            s.close()


def test_close_while_connections_arrive_leaves_none_of_them_open(echo: int) -> None:
    """A burst accepted just as the proxy stops is closed, not left to the collector.

    (Through `asyncio.start_server`, up to a backlog's worth accepted at once were
    wrapped only after the server had closed; the wrap failed and left them open:
    1 or 100 of them in each of three tries before the fix.)
    """
    for _ in range(3):
        assert _close_while_connections_arrive(echo) == 0


def test_cuts_while_connections_arrive_leave_no_accepted_socket_unclosed(
    echo: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cut cancels the proxy's accept: a connection accepted at that moment is
    closed with the rest, never dropped for the collector to find still open.

    (Through `loop.sock_accept`, a cancel between its accept and the accepting
    task's next step dropped the socket, and an accept already queued went ahead
    into the cancelled future: 5 s of cuts beside 16 connecting threads left 3 to
    7 sockets unclosed in 3 runs of 4, each a ResourceWarning where the collector
    found it.)
    """
    unclosed: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda hook: unclosed.append(hook.object))
    p = LinkProxy(echo).start()
    opened: list[socket.socket] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_connect_until, args=(p.port, opened, stop)) for _ in range(16)
    ]
    for t in threads:
        t.start()
    cuts = closed = 0
    deadline = time.monotonic() + 5.0
    try:
        while time.monotonic() < deadline:
            p.cut()
            p.restore()
            cuts += 1
            while len(opened) - closed > 200:  # the callers' ends, reset by the cuts anyway
                opened[closed].close()
                closed += 1
    finally:
        stop.set()
        for t in threads:
            t.join()
        p.close()
        for s in opened:
            s.close()
    gc.collect()
    assert cuts > 100 and len(opened) > 100  # cuts came while connections did
    assert unclosed == []
