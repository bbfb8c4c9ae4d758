"""An append-only log of opaque block bytes kept in an etcd cluster.

In the `etcd` ordering mode the consortium's etcd cluster is the one place
that decides which block comes at which height. This module only moves
bytes: it neither encodes nor verifies blocks (the ledger does both).

Keys, under a configurable prefix (default `sharechain/`)::

    <prefix>blocks/00000000000000000000   block at height 0
    <prefix>blocks/00000000000000000001   block at height 1, ...
    <prefix>head                          decimal height of the newest block

Heights are zero-padded to 20 digits so etcd's byte order is height order
and a range read returns blocks in sequence.

No forks. `append(h, data)` is one etcd transaction: "if `blocks/h` has
never been created, and `blocks/h-1` exists, then put `blocks/h` and set
`head` to h". etcd runs transactions one at a time on a replicated log, so
of two writers racing for the same height exactly one succeeds; the other
gets False and must re-read the chain. The second condition keeps the log
contiguous, so `head` only ever grows.

Following the log. `watch(h)` first reads what already exists with paged
range reads, then subscribes to etcd's watch stream from the revision the
last read saw. Any trouble (an endpoint going away, etcd cancelling the
watch because the revision was compacted, an idle stream) simply repeats
"range reads from the next height, then watch": since heights are counted
locally, nothing is skipped and nothing is yielded twice.

Transport: etcd's JSON gateway (`/v3/...`, keys and values in base64) over
HTTP with httpx, so no gRPC dependency (`etcd_wire`). Every call tries the
endpoints in turn until one answers or `timeout` passes, then raises
OrderingError (`etcd_gateway`, which also asks each member for its status).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Protocol

from sharechain.errors import OrderingError
from sharechain.ordering.etcd_auth import EtcdAuth
from sharechain.ordering.etcd_gateway import MAX_BACKOFF, EndpointStatus, EtcdGateway
from sharechain.ordering.etcd_tls import EtcdTLS
from sharechain.ordering.etcd_wire import (
    Json,
    _b64,
    _kvs,
    _StreamEnd,
    _unb64,
    _watch_events,
    _WatchStream,
)

__all__ = [
    "DEFAULT_MAX_BLOCK_BYTES",
    "ETCD_DEFAULT_MAX_REQUEST_BYTES",
    "HEAD_UNREADABLE",
    "EndpointStatus",
    "EtcdLog",
    "LogOutOfStep",
    "StopFlag",
    "parse_height",
]

ETCD_DEFAULT_MAX_REQUEST_BYTES = 1_572_864
"""etcd's default `--max-request-bytes` (1.5 MiB): the largest write it accepts."""

DEFAULT_MAX_BLOCK_BYTES = ETCD_DEFAULT_MAX_REQUEST_BYTES - 4096
"""Largest block `append` sends by default: etcd's limit minus room for keys and framing."""

_STREAM_JOIN = 5.0
"""Seconds a closed watch stream's reader is waited for (woken, it leaves at once)."""

_BLOCK_DIGITS = 20
_KEYS_PAGE = 1_000
"""Keys one read of names only returns (`lowest_height`)."""

HEAD_UNREADABLE = -2
"""What `EtcdLog.head` answers when `head` holds something that is not a height.

Only `append` and `void` write `head`, always a height in decimal, so such a
value was written by hand by an etcd client; the leader mends it
(`EtcdLog.move_head` takes this value as its `claimed`)."""


class LogOutOfStep(OrderingError):
    """`append` found `head` not on the height below: the log must be mended or read again."""


def parse_height(raw: bytes, *, width: int | None = None) -> int | None:
    """The height `raw` spells in ASCII decimal, or None if it spells none.

    `width`: exactly that many digits, zero-padded (a block key's tail);
    otherwise the canonical form `append` writes to `head` (no sign, no
    spaces or underscores, no leading zero, at most 20 digits). Python's
    `int` accepts far more (" 5", "5_0", "+5"), so keys and values that an
    etcd client wrote by hand must pass here before they are believed.
    """
    if not raw.isdigit():  # bytes.isdigit: ASCII digits only, and not empty
        return None
    if width is not None:
        return int(raw) if len(raw) == width else None
    if len(raw) > _BLOCK_DIGITS or (len(raw) > 1 and raw[:1] == b"0"):
        return None
    return int(raw)


