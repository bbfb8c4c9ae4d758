"""Signature-checking worker process for the block pipeline.

Two channels come from the pipeline (`ledger/pipeline.py`):

- stdin: the blocks, each framed as a 4-byte big-endian length and the CBOR
  array `[seq, {key id: public key} or null, [raw envelope, ...], oldest]`
  (null: the keys of the previous block still hold; `oldest`: the lowest
  sequence number still in flight, so older blocks are forgotten). Every
  worker receives every block; a thread reads them as they come, so the
  pipeline's writes never wait for a worker busy checking.
- a SOCK_SEQPACKET socket (its descriptor is the one argument) carrying
  tickets, `>QII` (seq, first, end): a chunk of a block's transactions to
  check. All the workers and the pipeline itself read tickets from the same
  socket, and each ticket goes to exactly one reader: whoever is free takes
  the next chunk (the pipeline takes one whenever it would otherwise wait).

A reply, on stdout, is framed the same way: `>QId` (seq, first, the seconds
the checks took) then one status byte per envelope of the chunk: 0 not
checked (no well-formed envelope, or a key id not in the map), 1 verified,
2 failed. Replies are small and the pipeline keeps few tickets queued, so
neither side can block the other. The worker ends when the ticket socket or
stdin closes.

The worker reads only the envelope: the key id it names picks the public key
(its SHA-256 is that id), and the signature is checked over the body's bytes
as they stand. Whether that key is the sender's current one, and whether the
body is canonical and well formed, the main process decides as it always
does (`ledger/execution.py`), so a body is decoded once, there.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
import time
from typing import BinaryIO

import cbor2

from sharechain.crypto.signing import verify_many
from sharechain.errors import EncodingError
from sharechain.ledger.transactions import TX_DOMAIN, envelope_parts

NOT_CHECKED, VERIFIED, FAILED = 0, 1, 2


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def check(keys: dict[bytes, bytes], raws: list[bytes]) -> bytes:
    """One status byte per envelope in `raws`: each signature checked against the
    key `keys` holds for the envelope's key id."""
    status = bytearray(len(raws))
    checks: list[tuple[bytes, bytes, bytes]] = []
    where: list[int] = []
    for i, raw in enumerate(raws):
        try:
            body, key_id, signature = envelope_parts(raw)
        except EncodingError:
            continue
        public = keys.get(key_id)
        if public is not None:
            where.append(i)
            checks.append((public, signature, TX_DOMAIN + body))
    for i, ok in zip(where, verify_many(checks, min_parallel=1 << 30), strict=True):
        status[i] = VERIFIED if ok else FAILED
    return bytes(status)


TICKET = struct.Struct(">QII")
"""A ticket: (block seq, first transaction, end) of one chunk to check."""

REPLY = struct.Struct(">QId")
"""A reply's head: (block seq, first transaction, seconds the checks took)."""


class _Blocks:
    """The blocks received so far and not yet forgotten, filled by a reader thread."""

    def __init__(self, inp: BinaryIO) -> None:
        self._inp = inp
        self._held: dict[int, tuple[dict[bytes, bytes], list[bytes]]] = {}
        self._cond = threading.Condition()
        self._closed = False
        threading.Thread(target=self._read, name="blocks", daemon=True).start()

    def _read(self) -> None:
        keys: dict[bytes, bytes] = {}
        try:
            while (head := _read_exact(self._inp, 4)) is not None:
                body = _read_exact(self._inp, int.from_bytes(head, "big"))
                if body is None:
                    break
                seq, new_keys, raws, oldest = cbor2.loads(body)
                if new_keys is not None:
                    keys = new_keys
                with self._cond:
                    for old in [s for s in self._held if s < oldest]:
                        del self._held[old]
                    self._held[seq] = (keys, raws)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def get(self, seq: int) -> tuple[dict[bytes, bytes], list[bytes]] | None:
        """Block `seq`, waiting for it to arrive (None: stdin closed first)."""
        with self._cond:
            while seq not in self._held and not self._closed:
                self._cond.wait()
            return self._held.get(seq)


def main() -> None:
    tickets = socket.socket(fileno=int(sys.argv[1]))
    blocks = _Blocks(sys.stdin.buffer)
    out = sys.stdout.buffer
    while len(ticket := tickets.recv(TICKET.size)) == TICKET.size:
        seq, lo, hi = TICKET.unpack(ticket)
        block = blocks.get(seq)
        if block is None:
            break
        keys, raws = block
        t0 = time.perf_counter()
        status = check(keys, raws[lo:hi])
        reply = REPLY.pack(seq, lo, time.perf_counter() - t0) + status
        out.write(len(reply).to_bytes(4, "big") + reply)
        out.flush()
    # Not a normal exit: the reader thread may be blocked reading stdin, and the
    # interpreter's shutdown would then fail to take that stream's lock.
    os._exit(0)


if __name__ == "__main__":
    main()
