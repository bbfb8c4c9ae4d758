"""A TCP proxy on one link between two components, to delay or cut it on command.

Fault tests put a `LinkProxy` between a node and a peer it calls (another
node, an etcd member): the caller is given the proxy's address instead of the
peer's, and the test then slows the link (`delay`: every chunk is delivered
that many seconds after it was read, in order, in both directions), cuts it
(`cut`: open connections are reset and new ones refused, as when a host
drops off the network) and heals it (`restore`). No root, no firewall rules:
only sockets on 127.0.0.1.

Bounds: the proxy listens on 127.0.0.1 only and forwards only to a loopback
address; it holds at most `max_connections` connections, delays by at most
`max_delay` seconds, and buffers at most 64 chunks of 64 KiB per direction of
a connection before it stops reading (so a slow side slows the other, as TCP
would). The proxy runs its own event loop in a daemon thread; its methods may
be called from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from sharechain.errors import ConfigError

__all__ = ["LinkProxy", "LinkState"]

_CHUNK: Final = 64 * 1024
_QUEUED_CHUNKS: Final = 64
_CALL_TIMEOUT: Final = 10.0
_BACKLOG: Final = 128
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class LinkState:
    """What a proxy is doing to its link."""

    cut: bool
    """True while connections are refused."""
    delay: float
    """Seconds added to every chunk in each direction."""
    connections: int
    """Connections open through the proxy."""
    accepted: int
    """Connections accepted since the proxy started."""


def _require_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"a fault proxy forwards to loopback addresses only, not {host!r}")


async def _readable(sock: socket.socket) -> None:
    """Until `sock` has something to read (a listener: a connection to accept).

    Cancelling it loses nothing, which `loop.sock_accept` does not promise: a
    cancel that comes after its accept but before the awaiting task resumes
    drops the accepted socket unclosed, and its callback, once queued, accepts
    even into a future cancelled meanwhile (Python 3.11; a cut under load leaked
    about one socket in a hundred cuts that way). Here the caller accepts, with
    nothing awaited in between."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a link that drops does to the other side."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed by the other side
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class LinkProxy:
    """Forwards 127.0.0.1:`port` to `target_host`:`target_port`; delays and cuts on command."""

    def __init__(
        self,
        target_port: int,
        *,
        target_host: str = "127.0.0.1",
        listen_port: int = 0,
        max_delay: float = 10.0,
        max_connections: int = 256,
    ) -> None:
        _require_loopback(target_host)
        self.target = (target_host, target_port)
        self.max_delay = max_delay
        self.max_connections = max_connections
        self._port = listen_port
        self._delay = 0.0
        self._cut = False
        self._accepted = 0
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()
        self._listener: socket.socket | None = None
        self._acceptor: asyncio.Task[None] | None = None
        self._serving: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak refs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- control (any thread) -------------------------------------------------------

    def start(self) -> LinkProxy:
        if self._loop is not None:
            raise ConfigError("this proxy was started already")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="proxy")
        self._thread.start()
        self._call(self._listen())
        return self

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`: give this to the caller instead of the target's URL."""
        return f"http://127.0.0.1:{self._port}"

    def delay(self, seconds: float) -> None:
        """Deliver every chunk `seconds` late from now on (0 to stop delaying)."""
        if not 0 <= seconds <= self.max_delay:
            raise ConfigError(f"a delay is 0 to {self.max_delay} s, not {seconds}")
        self._delay = seconds

    def cut(self) -> None:
        """Reset every open connection and refuse new ones until `restore`."""
        self._call(self._cut_now())

    def restore(self) -> None:
        """Accept connections again, without delay."""
        self._delay = 0.0
        self._call(self._listen())

    def state(self) -> LinkState:
        return LinkState(self._cut, self._delay, len(self._links), self._accepted)

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return
        self._call(self._cut_now())
        self._call(self._cancel_links())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_CALL_TIMEOUT)
        loop.close()

    def __enter__(self) -> LinkProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._loop is None:
            coro.close()
            raise ConfigError("start the proxy first")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_CALL_TIMEOUT)

    # -- the event loop ---------------------------------------------------------------

    async def _listen(self) -> None:
        self._cut = False
        if self._listener is None:
            # SO_REUSEADDR (create_server's default here): `restore` binds the same port.
            listener = socket.create_server(("127.0.0.1", self._port), backlog=_BACKLOG)
            listener.setblocking(False)
            self._listener = listener
            self._port = listener.getsockname()[1]
            self._acceptor = asyncio.create_task(self._accept_loop(listener))

    async def _cut_now(self) -> None:
        self._cut = True
        if self._acceptor is not None:
            self._acceptor.cancel()
            await asyncio.gather(self._acceptor, return_exceptions=True)
            self._acceptor = None
        if self._listener is not None:
            self._listener.close()  # connections still in its backlog are reset by the kernel
            self._listener = None
        for client, upstream in list(self._links):
            _reset(client)
            if upstream is not None:
                _reset(upstream)
        self._links.clear()

    async def _cancel_links(self) -> None:
        """End every link's tasks (the loop stops next: none may be left pending)."""
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _accept_loop(self, listener: socket.socket) -> None:
        """Accept one connection at a time, each owned by a link from the moment it exists.

        Not `asyncio.start_server`: its server accepts a burst of up to the backlog
        at once and wraps each later, and a wrap that comes after the server closed
        fails and leaves the accepted socket open (an "unclosed transport" once it
        is collected). Here a connection is a tracked link before anything else can
        run, so a cut resets it and `close` leaves nothing open.
        """
        while True:
            await _readable(listener)
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):  # nothing to accept after all
                continue
            except OSError:  # out of descriptors, or a handshake aborted: again shortly
                await asyncio.sleep(0.1)
                continue
            conn.setblocking(False)
            try:
                reader, writer = await asyncio.open_connection(sock=conn)
            except BaseException:
                conn.close()
                raise
            if self._cut or len(self._links) >= self.max_connections:
                _reset(writer)
                continue
            self._accepted += 1
            link: tuple[asyncio.StreamWriter, asyncio.StreamWriter | None] = (writer, None)
            self._links.add(link)
            task = asyncio.create_task(self._serve(reader, writer, link))
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: tuple[asyncio.StreamWriter, asyncio.StreamWriter | None],
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._links.discard(link)
            _reset(writer)  # the target is down: the caller sees its connection fail
            return
        self._links.discard(link)
        if self._cut:  # cut while connecting: the reset missed the upstream side
            _reset(writer)
            _reset(up_writer)
            return
        link = (writer, up_writer)
        self._links.add(link)
        pumps = {
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        }
        try:
            done, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
            if any(t.exception() is not None for t in done):
                # One side failed: the other would wait on a live peer forever.
                for w in (writer, up_writer):
                    _reset(w)
                for t in pending:
                    t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        finally:
            self._links.discard(link)
            for w in (writer, up_writer):
                w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction, each chunk held until its due time (read time + delay)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(_QUEUED_CHUNKS)

        async def send() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof() and not writer.is_closing():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(send())
        try:
            while True:
                data = await reader.read(_CHUNK)
                await queue.put((loop.time() + self._delay, data))
                if not data:
                    break
            await sender
        finally:
            sender.cancel()