class StopFlag(Protocol):
    """What ends a `watch`: a `threading.Event`, or any object that answers the same two calls."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class EtcdLog:
    """The block log in etcd: append, read, follow. Thread-safe.

    `endpoints` are client URLs (`http://host:port`) of the members.
    `timeout` bounds each public call (all endpoints and retries included);
    `max_block_bytes` must not exceed the members' `--max-request-bytes`
    minus a few KiB. `page_size` is how many blocks one range read returns,
    which bounds memory while reading. `watch_idle_timeout` is how long a
    quiet watch stream is trusted before it is re-established. `clock`
    (monotonic seconds) is injectable for tests.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        prefix: str = "sharechain/",
        timeout: float = 10.0,
        *,
        max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES,
        page_size: int = 8,
        watch_idle_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        tls: EtcdTLS | None = None,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self._gateway = EtcdGateway(endpoints, timeout, clock=clock, tls=tls)
        self._prefix = prefix.encode()
        self._blocks = self._prefix + b"blocks/"
        # Past the last block key ("blocks/" then 20 digits; ':' follows '9'), so a key
        # such as `blocks/x` that an etcd client put by hand is not even read.
        self._blocks_end = self._blocks + b":"
        self._head_key = self._prefix + b"head"
        self._max_block_bytes = max_block_bytes
        self._page_size = page_size
        self._idle_timeout = watch_idle_timeout
        self._streams: set[_WatchStream] = set()
        """Watch streams whose reader may still be in its connection (`close` waits)."""
        self._streams_lock = threading.Lock()
        self.tls = tls

    # -- lifecycle -------------------------------------------------------

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The client URLs this log talks to."""
        return self._gateway.endpoints

    @property
    def prefix(self) -> bytes:
        """The key prefix of this log (`blocks/`, `head` and any other keys live under it)."""
        return self._prefix

    def call(self, path: str, body: Json) -> Json:
        """One JSON-gateway request (`/v3/...`) with this log's failover and timeout.

        For helpers that keep other keys under the prefix (`etcd_lease`).
        Raises OrderingError when no quorum answers or etcd refuses.
        """
        return self._gateway.post(path, body)

    def close(self) -> None:
        """Close the HTTP connections, once every watch stream's reader has left its own
        (closing a connection a thread still reads would free its descriptor's number
        under that thread: `_WatchStream`)."""
        with self._streams_lock:
            streams = list(self._streams)
        for stream in streams:
            stream.close()
        for stream in streams:
            stream.join(_STREAM_JOIN)
        self._gateway.close()

    def __enter__(self) -> EtcdLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- writing ---------------------------------------------------------

    def append(self, height: int, data: bytes) -> bool:
        """Put `data` at `height` unless that height is taken; True if the log now holds it.

        Returns False when another writer's block already sits at `height`:
        re-read the chain and build on it. Also True when the same bytes are
        already there (a retried append whose first reply was lost). Raises
        OrderingError if `height - 1` is still empty, if `data` exceeds
        `max_block_bytes`, or if no quorum answers within the timeout; in the
        last case the write may still land later, so read the height back
        before building another block for it.
        """
        if height < 0:
            raise ValueError(f"height must be >= 0, got {height}")
        if len(data) > self._max_block_bytes:
            raise OrderingError(
                f"block at height {height} is {len(data)} bytes, above the limit of "
                f"{self._max_block_bytes} bytes; cut smaller blocks, or raise etcd's "
                "--max-request-bytes on every member and pass max_block_bytes accordingly"
            )
        key = _b64(self.block_key(height))
        compare: list[Json] = [
            {"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
        ]
        head_key = _b64(self._head_key)
        failure: list[Json] = [
            {"request_range": {"key": key}},
            {"request_range": {"key": head_key}},
        ]
        # The compare is on the tip (`head`), not on `blocks/h-1`: compaction
        # (`etcd_compact`) deletes old block keys, and a deleted key must not
        # let a second block in at its height.
        if height > 0:
            tip = _b64(str(height - 1).encode())
            compare.append({"key": head_key, "target": "VALUE", "result": "EQUAL", "value": tip})
        else:
            compare.append(
                {"key": head_key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
            )
        success: list[Json] = [
            {"request_put": {"key": key, "value": _b64(data)}},
            {"request_put": {"key": head_key, "value": _b64(str(height).encode())}},
        ]
        reply = self._gateway.post(
            "/v3/kv/txn", {"compare": compare, "success": success, "failure": failure}
        )
        if reply.get("succeeded"):
            return True
        responses = list(reply.get("responses") or [{}, {}])
        existing = _kvs(responses[0].get("response_range", {}))
        if existing:
            return _unb64(existing[0].get("value", "")) == data
        tip_kvs = _kvs(responses[-1].get("response_range", {}))
        raw_tip = _unb64(tip_kvs[0].get("value", "")) if tip_kvs else None
        at = parse_height(raw_tip) if raw_tip is not None else None
        if at is not None and at >= height:
            return False  # taken, and compacted away since: never a second block there
        if raw_tip is not None and at is None:
            raise LogOutOfStep(
                f"cannot append height {height}: head holds {raw_tip[:40]!r}, not a height "
                "(an etcd client wrote it by hand); the leader mends it (EtcdLog.move_head)"
            )
        raise LogOutOfStep(
            f"cannot append height {height}: height {height - 1} is not in the log yet "
            f"(head is {self.head()}); append heights in order"
        )

    def move_head(self, claimed: int, height: int, data: bytes) -> bool:
        """Set `head` from `claimed` to `height`, if it still says `claimed`, `data` sits at
        `height` and no block above it. `append` moves `head` with its block, so a
        `head` elsewhere was written by hand, and it would refuse every append. True
        if it was set. `claimed` may be `HEAD_UNREADABLE` (what `head` answered for
        a value that is not a height): the value is then read again and must still
        be one that is not a height."""
        if claimed == HEAD_UNREADABLE:
            raw = self._head_raw()
            if raw is None or parse_height(raw) is not None:
                return False  # mended or rewritten meanwhile: read the head again
            was = raw
        else:
            was = str(claimed).encode()
        at, above = _b64(self.block_key(height)), _b64(self.block_key(height + 1))
        compare: list[Json] = [
            {"key": _b64(self._head_key), "target": "VALUE", "result": "EQUAL", "value": _b64(was)},
            {"key": at, "target": "VALUE", "result": "EQUAL", "value": _b64(data)},
            {"key": above, "target": "CREATE", "result": "EQUAL", "create_revision": "0"},
        ]
        success: list[Json] = [
            {"request_put": {"key": _b64(self._head_key), "value": _b64(str(height).encode())}}
        ]
        reply = self._gateway.post("/v3/kv/txn", {"compare": compare, "success": success})
        return bool(reply.get("succeeded"))

    def void(self, height: int, data: bytes) -> bool:
        """Remove `data` from `height` if it is still there; True if it was removed.

        Only for a value that every honest node refuses as not a block of this
        chain (junk, or a block signed by a non-member): the height becomes
        free again and the leader appends there. The compare on the exact
        value means a block appended meanwhile is never touched, so nodes may
        race to void the same value. `head` goes back to `height - 1`.
        """
        key = _b64(self.block_key(height))
        compare: list[Json] = [
            {"key": key, "target": "VALUE", "result": "EQUAL", "value": _b64(data)}
        ]
        success: list[Json] = [
            {"request_delete_range": {"key": key}},
            {"request_put": {"key": _b64(self._head_key), "value": _b64(str(height - 1).encode())}},
        ]
        reply = self._gateway.post("/v3/kv/txn", {"compare": compare, "success": success})
        return bool(reply.get("succeeded"))

    # -- reading ---------------------------------------------------------

    def get(self, height: int) -> bytes | None:
        """The block bytes at `height`, or None if nothing is there yet."""
        if height < 0:
            return None
        kvs = _kvs(self._gateway.post("/v3/kv/range", {"key": _b64(self.block_key(height))}))
        return _unb64(kvs[0].get("value", "")) if kvs else None

    def head(self) -> int:
        """Height of the newest block, -1 if the log is empty, `HEAD_UNREADABLE` if `head`
        holds something that is not a height (written by hand)."""
        raw = self._head_raw()
        if raw is None:
            return -1
        height = parse_height(raw)
        return HEAD_UNREADABLE if height is None else height

    def lowest_height(self, start: int = 0) -> int | None:
        """The lowest height at or above `start` with a block in etcd, None if none.

        Keys under `blocks/` that are not block keys (written by hand) are
        passed over, a page of keys at a time."""
        after = self.block_key(max(start, 0))
        while True:
            keys, more, _, last = self._range_page(after, None, keys_only=True)
            if keys:
                return keys[0][0]
            if not more or last is None:
                return None
            after = last + b"\0"

    def range(self, start: int, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        """Yield (height, bytes) for heights start <= h < end (to the head if end is None).

        Reads `page_size` blocks per request, so memory stays bounded.
        """
        after = self.block_key(max(start, 0))
        while True:
            page, more, _, last = self._range_page(after, end)
            yield from page
            if not more or last is None:
                return
            after = last + b"\0"

    def watch(self, from_height: int, stop: StopFlag | None = None) -> Iterator[tuple[int, bytes]]:
        """Yield (height, bytes) from `from_height` on, in order, forever or until `stop` is set.

        Catches up with range reads, then follows etcd's watch stream. It
        recovers by itself from compaction, idle or broken streams and dead
        endpoints; it raises OrderingError only when no endpoint answers a
        catch-up read within the timeout (call it again with the next height
        to resume). Never yields a gap or the same height twice.
        """
        for height, data, _ in self.watch_marked(from_height, stop):
            yield height, data

    def watch_marked(
        self, from_height: int, stop: StopFlag | None = None
    ) -> Iterator[tuple[int, bytes, bool]]:
        """`watch`, each block marked with how it was read: True for a watch event (the
        first write of that height after the watch's last range read), False for a range
        read (what the key holds now, whoever wrote it last; `node.vouching`)."""
        if from_height < 0:
            raise ValueError(f"from_height must be >= 0, got {from_height}")
        stop = stop if stop is not None else threading.Event()
        # `stop` is polled (every 0.1 s while the stream is silent), so it may
        # be a condition computed on the fly, not only an event someone sets.
        next_height = from_height
        failures = 0
        while not stop.is_set():
            # Catch up: everything up to the revision of the last page read.
            revision = 0
            gap = False
            after = self.block_key(next_height)
            while not stop.is_set():
                page, more, revision, last = self._range_page(after, None)
                for height, data in page:
                    if height != next_height:
                        gap = True  # cannot happen with `append`; wait for the hole to fill
                        break
                    yield height, data, False
                    next_height += 1
                if gap or not more or last is None:
                    break
                after = last + b"\0"  # past keys that are no block's too
            if gap:
                stop.wait(min(self._idle_timeout, MAX_BACKOFF))
                continue
            # Follow: events after that revision.
            endpoint = self._gateway.preferred
            stream = self._open_watch(endpoint, next_height, revision + 1)
            outcome = ""
            try:
                while not stop.is_set():
                    try:
                        message = stream.messages.get(timeout=0.1)
                    except queue.Empty:
                        continue
                    if isinstance(message, _StreamEnd):
                        outcome = message.reason
                        break
                    events, outcome = _watch_events(message)
                    for height, data in self._decode_events(events):
                        if height < next_height:
                            continue
                        if height > next_height:
                            outcome = "gap"
                            break
                        failures = 0
                        yield height, data, True
                        next_height += 1
                    if outcome:
                        break
            finally:
                stream.close()
                if stream.join(_STREAM_JOIN):
                    with self._streams_lock:
                        self._streams.discard(stream)
            if stop.is_set() or outcome in ("idle", "compacted", "gap"):
                continue
            if "permission denied" in outcome:  # a token the member no longer knows
                auth = self._gateway.watch_client.auth
                if isinstance(auth, EtcdAuth):
                    auth.forget(self._gateway.endpoints[endpoint])
            # The endpoint failed: prefer the next one and back off a little.
            self._gateway.preferred = (endpoint + 1) % len(self._gateway.endpoints)
            failures += 1
            stop.wait(min(MAX_BACKOFF, 0.02 * 2**failures))

    # -- status ----------------------------------------------------------

    def status(self) -> tuple[EndpointStatus, ...]:
        """Ask every endpoint for its health, leader, Raft index and database size."""
        return self._gateway.status()

    # -- internals -------------------------------------------------------

    def block_key(self, height: int) -> bytes:
        """The etcd key of the block at `height`."""
        return self._blocks + str(height).zfill(_BLOCK_DIGITS).encode()

    def _head_raw(self) -> bytes | None:
        kvs = _kvs(self._gateway.post("/v3/kv/range", {"key": _b64(self._head_key)}))
        return _unb64(kvs[0].get("value", "")) if kvs else None

    def height_of(self, key: bytes) -> int | None:
        """The height a block key names; None for any other key under `blocks/`."""
        if not key.startswith(self._blocks):
            return None
        return parse_height(key[len(self._blocks) :], width=_BLOCK_DIGITS)

    def _range_page(
        self, after: bytes, end: int | None, *, keys_only: bool = False
    ) -> tuple[list[tuple[int, bytes]], bool, int, bytes | None]:
        """One range read from key `after` on: (blocks, more follow, revision the read
        saw, the last key read). Keys that are not block keys are left out of the
        blocks (an etcd client can write any key), so page on from the last key."""
        range_end = self._blocks_end if end is None else self.block_key(end)
        body: Json = {"key": _b64(after), "range_end": _b64(range_end)}
        # Names alone are small: read many at once, past however many junk keys.
        body["limit"] = str(_KEYS_PAGE if keys_only else self._page_size)
        if keys_only:
            body["keys_only"] = True
        reply = self._gateway.post("/v3/kv/range", body)
        page, last = [], None
        for kv in _kvs(reply):
            last = _unb64(kv["key"])
            height = self.height_of(last)
            if height is not None:
                page.append((height, _unb64(kv.get("value", ""))))
        revision = int(reply.get("header", {}).get("revision", 0))
        return page, bool(reply.get("more")), revision, last

    def _decode_events(self, events: list[Json]) -> Iterator[tuple[int, bytes]]:
        for event in events:
            if event.get("type", "PUT") != "PUT":
                continue  # `append` never deletes; a manual delete must not look like a block
            kv = event.get("kv", {})
            height = self.height_of(_unb64(kv["key"]))
            if height is not None:  # not a block key: written by hand, no block
                yield height, _unb64(kv.get("value", ""))

    def _open_watch(self, endpoint: int, height: int, revision: int) -> _WatchStream:
        body = {
            "create_request": {
                "key": _b64(self.block_key(height)),
                "range_end": _b64(self._blocks_end),
                "start_revision": str(revision),
            }
        }
        stream = _WatchStream(
            self._gateway.watch_client,
            f"{self._gateway.endpoints[endpoint]}/v3/watch",
            body,
            self._idle_timeout,
        )
        with self._streams_lock:
            self._streams.add(stream)
        return stream
