"""Selective disclosure of a record's fields by salted commitments.

A record registered as disclosable is committed field by field: each field gets
its own random 128-bit salt, and its *disclosure* is the canonical CBOR of
`[salt, name, value]`; the field's digest is `SHA-256(disclosure)`. The
record's fingerprint, the value put on the chain, is

    SHA-256("sharechain/disclosure/v1\\x00" || digests sorted bytewise)

so it depends on every field but reveals none (the salts make a field's digest
unguessable even when its value has few possibilities). To show some fields,
the holder gives their disclosures and the digests of the others; a verifier
recomputes the fingerprint. Nothing is learnt about an undisclosed field but
that it exists. This is the SD-JWT idea (RFC 9901) over canonical CBOR.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sharechain.codec import decode, encode
from sharechain.errors import EncodingError, IntegrityError

__all__ = [
    "DOMAIN",
    "SALT_SIZE",
    "CommittedRecord",
    "Disclosure",
    "commit",
    "disclose",
    "fingerprint",
    "verify_disclosure",
]

DOMAIN = b"sharechain/disclosure/v1\x00"
SALT_SIZE = 16
MAX_FIELDS = 1024


@dataclass(frozen=True, slots=True)
class CommittedRecord:
    """What the holder keeps: every field's disclosure (salt, name, value)."""

    disclosures: Mapping[str, bytes]
    """Field name to `CBOR([salt, name, value])`."""
    fingerprint: bytes
    """The commitment registered on the chain."""


@dataclass(frozen=True, slots=True)
class Disclosure:
    """What a verifier is shown: some fields opened, the others as digests."""

    revealed: tuple[bytes, ...]
    """Disclosures `CBOR([salt, name, value])` of the fields shown."""
    hidden: tuple[bytes, ...]
    """Digests of the fields not shown, sorted."""


def _digest(disclosure: bytes) -> bytes:
    return hashlib.sha256(disclosure).digest()


def fingerprint(digests: Iterable[bytes]) -> bytes:
    """The record's fingerprint over its field digests (order does not matter)."""
    return hashlib.sha256(DOMAIN + b"".join(sorted(digests))).digest()


def commit(
    record: Mapping[str, Any], *, rng: Callable[[int], bytes] = os.urandom
) -> CommittedRecord:
    """Commit to every field of `record` with a fresh salt each."""
    if not record or len(record) > MAX_FIELDS:
        raise ValueError(f"a disclosable record has 1 to {MAX_FIELDS} fields")
    disclosures = {}
    for name, value in record.items():
        if not isinstance(name, str) or not name:
            raise ValueError("field names must be non-empty text")
        disclosures[name] = encode([rng(SALT_SIZE), name, value])
    return CommittedRecord(disclosures, fingerprint(map(_digest, disclosures.values())))


def disclose(record: CommittedRecord, names: Iterable[str]) -> Disclosure:
    """Open the fields `names`; the others stay digests."""
    shown = set(names)
    unknown = shown - set(record.disclosures)
    if unknown:
        raise ValueError(f"the record has no field {sorted(unknown)[0]!r}")
    revealed = tuple(d for n, d in sorted(record.disclosures.items()) if n in shown)
    hidden = sorted(_digest(d) for n, d in record.disclosures.items() if n not in shown)
    return Disclosure(revealed, tuple(hidden))


def _open(disclosure: bytes) -> tuple[str, Any]:
    try:
        value = decode(disclosure)
    except EncodingError as exc:
        raise IntegrityError(f"a disclosure is not canonical CBOR: {exc}") from None
    if not isinstance(value, list) or len(value) != 3:
        raise IntegrityError("a disclosure must be [salt, name, value]")
    salt, name, field = value
    if not isinstance(salt, bytes) or len(salt) != SALT_SIZE:
        raise IntegrityError(f"a disclosure's salt must be {SALT_SIZE} bytes")
    if not isinstance(name, str) or not name:
        raise IntegrityError("a disclosure's field name must be non-empty text")
    return name, field


def verify_disclosure(disclosure: Disclosure, expected: bytes) -> dict[str, Any]:
    """The revealed fields, if the disclosure matches the fingerprint `expected`;
    raise `IntegrityError` otherwise."""
    if len(disclosure.revealed) + len(disclosure.hidden) > MAX_FIELDS:
        raise IntegrityError(f"a disclosable record has at most {MAX_FIELDS} fields")
    fields: dict[str, Any] = {}
    digests = []
    for d in disclosure.revealed:
        name, value = _open(d)
        if name in fields:
            raise IntegrityError(f"field {name!r} is disclosed twice")
        fields[name] = value
        digests.append(_digest(d))
    for h in disclosure.hidden:
        if len(h) != 32:
            raise IntegrityError("a hidden field's digest must be 32 bytes")
        digests.append(h)
    if len(set(digests)) != len(digests):
        raise IntegrityError("the same field digest appears twice")
    if fingerprint(digests) != expected:
        raise IntegrityError("the disclosed fields do not match the record's fingerprint")
    return fields
