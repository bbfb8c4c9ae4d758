"""A node's API server stopping closes every connection, those made as it stops too."""

from __future__ import annotations

import socket
import threading
import time

from node_helpers import Consortium, run_node


def _connect_until(port: int, done: threading.Event, made: list[socket.socket]) -> None:
    """Connect again and again until the server refuses, or `done` (at most 15 s)."""
    until = time.monotonic() + 15
    while not done.is_set() and time.monotonic() < until:
        try:
            made.append(socket.create_connection(("127.0.0.1", port), timeout=1))
        except OSError:
            return  # no longer listening


def _left_open(sockets: list[socket.socket]) -> int:
    """How many of `sockets` the server neither closed nor reset within half a second."""
    open_ = 0
    for sock in sockets:
        sock.settimeout(0.5)
        try:
            sock.recv(16)  # b"": closed
        except ConnectionResetError:
            pass
        except TimeoutError:
            open_ += 1
        finally:
            sock.close()
    return open_


def test_connections_made_as_the_server_stops_are_closed_at_once(consortium: Consortium) -> None:
    # uvicorn's shutdown asks the connections it has to close; one accepted just after
    # was never asked: the shutdown waited its 5-s grace for it, then left it open (the
    # collector reported its transport later, failing whatever test ran by then).
    for _ in range(3):
        running = run_node(consortium, "hospital-a")
        made: list[socket.socket] = []
        done = threading.Event()
        opener = threading.Thread(target=_connect_until, args=(running.server.port, done, made))
        try:
            opener.start()
            deadline = time.monotonic() + 10  # connecting already when the stop begins
            while len(made) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            started = time.monotonic()
            running.server.stop()
            took = time.monotonic() - started
        finally:
            done.set()
            opener.join()
            running.node.stop()
        assert _left_open(made) == 0 and len(made) > 1
        assert took < 3.0, f"the stop took {took:.1f} s"
