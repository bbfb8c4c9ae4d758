"""Strict CBOR for verifiers: one reading of a signed transaction body, or a refusal.

The ledger hashes and signs a transaction body as the exact bytes the sender
wrote (`docs/format.md` section 1), and its own decoder is lenient there: a
body with a float, a tag or a duplicate key still decodes. An outside verifier
that reads the body to say what a transaction did must not be lenient, or two
readers could see two different payloads under one signature (the first or the
last of two duplicate keys, bytes after the item). `strict_decode` therefore
accepts only the canonical CBOR of RFC 8949 section 4.2.1 as sharechain
writes it, and names the rule a refused body breaks:

- `trailing bytes`: anything after the one data item;
- `non-shortest form`: an integer, length or count in a longer head than needed;
- `indefinite length`: heads 0x5f, 0x7f, 0x9f, 0xbf, or a break byte 0xff;
- `duplicate map key` and `map keys out of order` (bytewise by encoding);
- `floating-point value`, `tag`, `simple value` (only false, true, null pass);
- `invalid UTF-8`, `truncated`, `nesting too deep`, `map key type`.

Pure Python over `bytes` (no cbor2): a transaction body of a few hundred
bytes decodes in tens of microseconds.
"""

from __future__ import annotations

from typing import Any

from sharechain.errors import EncodingError

__all__ = ["MAX_DEPTH", "NonCanonicalError", "strict_decode"]

MAX_DEPTH = 32
"""Deepest nesting of arrays and maps accepted (bodies are four or five deep)."""

_MINIMUM = {24: 24, 25: 0x100, 26: 0x10000, 27: 0x100000000}
"""Smallest argument each long head may carry (below it a shorter head holds it)."""


class NonCanonicalError(EncodingError):
    """Bytes break one rule of canonical CBOR; `rule` names it, the message says where."""

    def __init__(self, rule: str, offset: int, detail: str = "") -> None:
        super().__init__(
            f"not canonical CBOR: {rule} at byte {offset}" + (f" ({detail})" if detail else "")
        )
        self.rule = rule
        self.offset = offset


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise NonCanonicalError("truncated", self.pos, f"{n} more bytes expected")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def head(self) -> tuple[int, int, int]:
        """(major type, additional information, argument) of the next item."""
        start = self.pos
        initial = self.take(1)[0]
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            return major, info, info
        if info == 31:
            if major == 7:
                raise NonCanonicalError("indefinite length", start, "a break byte 0xff")
            if major in (2, 3, 4, 5):
                raise NonCanonicalError("indefinite length", start, f"head 0x{initial:02x}")
        if info > 27:
            raise NonCanonicalError("reserved head", start, f"head 0x{initial:02x}")
        if major == 7 and info in (25, 26, 27):
            raise NonCanonicalError("floating-point value", start)
        arg = int.from_bytes(self.take(1 << (info - 24)), "big")
        if arg < _MINIMUM[info] and major != 7:
            raise NonCanonicalError("non-shortest form", start, f"{arg} in head 0x{initial:02x}")
        return major, info, arg

    def item(self, depth: int) -> Any:
        start = self.pos
        major, info, arg = self.head()
        if major == 0:
            return arg
        if major == 1:
            return -1 - arg
        if major == 2:
            return self.take(arg)
        if major == 3:
            raw = self.take(arg)
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise NonCanonicalError("invalid UTF-8", start) from None
        if major in (4, 5) and depth >= MAX_DEPTH:
            raise NonCanonicalError("nesting too deep", start, f"more than {MAX_DEPTH} levels")
        if major == 4:
            if arg > len(self.data) - self.pos:  # each item takes one byte at least
                raise NonCanonicalError("truncated", start, f"an array of {arg} items")
            return [self.item(depth + 1) for _ in range(arg)]
        if major == 5:
            return self.map(arg, start, depth)
        if major == 6:
            raise NonCanonicalError("tag", start, f"tag {arg}")
        if info < 24 and arg in (20, 21, 22):
            return (False, True, None)[arg - 20]
        raise NonCanonicalError("simple value", start, f"simple value {arg}")

    def map(self, count: int, start: int, depth: int) -> dict[Any, Any]:
        if 2 * count > len(self.data) - self.pos:
            raise NonCanonicalError("truncated", start, f"a map of {count} pairs")
        out: dict[Any, Any] = {}
        previous = b""
        for _ in range(count):
            at = self.pos
            key = self.item(depth + 1)
            encoded = self.data[at : self.pos]
            if type(key) not in (str, bytes, int):
                raise NonCanonicalError("map key type", at, "keys are text, bytes or integers")
            if encoded == previous or key in out:
                raise NonCanonicalError("duplicate map key", at, repr(key))
            if encoded < previous:
                raise NonCanonicalError("map keys out of order", at, repr(key))
            previous = encoded
            out[key] = self.item(depth + 1)
        return out


def strict_decode(data: bytes) -> Any:
    """The one value `data` encodes canonically; raise `NonCanonicalError` naming the rule."""
    reader = _Reader(bytes(data))
    value = reader.item(0)
    if reader.pos != len(reader.data):
        raise NonCanonicalError(
            "trailing bytes", reader.pos, f"{len(reader.data) - reader.pos} after the item"
        )
    return value
