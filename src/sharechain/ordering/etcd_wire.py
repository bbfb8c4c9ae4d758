"""The etcd v3 JSON gateway's wire: base64 keys and values, errors, watch streams.

`EtcdLog` speaks to etcd through its gRPC-gateway (`/v3/...` over HTTP/JSON):
keys and values travel base64-encoded, refusals come as JSON with a gRPC code,
and a watch is one long HTTP response of JSON messages, read here by a daemon
thread into a small bounded queue so a stalled stream never blocks the caller
beyond its idle timeout.
"""

from __future__ import annotations

import base64
import contextlib
import json
import queue
import socket
import threading
from typing import Any

import httpx

from sharechain.errors import OrderingError
from sharechain.handoff import put_until

Json = dict[str, Any]
"""A JSON object as the gateway sends or takes it."""


class _StreamEnd:
    """Marker the reader thread queues when the watch stream is over."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _WatchStream:
    """One watch HTTP stream read by a daemon thread into a small queue.

    A thread, so that `watch` can notice `stop` while the stream is silent;
    a bounded queue, so a slow consumer holds back the socket, not memory.

    `close` wakes the reader by shutting its connection down, and the reader
    alone then closes it. The connection must never be closed under a reader
    still waiting in it: the descriptor's number is free again at once, and
    when the wait ends, OpenSSL reads and writes whatever file took the number
    (a ledger database the node opened meanwhile got a TLS alert written over
    its header: "file is not a database").
    """

    def __init__(self, client: httpx.Client, url: str, body: Json, idle_timeout: float) -> None:
        self.messages: queue.Queue[Json | _StreamEnd] = queue.Queue(maxsize=4)
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        """The stream's connection while the reader is inside it (None before and after)."""
        self._thread = threading.Thread(
            target=self._run,
            args=(client, url, body, idle_timeout),
            name="etcd-watch",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Ask the reader to stop, waking it if it waits for the server (it then closes
        the connection itself); `join` waits until it has."""
        self._closed.set()
        with self._lock:
            if self._sock is not None:
                # Shut down, not closed: the descriptor stays the reader's until it
                # leaves the stream. The socket class's own shutdown: an SSL socket's
                # would drop its TLS state under the reader.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the reader to be done with its connection (after
        `close`); whether it is."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _put(self, item: Json | _StreamEnd) -> bool:
        return put_until(self.messages, item, self._closed.is_set)

    def _run(self, client: httpx.Client, url: str, body: Json, idle_timeout: float) -> None:
        timeout = httpx.Timeout(idle_timeout, connect=min(idle_timeout, 2.0))
        # Ask etcd to end the stream if this member loses its leader, rather
        # than leave us on a member that silently falls behind.
        headers = {"Grpc-Metadata-hasleader": "true"}
        reason = "stream closed by the server"
        try:
            with client.stream("POST", url, json=body, headers=headers, timeout=timeout) as reply:
                try:
                    with self._lock:
                        self._sock = _socket_of(reply)
                    if self._closed.is_set():  # closed before `close` could see the socket
                        return
                    if reply.status_code != 200:
                        reason = f"watch refused with HTTP {reply.status_code}"
                    else:
                        for line in reply.iter_lines():
                            if self._closed.is_set():
                                return
                            if line.strip() and not self._put(json.loads(line)):
                                return
                finally:
                    with self._lock:  # before the response closes the connection
                        self._sock = None
        except httpx.ReadTimeout:
            reason = "idle"
        except (httpx.HTTPError, ValueError, RuntimeError) as exc:  # RuntimeError: log closed
            reason = _describe(exc)
        self._put(_StreamEnd(reason))


def _socket_of(reply: httpx.Response) -> socket.socket | None:
    """The socket under a streamed response (httpcore's network stream), if it says."""
    stream = reply.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    return sock if isinstance(sock, socket.socket) else None


def _watch_events(message: Json) -> tuple[list[Json], str]:
    """Events of one watch message and why the stream should be re-established ("" if not)."""
    result = message.get("result")
    if not isinstance(result, dict):
        return [], f"watch error: {message.get('error', message)}"
    if result.get("canceled"):
        if int(result.get("compact_revision", 0)):
            return [], "compacted"
        return [], f"watch cancelled: {result.get('cancel_reason', 'no reason given')}"
    return list(result.get("events", [])), ""


def _refusal(url: str, code: int, message: str) -> OrderingError:
    if "too large" in message or "larger than max" in message:
        return OrderingError(
            f"etcd at {url} refused the request as too large ({message}); cut smaller blocks, "
            "or raise --max-request-bytes on every member and max_block_bytes to match"
        )
    if "space exceeded" in message:
        return OrderingError(
            f"etcd at {url} is out of space ({message}); raise --quota-backend-bytes, "
            "defragment, and disarm the NOSPACE alarm"
        )
    return OrderingError(f"etcd at {url} refused the request: {message} (gRPC code {code})")


def _json_or_error(reply: httpx.Response) -> Json | str:
    try:
        payload = reply.json()
    except ValueError:
        return f"HTTP {reply.status_code}, not JSON: {reply.text[:200]!r}"
    if not isinstance(payload, dict):
        return f"HTTP {reply.status_code}, unexpected JSON: {str(payload)[:200]}"
    return payload


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def _kvs(reply: Json) -> list[Json]:
    return list(reply.get("kvs", []))


def _prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with `prefix`."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return b"\x00"  # etcd's "to the end of the keyspace"
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)
