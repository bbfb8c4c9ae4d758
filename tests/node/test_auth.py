"""RFC 9421 request signatures: accepted when right, 401 when not, 403 by role."""

from __future__ import annotations

import base64
import os

import httpx
import pytest
from node_helpers import Running

from sharechain.api.auth import NonceCache, sign_request, signature_base, verify_request
from sharechain.crypto.signing import SigningKey
from sharechain.errors import AuthenticationError

KEY = SigningKey.from_seed(bytes(range(32)))


def _verify(
    headers: dict[str, str],
    *,
    body: bytes = b"",
    now: float = 1_700_000_000.0,
    target: str = "/v1/status?",
    nonces: NonceCache | None = None,
    key: bytes | None = KEY.public_key,
) -> str:
    lower = {k.lower(): v for k, v in headers.items()}
    signed = verify_request(
        method="GET" if not body else "POST",
        authority="127.0.0.1:8000",
        target=target,
        headers=lower,
        body=body,
        public_key=lambda org: key if org == "hospital-a" else None,
        nonces=nonces or NonceCache(now=lambda: now - 30),
        now=lambda: now,
    )
    return signed.org


def _sign(body: bytes = b"", now: float = 1_700_000_000.0, **kw: object) -> dict[str, str]:
    return sign_request(
        KEY,
        "hospital-a",
        "POST" if body else "GET",
        "127.0.0.1:8000",
        "/v1/status",
        body,
        now=lambda: now,
        **kw,  # type: ignore[arg-type]
    )


def test_signature_base_follows_rfc9421() -> None:
    headers = _sign(rng=lambda n: bytes(n))
    assert headers["Signature-Input"] == (
        'sig1=("@method" "@authority" "@path" "@query");created=1700000000;'
        'expires=1700000060;nonce="AAAAAAAAAAAAAAAAAAAAAA";keyid="hospital-a";alg="ed25519"'
    )
    assert headers["Signature"].startswith("sig1=:") and headers["Signature"].endswith(":")
    assert _verify(headers) == "hospital-a"


def test_body_is_bound_by_content_digest() -> None:
    headers = _sign(b'{"a":1}')
    assert headers["Content-Digest"].startswith("sha-256=:")
    assert _verify(headers, body=b'{"a":1}') == "hospital-a"
    with pytest.raises(AuthenticationError, match="Content-Digest"):
        _verify(headers, body=b'{"a":2}')


def test_expired_future_and_replayed_signatures_are_refused() -> None:
    headers = _sign()
    with pytest.raises(AuthenticationError, match="expired"):
        _verify(headers, now=1_700_000_061.0)
    with pytest.raises(AuthenticationError, match="future"):
        _verify(headers, now=1_699_999_900.0)
    nonces = NonceCache(now=lambda: 1_699_999_990.0)
    _verify(headers, nonces=nonces)
    with pytest.raises(AuthenticationError, match="replayed"):
        _verify(headers, nonces=nonces)
    with pytest.raises(AuthenticationError, match="lifetime"):
        _verify(_sign(validity=3600))


def test_a_request_signed_before_the_node_started_is_refused() -> None:
    # The nonce cache is in memory: after a restart it cannot know which nonces
    # the previous process saw, so it refuses anything signed before it started.
    headers = _sign(now=1_700_000_000.0)
    restarted = NonceCache(now=lambda: 1_700_000_001.0)
    with pytest.raises(AuthenticationError, match="before this node started"):
        _verify(headers, now=1_700_000_002.0, nonces=restarted)
    assert _verify(_sign(now=1_700_000_002.0), now=1_700_000_002.0, nonces=restarted)


def test_forged_tampered_unknown_and_malformed_are_refused() -> None:
    headers = _sign()
    with pytest.raises(AuthenticationError, match="does not verify"):
        _verify(headers, target="/v1/blocks?")
    with pytest.raises(AuthenticationError, match="does not verify"):
        _verify(headers, key=SigningKey.from_seed(os.urandom(32)).public_key)
    with pytest.raises(AuthenticationError, match="not an active organisation"):
        _verify(headers, key=None)
    with pytest.raises(AuthenticationError, match="not signed"):
        _verify({})
    for bad in ('sig1=("@method"', "sig1=x", 'sig1=("@method");created=abc', "=()"):
        with pytest.raises(AuthenticationError):
            _verify({**headers, "Signature-Input": bad})
    partial = dict(headers)
    partial["Signature-Input"] = headers["Signature-Input"].replace(' "@query"', "")
    with pytest.raises(AuthenticationError, match="must cover @query"):
        _verify(partial)


