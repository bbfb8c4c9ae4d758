"""The join, snapshot and status routes document their answers field by field."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from test_openapi import _document, _resolve


def _success(doc: dict[str, Any], path: str) -> dict[str, Any]:
    schema = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
    return _resolve(doc, schema["schema"])


def test_join_snapshots_and_status_have_response_schemas(node_app: FastAPI) -> None:
    doc = _document(node_app)
    join = _success(doc, "/v1/join")
    assert {"consortium", "genesis", "genesis_note", "ordering", "peers"} <= set(join["properties"])
    assert join["additionalProperties"] is False
    listing = _success(doc, "/v1/snapshots")
    entry = _resolve(doc, listing["properties"]["snapshots"]["items"])
    assert {"height", "content_hash", "size", "voucher"} <= set(entry["properties"])
    voucher = _resolve(doc, entry["properties"]["voucher"])
    assert "signature" in voucher["properties"]
    status = _success(doc, "/v1/status")
    disk = _resolve(doc, status["properties"]["disk"]["anyOf"][0])
    assert {"full", "free_bytes", "reserve_bytes"} <= set(disk["properties"])
    etcd = _resolve(doc, status["properties"]["etcd"]["anyOf"][0])
    assert "nospace" in etcd["properties"]
