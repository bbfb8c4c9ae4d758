"""Signature-checking worker process for the block pipeline.

Reads requests from stdin and writes replies to stdout, each framed as a
4-byte big-endian length and a body. A request is the CBOR array
`[{key id: public key} or null, [raw envelope, ...]]` (null: the keys of the
previous request still hold); the reply holds the seconds the checks took
(a big-endian double, for the pipeline's balance), then one status byte per
envelope: 0 not checked (no well-formed envelope, or a key id not in the
map), 1 verified, 2 failed. A reply is never larger than the pipe buffer for any
block the pipeline sends, so neither side can block the other.

The worker reads only the envelope: the key id it names picks the public key
(its SHA-256 is that id), and the signature is checked over the body's bytes
as they stand. Whether that key is the sender's current one, and whether the
body is canonical and well formed, the main process decides as it always
does (`ledger/execution.py`), so a body is decoded once, there.
"""

from __future__ import annotations

import struct
import sys
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


def main() -> None:
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    keys: dict[bytes, bytes] = {}
    while True:
        head = _read_exact(inp, 4)
        if head is None:
            return
        body = _read_exact(inp, int.from_bytes(head, "big"))
        if body is None:
            return
        new_keys, raws = cbor2.loads(body)
        if new_keys is not None:
            keys = new_keys
        t0 = time.perf_counter()
        status = check(keys, raws)
        reply = struct.pack(">d", time.perf_counter() - t0) + status
        out.write(len(reply).to_bytes(4, "big") + reply)
        out.flush()


if __name__ == "__main__":
    main()
