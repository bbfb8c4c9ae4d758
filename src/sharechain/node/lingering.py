"""uvicorn's HTTP/1.1 protocol (h11) with a lingering close.

A node refuses some requests before reading their bodies (413 over the size
limit, 401 unsigned, 403, 429, 503) and closes the connection after the
answer, so as not to read what it refused. A client still sending its body
then writes into a closed socket: the kernel answers with a reset, which can
reach the client before it has read the answer, and the client sees
"connection reset" instead of the reason. A lingering close (as web servers
do) first ends the sending side (a FIN after the answer, where the transport
can: not under TLS), then keeps reading and discarding what the client still
sends, until it closes its side, `LINGER_BYTES` have been discarded or
`LINGER_SECONDS` passed, and only then closes. A client whose body is a few
MiB over the limit reads its 413; one sending gigabytes is cut off after
`LINGER_BYTES` as before. Nothing discarded is kept, and a server shutting
down closes at once.

A connection accepted as the server began to stop is not among those
uvicorn's shutdown asks to close, so the shutdown waited out its 5-s grace for
it and then left it open (the collector reported its transport later, in
whatever ran by then). `StoppingServer` marks its state when its shutdown
begins, and a connection made after that closes at once.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

__all__ = ["LINGER_BYTES", "LINGER_SECONDS", "LingeringH11Protocol", "StoppingServer"]

LINGER_BYTES = 64 << 20
"""At most this much of a refused body is read (and discarded) after the answer."""
LINGER_SECONDS = 2.0
"""At most this long a connection lingers after the answer."""


class _Lingering:
    """A transport whose `close` lingers first; everything else is the transport's."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._left = LINGER_BYTES
        self._timer: asyncio.TimerHandle | None = None
        self.lingering = False
        self.at_once = False
        """Set when the server shuts down: close without lingering."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        if self.lingering or self._transport.is_closing():
            return
        if self.at_once:
            self._transport.close()
            return
        self.lingering = True
        try:
            if self._transport.can_write_eof():
                self._transport.write_eof()  # the answer is complete: the client may read it
        except OSError:  # the client is gone already: nothing to linger for
            self.end()
            return
        self._transport.resume_reading()
        self._timer = self._loop.call_later(LINGER_SECONDS, self.end)

    def discard(self, data: bytes) -> None:
        """Data that arrived while lingering: dropped, and counted against `LINGER_BYTES`."""
        self._left -= len(data)
        if self._left <= 0:
            self.end()

    def end(self) -> None:
        """Stop lingering and close."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport.close()


class _State(ServerState):
    """uvicorn's state shared by a server's connections, and whether it is stopping."""

    def __init__(self) -> None:
        super().__init__()
        self.stopping = False


class StoppingServer(uvicorn.Server):
    """uvicorn's server, whose connections know when its shutdown has begun (`_State`)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._state = _State()
        self.server_state = self._state

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # The event loop's thread: a connection is made before this (and is asked to
        # close below) or after it (and sees `stopping`).
        self._state.stopping = True
        await super().shutdown(sockets)


class LingeringH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing its connections with a linger (`_Lingering`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._lingering = _Lingering(transport, self.loop)
        super().connection_made(self._lingering)  # type: ignore[arg-type]
        state = self.server_state
        if isinstance(state, _State) and state.stopping:
            self.shutdown()  # accepted as the server began to stop: nobody else asks

    def close_now(self) -> None:
        """Close the connection at once, lingering or not (the server has stopped)."""
        self._lingering.end()

    def data_received(self, data: bytes) -> None:
        if self._lingering.lingering:
            self._lingering.discard(data)
            return
        super().data_received(data)

    def eof_received(self) -> None:
        if self._lingering.lingering:
            self._lingering.end()  # the client is done sending: nothing to wait for
            return
        super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lingering.lingering:
            self._lingering.end()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        self._lingering.at_once = True
        super().shutdown()
