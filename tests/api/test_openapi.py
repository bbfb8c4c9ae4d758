"""The OpenAPI document of a real node describes every answer: success and refusal.

Each 2xx answer of every operation has a schema (JSON, CBOR, a blob or
Prometheus text), and each 4xx names the JSON error body
`{"error": ..., "detail": ...}` (or a body that extends it).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

METHODS = ("get", "put", "post", "delete", "head", "patch")


def _document(app: FastAPI) -> dict[str, Any]:
    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            return await client.get("/openapi.json")

    reply = asyncio.run(fetch())
    assert reply.status_code == 200
    doc: dict[str, Any] = reply.json()
    return doc


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = doc["components"]["schemas"][name]
    return schema


def _variants(doc: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    schema = _resolve(doc, schema)
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    return [_resolve(doc, s) for s in alternatives] if alternatives else [schema]


def _routes(routes: list[BaseRoute]) -> list[APIRoute]:
    """The API routes, those of included routers too (FastAPI keeps those apart)."""
    found: list[APIRoute] = []
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            found += _routes(included.routes)
        elif isinstance(route, APIRoute):
            found.append(route)
    return found


def test_the_document_covers_every_route(node_app: FastAPI) -> None:
    doc = _document(node_app)
    documented = {(m, p) for m, p, _ in _operations(doc)}
    served = {(m, r.path) for r in _routes(node_app.routes) for m in r.methods or ()}
    assert served - documented == set()
    assert len(served) > 30


def test_every_success_has_a_schema(node_app: FastAPI) -> None:
    doc = _document(node_app)
    empty = []
    for method, path, op in _operations(doc):
        successes = {s: r for s, r in op["responses"].items() if s.startswith("2")}
        assert successes, f"{method} {path} documents no success"
        for status, response in successes.items():
            content = response.get("content", {})
            if method == "HEAD":  # no body by definition: the headers are the answer
                assert response.get("headers"), f"{method} {path} {status}: no headers"
                continue
            if not content:
                empty.append(f"{method} {path} {status}: no content")
            for media, body in content.items():
                if not body.get("schema"):
                    empty.append(f"{method} {path} {status} {media}: empty schema")
    assert empty == []


def test_every_refusal_names_the_error_body(node_app: FastAPI) -> None:
    doc = _document(node_app)
    wrong = []
    for method, path, op in _operations(doc):
        refusals = {s: r for s, r in op["responses"].items() if s.startswith("4")}
        assert refusals, f"{method} {path} documents no refusal"
        for status, response in refusals.items():
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            if schema is None:
                wrong.append(f"{method} {path} {status}: no JSON body")
                continue
            for variant in _variants(doc, schema):
                if not {"error", "detail"} <= set(variant.get("required", ())):
                    wrong.append(f"{method} {path} {status}: {variant.get('title')} lacks error")
    assert wrong == []


def test_signed_routes_document_401_and_open_ones_do_not(node_app: FastAPI) -> None:
    doc = _document(node_app)
    for method, path, op in _operations(doc):
        open_route = path in ("/v1/health", "/v1/ready", "/metrics")
        assert ("401" in op["responses"]) is not open_route, f"{method} {path}"


def test_hex_fields_are_described_as_hex(node_app: FastAPI) -> None:
    doc = _document(node_app)
    dataset = doc["components"]["schemas"]["Dataset"]
    assert dataset["properties"]["plaintext_digest"]["pattern"] == "^(?:[0-9a-f]{2})*$"
    assert "schema" in dataset["properties"]  # the JSON name, not the Python one
    assert dataset["properties"]["owner"]["description"] == "The providing organisation."
