"""API fuzzing with schemathesis against the node's OpenAPI document: no 5xx, no crash.

Requests are generated from the schema and signed with a member's key (so the
fuzzing reaches past authentication), plus unsigned ones; every answer must be
a deliberate 2xx/4xx that the document describes (its status, media type and
body schema), and the node must still be healthy afterwards. Bodies
documented as `application/cbor` are generated too (see `_cbor`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import cbor2
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from node_helpers import Running, run_node, shutdown
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sharechain.api.auth import sign_request
from sharechain.crypto.signing import SigningKey


class _Sign(requests.auth.AuthBase):
    def __init__(self, org: str, key: SigningKey, node: str) -> None:
        self.org, self.key, self.node = org, key, node

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        url = urlsplit(r.url or "")
        body = r.body.encode() if isinstance(r.body, str) else (r.body or b"")
        target = url.path + ("?" + url.query if url.query else "")
        r.headers.update(
            sign_request(
                self.key, self.org, r.method or "GET", url.netloc, target, body, node=self.node
            )
        )
        return r


_cbor_bodies: list[bytes] = []
CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]


@schemathesis.serializer("application/cbor")
def _cbor(ctx: Any, value: Any) -> bytes:
    """CBOR of a generated value; text envelopes become byte strings, as the schema means."""
    if isinstance(value, dict) and isinstance(value.get("txs"), list):
        txs = [t.encode() if isinstance(t, str) else t for t in value["txs"]]
        value = {**value, "txs": txs}
    _cbor_bodies.append(body := cbor2.dumps(value))
    return body


@pytest.fixture(scope="module")
def fuzz_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    from node_helpers import ORGS, Consortium

    from sharechain.storage.datadir import init_consortium

    base = tmp_path_factory.mktemp("fuzz")
    init_consortium(base / "consortium", ORGS, consortium="fuzz")
    running = run_node(Consortium(base / "consortium", base), "hospital-a", max_wait=0.005)
    try:
        yield running
    finally:
        shutdown(running)


def test_fuzz_every_operation_without_server_errors(fuzz_node: Running) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_node.url}/openapi.json")
    auth = _Sign("bank-b", fuzz_node.consortium.keys("bank-b").signing, fuzz_node.node.org)
    failures: list[str] = []
    checked = 0
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()

            @settings(
                max_examples=6,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy())
            def run(case: schemathesis.Case) -> None:
                nonlocal checked
                for signer in (auth, None):
                    reply = case.call(session=session, auth=signer, timeout=20)
                    checked += 1
                    if reply.status_code >= 500:
                        failures.append(
                            f"{case.method} {case.formatted_path}: {reply.status_code} "
                            f"{reply.text[:200]}"
                        )
                    try:  # the answer is what the document says (status and body)
                        case.validate_response(reply, checks=CONFORMANCE)
                    except FailureGroup as exc:  # one failure per check that found a fault
                        failures.append(
                            f"{case.method} {case.formatted_path}: {reply.status_code} "
                            f"does not match the document: {str(exc)[:300]}"
                        )

            run()
    assert failures == []
    assert checked > 60
    assert _cbor_bodies, "no CBOR body was generated"
    with fuzz_node.client() as client:
        assert client.ready()["ready"] is True
