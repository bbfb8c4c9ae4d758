"""The one codec of the REST API: records to JSON and back.

The server renders records with `jsonable` (dataclasses to objects, bytes to
hex, tuples to lists); clients rebuild them with `from_jsonable`, guided by the
record's field types. Inclusion proofs and audit entries carry a block header
as CBOR, rebuilt by `proof_from_json` and `entry_from_json`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from sharechain.codec import decode
from sharechain.contracts.queries import AuditEntry
from sharechain.errors import SharechainError
from sharechain.ledger.blocks import decode_header
from sharechain.ledger.proofs import TxProof

__all__ = ["entry_from_json", "from_jsonable", "jsonable", "proof_from_json"]


def jsonable(value: Any) -> Any:
    """Records as JSON: dataclasses to objects, bytes to hex, tuples to lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def from_jsonable(tp: Any, value: Any) -> Any:
    """Rebuild a record of type `tp` from its JSON (`jsonable`).

    Hex strings become bytes and lists become tuples where the record's field
    types say so; nested records are rebuilt the same way.
    """
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise SharechainError(f"the node sent {type(value).__name__}, not a {tp.__name__}")
        hints = typing.get_type_hints(tp)
        return tp(
            **{
                f.name: from_jsonable(hints[f.name], value[f.name])
                for f in dataclasses.fields(tp)
                if f.name in value
            }
        )
    origin = typing.get_origin(tp)
    if tp is bytes:
        return bytes.fromhex(value)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_jsonable(args[0], v) for v in value)
        return tuple(from_jsonable(a, v) for a, v in zip(args, value, strict=True))
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return from_jsonable(inner, value)
    return value


def proof_from_json(value: Mapping[str, Any]) -> TxProof:
    """An inclusion proof from its JSON (`TxProof.to_json`); the header comes from its CBOR."""
    return TxProof(
        bytes.fromhex(value["tx_id"]),
        int(value["height"]),
        int(value["leaf_index"]),
        int(value["tree_size"]),
        tuple(bytes.fromhex(p) for p in value["audit_path"]),
        decode_header(decode(bytes.fromhex(value["header_cbor"]))),
        str(value["code"]),
    )


def entry_from_json(value: Mapping[str, Any]) -> AuditEntry:
    proof = value.get("proof")
    return AuditEntry(
        bytes.fromhex(value["tx_id"]),
        int(value["height"]),
        int(value["index"]),
        int(value["timestamp"]),
        str(value["type"]),
        str(value["sender"]),
        str(value["code"]),
        str(value["reason"]),
        None if proof is None else proof_from_json(proof),
    )
