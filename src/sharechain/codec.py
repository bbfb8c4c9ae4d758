"""Canonical encoding: deterministic CBOR (RFC 8949 section 4.2.1).

Everything that is hashed or signed is first encoded here, so the same value
always becomes the same bytes on every node. Maps are encoded with their keys
in bytewise-lexicographic order of the keys' encodings, integers and lengths in
their shortest form, and no indefinite lengths. For the text keys sharechain
uses, cbor2's canonical order (length first, then bytes) is the same order,
because the CBOR head of a text string grows with its length.

`decode` is strict: bytes that are valid CBOR but not in canonical form are
rejected, so a re-encoded copy of a signed record can never hash differently.

Fast path. cbor2's encoder costs several microseconds per map, twice that in
canonical mode. For the values the ledger handles (maps with text keys,
lists, text, bytes, integers below 2^64 in size, booleans, null) `encode`
writes the CBOR itself: each map's keys in canonical order (remembered per
key set; the encodings of short texts are remembered too) and every head in
its shortest form, which is the whole of RFC 8949 deterministic encoding for
these types. Anything else (floats, other key
types, tags, sets, big integers, subclasses) goes through cbor2's canonical
mode. `tests/test_codec.py` checks the two agree on random values.

The same writer exists in C, `sharechain._cborx`, built at install time when a
compiler is there (`ACCELERATED` says whether it is in use): it takes the
values the Python writer takes and writes the same bytes, four to five
times faster on the ledger's records, and says "not plain" (None) for the
rest, which then go to cbor2 as before. Containers nested more than
`_cborx.MAX_DEPTH` (1000) deep go to cbor2 too, as they do from the Python
writer when it runs out of recursion. `tests/test_codec_c.py` holds the C
writer to the Python one and to cbor2.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final

import cbor2

from sharechain.errors import EncodingError

__all__ = ["ACCELERATED", "decode", "decode_trusted", "encode", "head", "loads"]


class _NotPlain(Exception):
    """The value holds something only cbor2's canonical mode encodes."""


_PACK16 = struct.Struct(">BH").pack
_PACK32 = struct.Struct(">BI").pack
_PACK64 = struct.Struct(">BQ").pack


def _head(major: int, n: int) -> bytes:
    """A CBOR head: major type (already shifted) and argument, shortest form."""
    if n < 24:
        return bytes((major | n,))
    if n < 0x100:
        return bytes((major | 24, n))
    if n < 0x10000:
        return _PACK16(major | 25, n)
    if n < 0x100000000:
        return _PACK32(major | 26, n)
    return _PACK64(major | 27, n)


# Heads of arguments below 256, per major type: the common case is a lookup.
_UINT, _NINT, _BYTES, _TEXT, _ARRAY, _MAP = (
    tuple(_head(major << 5, n) for n in range(256)) for major in range(6)
)
_HEADS = (_UINT, _NINT, _BYTES, _TEXT, _ARRAY, _MAP)


def head(major: int, n: int) -> bytes:
    """The canonical head of a CBOR item: major type 0-5 and its argument `n`
    (the value, or the length in bytes or items), for writing an item in pieces."""
    return _HEADS[major][n] if n < 0x100 else _head(major << 5, n)


_U64 = 1 << 64

_plans: dict[tuple[Any, ...], tuple[tuple[bytes, str], ...]] = {}
"""Key tuple of a map -> (encoded key, key) in canonical order."""
_MAX_PLANS = 4096


def _plan(keys: tuple[Any, ...]) -> tuple[tuple[bytes, str], ...]:
    if not all(type(k) is str for k in keys):
        raise _NotPlain
    encoded = [(_text(k), k) for k in keys]
    # Bytewise order of the keys' encodings (for text: shorter first, then bytes).
    plan = tuple(sorted(encoded))
    if len(_plans) < _MAX_PLANS:  # bounded: key sets come from code, rarely from data
        _plans[keys] = plan
    return plan


_texts: dict[str, bytes] = {}
"""Short text -> its encoding. The records written repeat a few thousand texts
block after block (ids, organisations, statuses, field values), so most are a lookup."""
_MAX_TEXTS = 8192
_MAX_TEXT_CACHED = 128


def _text(value: str) -> bytes:
    b = value.encode()
    n = len(b)
    return (_TEXT[n] if n < 0x100 else _head(0x60, n)) + b


def _new_text(value: str) -> bytes:
    """`_text(value)`, remembered in `_texts` (forgotten all at once when full)."""
    encoded = _text(value)
    if len(value) <= _MAX_TEXT_CACHED:
        if len(_texts) >= _MAX_TEXTS:
            _texts.clear()
        _texts[value] = encoded
    return encoded


