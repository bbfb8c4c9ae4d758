"""Signature-checking worker process for the block pipeline.

Reads requests from stdin and writes replies to stdout, each framed as a
4-byte big-endian length and a body. A request is the CBOR array
`[{sender: public key}, [raw envelope, ...]]`; the reply holds one status byte
per envelope: 0 not checked (undecodable, unknown sender or another key),
1 verified, 2 failed. A reply is never larger than the pipe buffer for any
block the pipeline sends, so neither side can block the other.
"""

from __future__ import annotations

import sys
from typing import BinaryIO

import cbor2

from sharechain.crypto.signing import key_id, verify_many
from sharechain.errors import EncodingError
from sharechain.ledger.transactions import decode_transaction

NOT_CHECKED, VERIFIED, FAILED = 0, 1, 2


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def check(keys: dict[str, bytes], raws: list[bytes]) -> bytes:
    status = bytearray(len(raws))
    checks: list[tuple[bytes, bytes, bytes]] = []
    where: list[int] = []
    for i, raw in enumerate(raws):
        try:
            stx = decode_transaction(raw)
        except EncodingError:
            continue
        public = keys.get(stx.tx.sender)
        if public is not None and key_id(public) == stx.key_id:
            where.append(i)
            checks.append((public, stx.signature, stx.signed_message))
    for i, ok in zip(where, verify_many(checks, min_parallel=1 << 30), strict=True):
        status[i] = VERIFIED if ok else FAILED
    return bytes(status)


def main() -> None:
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = _read_exact(inp, 4)
        if head is None:
            return
        body = _read_exact(inp, int.from_bytes(head, "big"))
        if body is None:
            return
        keys, raws = cbor2.loads(body)
        reply = check(keys, raws)
        out.write(len(reply).to_bytes(4, "big") + reply)
        out.flush()


if __name__ == "__main__":
    main()