def test_structured_field_strings_with_escapes_and_their_faults() -> None:
    # Signers need no escapes, but RFC 8941 strings may carry them: they must still
    # parse (and be signed as sent), and malformed ones be refused with the reason.
    covered = ("@method", "@authority", "@path", "@query")
    params = (
        '("@method" "@authority" "@path" "@query");created=1700000000;expires=1700000060;'
        'nonce="a \\"quoted\\" nonce \\\\ 0123";keyid="hospital-a";alg="ed25519"'
    )
    components = {
        "@method": "GET",
        "@authority": "127.0.0.1:8000",
        "@path": "/v1/status",
        "@query": "?",
    }
    signature = KEY.sign(b"", signature_base(components, covered, params))
    headers = {
        "Signature-Input": f"sig1={params}",
        "Signature": f"sig1=:{base64.b64encode(signature).decode()}:",
    }
    assert _verify(headers) == "hospital-a"
    for bad, reason in [
        (params.replace("a \\", "\u00e9 \\"), "non-ASCII"),
        (params.replace("\\\\", "\\n"), "bad escape"),
        (params.split(";nonce")[0] + ';nonce="open', "unterminated string"),
    ]:
        with pytest.raises(AuthenticationError, match=reason):
            _verify({**headers, "Signature-Input": f"sig1={bad}"})
    with pytest.raises(AuthenticationError, match="expected a key"):
        _verify({**headers, "Signature-Input": f"Sig1={params}"})


def test_api_answers_401_with_a_clear_body(orderer: Running) -> None:
    with httpx.Client(base_url=orderer.url) as http:
        reply = http.get("/v1/status")
        assert reply.status_code == 401
        assert reply.json()["error"] == "unauthenticated"
        assert "not signed" in reply.json()["detail"]
        assert "Accept-Signature" in reply.headers
    stranger = SigningKey.from_seed(os.urandom(32))
    from sharechain.api.client import NodeClient

    with (
        NodeClient(orderer.url, "hospital-a", stranger) as client,
        pytest.raises(AuthenticationError, match="does not verify"),
    ):
        client.status()
    with (
        NodeClient(orderer.url, "nobody", stranger) as client,
        pytest.raises(AuthenticationError, match="not an active organisation"),
    ):
        client.status()


def test_replayed_request_is_refused_by_the_node(orderer: Running) -> None:
    key = orderer.consortium.keys("bank-b").signing
    authority = orderer.url.removeprefix("http://")
    node = orderer.node.org
    headers = sign_request(key, "bank-b", "GET", authority, "/v1/status", node=node)
    with httpx.Client(base_url=orderer.url) as http:
        assert http.get("/v1/status", headers=headers).status_code == 200
        again = http.get("/v1/status", headers=headers)
        assert again.status_code == 401 and "replayed" in again.json()["detail"]


def test_roles_decide_what_a_caller_reads(orderer: Running) -> None:
    with orderer.client("bank-b") as member, orderer.client("regulator") as supervisor:
        http = member._http
        forbidden = http.get("/v1/requests", params={"org": "hospital-a"})
        assert forbidden.status_code == 403
        assert forbidden.json()["error"] == "forbidden"
        assert "supervisor" in forbidden.json()["detail"]
        assert http.get("/v1/alerts").status_code == 403
        assert http.get("/v1/audit", params={"org": "hospital-a"}).status_code == 403
        assert http.get("/v1/requests").status_code == 200
        assert http.get("/v1/catalogue").json() == {"datasets": []}
        sup = supervisor._http
        assert sup.get("/v1/requests", params={"org": "hospital-a"}).status_code == 200
        assert sup.get("/v1/alerts").status_code == 200
        trail = sup.get("/v1/audit", params={"org": "hospital-a"})
        assert trail.status_code == 200 and trail.json()["entries"][0]["height"] == 0


def test_a_rotated_key_is_refused_from_the_next_request_on(orderer: Running) -> None:
    from sharechain.api.client import NodeClient
    from sharechain.contracts import membership
    from sharechain.crypto.keyfile import OrgKeys
    from sharechain.ledger.transactions import sign_transaction

    old = orderer.consortium.keys("bank-b").signing
    new = OrgKeys.generate("bank-b")
    msg = membership.rotation_message("bank-b", new.signing.public_key, new.encryption_public)
    payload = {
        "sign_key": new.signing.public_key,
        "enc_key": new.encryption_public,
        "proof": new.signing.sign(membership.ROTATE_DOMAIN, msg),
    }
    with NodeClient(orderer.url, "bank-b", old) as client:
        client.status()  # the node has looked bank-b's key up (and may remember it)
        (receipt,) = client.submit(
            [sign_transaction(old, membership.ROTATE, "bank-b", payload).raw]
        )
        assert receipt.code == "valid"
        with pytest.raises(AuthenticationError, match="does not verify"):
            client.status()
    with NodeClient(orderer.url, "bank-b", new.signing) as client:
        assert client.status()["height"] == receipt.height
