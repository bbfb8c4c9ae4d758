"""The header-first signature check (`verify_headers`) and the body check after it."""

from __future__ import annotations

import hashlib

import pytest

from sharechain.api.auth import (
    NODE_COMPONENT,
    NonceCache,
    check_body_digest,
    sign_request,
    verify_headers,
)
from sharechain.crypto.signing import SigningKey
from sharechain.errors import AuthenticationError

KEY = SigningKey.from_seed(bytes(range(32)))
NOW = 1_700_000_000.0


def _sign(body: bytes = b"", node: str | None = "bank-b") -> dict[str, str]:
    headers = sign_request(
        KEY, "hospital-a", "POST", "127.0.0.1:8000", "/v1/txs", body, node=node, now=lambda: NOW
    )
    return {k.lower(): v for k, v in headers.items()}


def _check(headers: dict[str, str], *, has_body: bool, node: str | None = "bank-b") -> object:
    return verify_headers(
        method="POST",
        authority="127.0.0.1:8000",
        target="/v1/txs?",
        headers=headers,
        has_body=has_body,
        public_key=lambda org: KEY.public_key if org == "hospital-a" else None,
        nonces=NonceCache(now=lambda: NOW - 1),
        node=node,
        now=lambda: NOW,
    )


def test_the_signature_names_the_node_and_is_checked_without_the_body() -> None:
    headers = _sign(b"payload")
    assert headers[NODE_COMPONENT] == "bank-b"
    assert f'"{NODE_COMPONENT}"' in headers["signature-input"]
    signed = _check(headers, has_body=True)
    check_body_digest(signed, hashlib.sha256(b"payload").digest())  # type: ignore[arg-type]
    with pytest.raises(AuthenticationError, match="does not match the request body"):
        check_body_digest(signed, hashlib.sha256(b"payloaD").digest())  # type: ignore[arg-type]


def test_a_request_for_another_node_is_refused() -> None:
    with pytest.raises(AuthenticationError, match="signed for node 'bank-b'"):
        _check(_sign(), has_body=False, node="regulator")


def test_a_signature_naming_no_node_is_refused_by_a_node() -> None:
    with pytest.raises(AuthenticationError, match="must cover sharechain-node"):
        _check(_sign(node=None), has_body=False)


def test_a_changed_node_header_breaks_the_signature() -> None:
    headers = {**_sign(), NODE_COMPONENT: "regulator"}
    with pytest.raises(AuthenticationError, match="does not verify"):
        _check(headers, has_body=False, node="regulator")


def test_a_body_needs_a_covered_digest() -> None:
    with pytest.raises(AuthenticationError, match="must cover content-digest"):
        _check(_sign(), has_body=True)
    signed = _check(_sign(), has_body=False)
    check_body_digest(signed, hashlib.sha256(b"").digest())  # type: ignore[arg-type]
    with pytest.raises(AuthenticationError, match="must cover content-digest"):
        check_body_digest(signed, hashlib.sha256(b"smuggled").digest())  # type: ignore[arg-type]
