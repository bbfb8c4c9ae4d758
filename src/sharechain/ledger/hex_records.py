"""The JSON form of a signed statement: a frozen dataclass whose fields are text,
integers and byte strings, the byte strings written as hex.

Attestations (`ledger.attestations`) and snapshot vouchers
(`storage.snapshot_evidence`) travel this way; both carry a height and 32-byte
hashes, which reading checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

from sharechain.errors import EncodingError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["from_hex_json", "to_hex_json"]

R = TypeVar("R", bound="DataclassInstance")

_READERS: dict[str, Callable[[Any], Any]] = {"str": str, "int": int, "bytes": bytes.fromhex}
"""A field's annotation (a string: the modules use postponed annotations) -> its reader."""


def to_hex_json(record: DataclassInstance) -> dict[str, Any]:
    """`record`'s fields in their order, byte strings as hex."""
    out: dict[str, Any] = {}
    for f in fields(record):
        value = getattr(record, f.name)
        out[f.name] = value.hex() if isinstance(value, bytes) else value
    return out


def from_hex_json(cls: type[R], value: Any, what: str, hashes: tuple[str, ...]) -> R:
    """Read `to_hex_json`'s form back, raising `EncodingError` ("malformed `what`: ...")
    for a missing or ill-typed field, a negative `height` or a field of `hashes`
    that is not 32 bytes."""
    try:
        parsed = {f.name: _READERS[str(f.type)](value[f.name]) for f in fields(cls)}
    except (KeyError, TypeError, ValueError) as exc:
        raise EncodingError(f"malformed {what}: {exc}") from None
    if parsed["height"] < 0 or any(len(parsed[h]) != 32 for h in hashes):
        raise EncodingError(f"malformed {what}: bad height or hash length")
    return cls(**parsed)