def _write(value: Any, out: list[bytes]) -> None:
    append = out.append
    kind = type(value)
    if kind is dict:
        n = len(value)
        append(_MAP[n] if n < 0x100 else _head(0xA0, n))
        keys = tuple(value)
        plan = _plans.get(keys)
        if plan is None:
            plan = _plan(keys)
        for key_bytes, key in plan:
            append(key_bytes)
            item = value[key]
            kind = type(item)
            if kind is str:  # the most common items, inline
                append(_texts.get(item) or _new_text(item))
            elif kind is bytes:
                n = len(item)
                append(_BYTES[n] if n < 0x100 else _head(0x40, n))
                append(item)
            elif kind is int and 0 <= item < _U64:  # heights, times, counts
                append(_UINT[item] if item < 0x100 else _head(0x00, item))
            elif kind is list and not item:
                append(b"\x80")
            elif kind is dict or kind is list:
                _write(item, out)
            else:
                _item(item, out)
    elif kind is list or kind is tuple:
        n = len(value)
        append(_ARRAY[n] if n < 0x100 else _head(0x80, n))
        for item in value:
            kind = type(item)
            if kind is str:
                append(_texts.get(item) or _new_text(item))
            elif kind is dict:
                _write(item, out)
            else:
                _item(item, out)
    else:
        _item(value, out)


def _item(value: Any, out: list[bytes]) -> None:
    # Scalars inline, containers through `_write`: most items of a record are scalars.
    kind = type(value)
    if kind is str:
        out.append(_texts.get(value) or _new_text(value))
    elif kind is int:
        if 0 <= value < 0x100:
            out.append(_UINT[value])
        elif 0 <= value < _U64:
            out.append(_head(0x00, value))
        elif -_U64 <= value < 0:
            n = -1 - value
            out.append(_NINT[n] if n < 0x100 else _head(0x20, n))
        else:
            raise _NotPlain  # a bignum (tag 2 or 3)
    elif kind is bytes:
        n = len(value)
        out.append(_BYTES[n] if n < 0x100 else _head(0x40, n))
        out.append(value)
    elif kind is dict or kind is list or kind is tuple:
        _write(value, out)
    elif value is None:
        out.append(b"\xf6")
    elif value is True:
        out.append(b"\xf5")
    elif value is False:
        out.append(b"\xf4")
    else:
        raise _NotPlain


def _plain_python(value: Any) -> bytes | None:
    """The Python writer: the deterministic CBOR of a plain value, or None for any
    other value (one only cbor2's canonical mode encodes, or nested too deep)."""
    out: list[bytes] = []
    try:
        _write(value, out)
    except (_NotPlain, RecursionError):
        return None
    return b"".join(out)


try:
    from sharechain import _cborx

    _PLAIN_C: Callable[[Any], bytes | None] | None = _cborx.encode
except ImportError:  # built without a C compiler: the Python writer alone
    _PLAIN_C = None

ACCELERATED: Final[bool] = _PLAIN_C is not None
"""Whether `encode` writes plain values with the C writer (`sharechain._cborx`)."""

_plain: Callable[[Any], bytes | None] = _PLAIN_C or _plain_python
"""The writer `encode` uses; tests set it to `_plain_python` to run the Python one."""


def encode(value: Any) -> bytes:
    """Encode `value` as deterministic CBOR."""
    if type(value) is bytes:  # a value written by the thousand (digests, ids)
        n = len(value)
        return (_BYTES[n] if n < 0x100 else _head(0x40, n)) + value
    if type(value) is int and 0 <= value < 0x100:  # and counters
        return _UINT[value]
    try:
        # A str that is not UTF-8 (a lone surrogate) raises UnicodeEncodeError here.
        data = _plain(value)
        return cbor2.dumps(value, canonical=True) if data is None else data
    except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
        raise EncodingError(f"value cannot be encoded canonically: {exc}") from exc


def _refuse_sharing(decoder: Any, *args: Any) -> Any:
    raise cbor2.CBORDecodeError("value sharing and string references (tags 25, 28, 29, 256)")


_NO_SHARING = {tag: _refuse_sharing for tag in (25, 28, 29, 256)}
"""cbor2 decodes shared values (tags 28/29) and string references (25/256) by
default: a few hundred bytes then stand for a structure exponentially larger,
which every later walk (the canonical check's re-encoding first) pays for.
Nothing sharechain writes uses them, so every decode refuses them."""


def loads(data: bytes) -> Any:
    """`cbor2.loads`, refusing value sharing and string references (`_NO_SHARING`);
    raises cbor2's errors. For callers that word their own error."""
    return cbor2.loads(data, semantic_decoders=_NO_SHARING)


def decode_trusted(data: bytes) -> Any:
    """Decode bytes this node wrote itself (its own store); skips the canonical check."""
    return cbor2.loads(data, semantic_decoders=_NO_SHARING)


def decode(data: bytes, *, canonical: bool = True) -> Any:
    """Decode `data`, raising `EncodingError` unless it is canonical CBOR.

    With `canonical=False` any well-formed CBOR decodes: for callers that check
    canonical form themselves, more cheaply than re-encoding the whole value.
    """
    try:
        value = cbor2.loads(data, semantic_decoders=_NO_SHARING)
    except (cbor2.CBORDecodeError, ValueError, TypeError, EOFError) as exc:
        raise EncodingError(f"not valid CBOR: {exc}") from exc
    if canonical and encode(value) != data:
        raise EncodingError("CBOR is not in canonical (deterministic) form")
    return value
