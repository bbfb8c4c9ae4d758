"""Canonical encoding: deterministic CBOR (RFC 8949 section 4.2.1).

Everything that is hashed or signed is first encoded here, so the same value
always becomes the same bytes on every node. Maps are encoded with their keys
in bytewise-lexicographic order of the keys' encodings, integers and lengths in
their shortest form, and no indefinite lengths. For the text keys sharechain
uses, cbor2's canonical order (length first, then bytes) is the same order,
because the CBOR head of a text string grows with its length.

`decode` is strict: bytes that are valid CBOR but not in canonical form are
rejected, so a re-encoded copy of a signed record can never hash differently.
"""

from __future__ import annotations

from typing import Any

import cbor2

from sharechain.errors import EncodingError

__all__ = ["decode", "decode_trusted", "encode"]


def encode(value: Any) -> bytes:
    """Encode `value` as deterministic CBOR."""
    try:
        return cbor2.dumps(value, canonical=True)
    except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
        raise EncodingError(f"value cannot be encoded canonically: {exc}") from exc


def decode_trusted(data: bytes) -> Any:
    """Decode bytes this node wrote itself (its own store); skips the canonical check."""
    return cbor2.loads(data)


def decode(data: bytes) -> Any:
    """Decode `data`, raising `EncodingError` unless it is canonical CBOR."""
    try:
        value = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, EOFError) as exc:
        raise EncodingError(f"not valid CBOR: {exc}") from exc
    if cbor2.dumps(value, canonical=True) != data:
        raise EncodingError("CBOR is not in canonical (deterministic) form")
    return value
