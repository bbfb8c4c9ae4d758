"""The one codec of the REST API and the command line: records to JSON and back.

`jsonable` renders records as the API sends them: dataclasses to objects with
their fields in order, bytes to lowercase hex, tuples to arrays; an
inclusion proof and an audit entry as their own `to_json` (the header also
as CBOR, so a verifier can hash it). The models of `sharechain.api.models`
describe exactly this JSON, and the node checks each answer against them.
`to_json` is the same rendering made for people and scripts (the command
line's `--json`): block times gain an ISO 8601 twin (`created_at_iso`), a
grant its `effective_status`, a policy its canonical map and a lineage its
edges as objects. Clients rebuild records with `from_jsonable`, guided by
the record's field types, and proofs and audit entries with
`proof_from_json` and `entry_from_json`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sharechain.codec import decode
from sharechain.contracts.policies import Policy, policy_to_value
from sharechain.contracts.queries import AuditEntry, GrantView, Lineage
from sharechain.errors import SharechainError
from sharechain.ledger.blocks import decode_header
from sharechain.ledger.proofs import TxProof

__all__ = ["entry_from_json", "from_jsonable", "iso", "jsonable", "proof_from_json", "to_json"]

_TIMES = ("created_at", "issued_at", "expires_at", "timestamp", "window_start")
"""Fields in block-time ms that `to_json` renders in ISO 8601 too."""


def iso(ms: int) -> str:
    """Block time in ms as ISO 8601 UTC."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def jsonable(value: Any) -> Any:
    """Records as the API sends them (see the module docstring)."""
    return _render(value, readable=False)


def to_json(value: Any) -> Any:
    """Records as the command line shows them: `jsonable` with readable extras."""
    return _render(value, readable=True)


def _render(value: Any, *, readable: bool) -> Any:
    if isinstance(value, AuditEntry | TxProof):
        out = value.to_json()
        if readable and isinstance(value, AuditEntry):
            out["time"] = iso(value.timestamp)
        return out
    if readable:
        if isinstance(value, GrantView):
            return {**_render(value.grant, readable=True), "effective_status": value.status}
        if isinstance(value, Lineage):
            return {
                "root": value.root,
                "nodes": [_render(n, readable=True) for n in value.nodes],
                "edges": [{"from": a, "to": b, "kind": k} for a, b, k in value.edges],
            }
        if isinstance(value, Policy):
            return policy_to_value(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            fields[f.name] = _render(v, readable=readable)
            if readable and f.name in _TIMES and isinstance(v, int):
                fields[f"{f.name}_iso"] = iso(v)
        return fields
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [_render(v, readable=readable) for v in value]
    if isinstance(value, dict):
        return {str(k): _render(v, readable=readable) for k, v in value.items()}
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
        str(value.get("reason", "")),
        None
        if value.get("result_path") is None
        else tuple(bytes.fromhex(p) for p in value["result_path"]),
    )


def entry_from_json(value: Mapping[str, Any]) -> AuditEntry:
    """An audit entry from its JSON (`AuditEntry.to_json`)."""
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
        str(value.get("operator", "")),
    )
