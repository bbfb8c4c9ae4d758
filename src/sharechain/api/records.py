"""The wire shape of the chain's records, derived from the records themselves.

A contract's record (`Dataset`, `Grant`, `KeyEpoch`, ...) is a frozen
dataclass; on the wire it is a JSON object with the same fields in the same
order, bytes as lowercase hex and tuples as arrays (what `api.wire.jsonable`
writes). `record_model` builds the pydantic model of that object from the
dataclass's field types and field docstrings, so the OpenAPI document
describes every record field by field without a second copy of it that
could drift. The few records whose wire form is their own `to_json` (an
inclusion proof carries its header as CBOR too) have a model written out
here instead, under the record's name (`TxProof`, `AuditEntry`).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import itertools
import textwrap
import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from sharechain.contracts import queries
from sharechain.ledger import proofs

__all__ = ["WIRE", "AuditEntry", "BlockHeader", "Hex", "Model", "TxProof", "record_model"]

WIRE = ConfigDict(extra="forbid")
"""Every wire model refuses unknown fields: a reply that grew a field the model
lacks fails the server's own check (and the tests) instead of vanishing."""

Hex = Annotated[
    str,
    Field(pattern="^(?:[0-9a-f]{2})*$", description="Bytes as lowercase hex.", examples=["00ff"]),
]
"""Bytes on the wire: lowercase hex, two digits per byte."""


class Model(BaseModel):
    """Base of the API's bodies (strict about unknown fields)."""

    model_config = WIRE


class BlockHeader(Model):
    """A block header, field by field (its signed form is `header_cbor`)."""

    height: int
    prev_hash: Hex
    tx_root: Hex
    results_root: Hex
    """RFC 6962 root over `CBOR([tx_id, code, reason])` per transaction."""
    state_delta_hash: Hex
    timestamp: int
    """Block time in ms since the Unix epoch."""
    orderer: str


class TxProof(Model):
    """RFC 9162 inclusion proof of a transaction in its block (`TxProof.to_json`)."""

    tx_id: Hex
    height: int
    """Height of the block holding the transaction."""
    leaf_index: int
    """Position of the transaction in its block."""
    tree_size: int
    """Number of transactions in the block."""
    audit_path: list[Hex]
    """RFC 9162 audit path, bottom first."""
    tx_root: Hex
    """The Merkle root the path leads to (the header's `tx_root`)."""
    code: str
    """The transaction's validation code."""
    reason: str = ""
    """Why it was refused; empty when valid."""
    result_path: list[Hex] | None = None
    """RFC 9162 audit path of `CBOR([tx_id, code, reason])` to the header's
    `results_root` (the code proved); null when the proof does not carry one."""
    header: BlockHeader
    header_cbor: Hex
    """The header as canonical CBOR: hash it to get `header_hash`."""
    header_hash: Hex


class AuditEntry(Model):
    """One transaction in an audit trail (`AuditEntry.to_json`)."""

    tx_id: Hex
    height: int
    index: int
    timestamp: int
    """Block time in ms since the Unix epoch."""
    type: str
    sender: str
    operator: str = ""
    """The sender's person who took the action (a console's operator), or empty."""
    code: str
    """Validation code (refused attempts are in the trail too)."""
    reason: str
    """Why it was refused; empty when valid."""
    proof: TxProof | None
    """Inclusion proof of the transaction in its block (absent when not asked for)."""


_WRITTEN_OUT: dict[type, type[BaseModel]] = {
    proofs.TxProof: TxProof,
    queries.AuditEntry: AuditEntry,
}
"""Records whose wire form is their own `to_json` rather than their fields."""


def _field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (as `use_attribute_docstrings` reads)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # no source (a frozen build): the schema just has no text
        return {}
    body = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef)).body
    docs: dict[str, str] = {}
    for field, text in itertools.pairwise(body):
        if (
            isinstance(field, ast.AnnAssign)
            and isinstance(field.target, ast.Name)
            and isinstance(text, ast.Expr)
            and isinstance(text.value, ast.Constant)
            and isinstance(text.value.value, str)
        ):
            docs[field.target.id] = inspect.cleandoc(text.value.value)
    return docs


def _wire_type(tp: Any) -> Any:
    """The JSON type of a record field's type: bytes to hex, tuples to arrays."""
    if tp is bytes:
        return Hex
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return record_model(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return list[_wire_type(args[0])]  # type: ignore[misc]  # built at run time
        return tuple[tuple(_wire_type(a) for a in args)]  # type: ignore[misc]  # built at run time
    if origin in (typing.Union, types.UnionType):
        return functools.reduce(lambda a, b: a | b, (_wire_type(a) for a in args))
    if origin is dict:
        return dict[args[0], _wire_type(args[1])]  # type: ignore[misc,valid-type]  # built at run time
    return tp


@functools.cache
def record_model(cls: type) -> type[BaseModel]:
    """The wire model of the dataclass record `cls` (same name, fields and order)."""
    if cls in _WRITTEN_OUT:
        return _WRITTEN_OUT[cls]
    hints = typing.get_type_hints(cls)
    docs = _field_docs(cls)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        # A field named like a BaseModel attribute (`Dataset.schema`) is kept under
        # another Python name; its JSON name, the alias, stays the record's.
        key = f"{f.name}_" if hasattr(BaseModel, f.name) else f.name
        spec = Field(alias=f.name, description=docs.get(f.name))
        fields[key] = (_wire_type(hints[f.name]), spec)
    model: type[BaseModel] = create_model(
        cls.__name__, __config__=WIRE, __doc__=cls.__doc__, __module__=__name__, **fields
    )
    return model
