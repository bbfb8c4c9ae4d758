"""SD-JWT membership credentials: RFC 9901's published disclosure byte for byte, the
`sd-jwt` package as a second implementation both ways, and every bad input refused."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest

from sharechain.crypto import sdjwt
from sharechain.crypto.sdjwt import (
    SdJwtError,
    disclosure_digest,
    encode_disclosure,
    issue,
    present,
    public_jwk,
    verify_presentation,
)
from sharechain.crypto.signing import SigningKey

SUPERVISOR = SigningKey.from_seed(bytes([1]) * 32)
HOLDER = SigningKey.from_seed(bytes([2]) * 32)
NOW = 1_750_000_000.0
CLAIMS = {
    "sub": "bank-a",
    "consortium": "example",
    "roles": ["member"],
    "licensed": "bank",
    "member_since": 1_700_000_000,
}
DISCLOSABLE = ("roles", "licensed", "member_since")


def _rng() -> Callable[[int], bytes]:
    counter = itertools.count(1)
    return lambda n: next(counter).to_bytes(n, "big")


def _issued() -> str:
    return issue(
        CLAIMS,
        DISCLOSABLE,
        SUPERVISOR,
        HOLDER.public_key,
        issuer="sharechain/example/regulator",
        now=lambda: NOW,
        rng=_rng(),
    )


def _present(cred: str, reveal: tuple[str, ...] = ("licensed",)) -> str:
    return present(cred, reveal, HOLDER, audience="partner", nonce="n-1", now=lambda: NOW)


def _verify(p: str, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"audience": "partner", "nonce": "n-1", "now": lambda: NOW}
    return verify_presentation(p, SUPERVISOR.public_key, **(args | kw))


def test_rfc9901_disclosure_and_digest_byte_for_byte() -> None:
    # RFC 9901 section 4.2.1 and 4.2.3.
    d = encode_disclosure("_26bc4LT-ac6q2KI6cBW5es", "family_name", "Möbius")
    assert d == "WyJfMjZiYzRMVC1hYzZxMktJNmNCVzVlcyIsICJmYW1pbHlfbmFtZSIsICJNw7ZiaXVzIl0"
    assert disclosure_digest(d) == "X9yH0Ajrdm1Oij4tWso9UzzKJvPoDxwmuEcO3XAdRC0"


def test_issue_present_verify_shows_only_chosen_claims() -> None:
    cred = _issued()
    assert cred.count("~") == 4 and cred.endswith("~")
    claims = _verify(_present(cred))
    assert claims["licensed"] == "bank" and claims["sub"] == "bank-a"
    assert "roles" not in claims and "member_since" not in claims
    assert claims["cnf"] == {"jwk": public_jwk(HOLDER.public_key)}
    everything = _verify(_present(cred, DISCLOSABLE))
    assert {k: everything[k] for k in CLAIMS} == CLAIMS


def _tamper_payload(cred: str, change: Callable[[dict[str, Any]], None]) -> str:
    """Re-issue the credential's payload, changed, under the issuer's real key."""
    jwt, *rest = cred.split("~")
    payload = json.loads(sdjwt._unb64u(jwt.split(".")[1], "payload"))
    change(payload)
    return "~".join([sdjwt._sign({"alg": "Ed25519", "typ": sdjwt.TYP}, payload, SUPERVISOR), *rest])


def test_altered_disclosure_is_refused() -> None:
    cred = _issued()
    jwt, *ds = cred.split("~")
    forged = encode_disclosure("AAAA", "licensed", "insurer")
    p = _present("~".join([jwt, forged, *ds]), ("licensed",))
    with pytest.raises(SdJwtError, match="not in _sd"):
        _verify(p)


def test_duplicate_digests_and_disclosures_are_refused() -> None:
    cred = _tamper_payload(_issued(), lambda p: p["_sd"].append(p["_sd"][0]))
    with pytest.raises(SdJwtError, match="distinct"):
        _verify(_present(cred))
    jwt, d1, *rest = _issued().split("~")
    twice = "~".join([jwt, d1, d1, *rest])
    with pytest.raises(SdJwtError, match="twice"):
        _verify(_present(twice, DISCLOSABLE))


def test_wrong_sd_alg_is_refused() -> None:
    cred = _tamper_payload(_issued(), lambda p: p.update(_sd_alg="sha-512"))
    with pytest.raises(SdJwtError, match="_sd_alg must be sha-256"):
        _verify(_present(cred))


def test_missing_or_wrong_key_binding_is_refused() -> None:
    cred = _issued()
    with pytest.raises(SdJwtError, match="lacks its key-binding JWT"):
        _verify(cred)
    p = _present(cred)
    with pytest.raises(SdJwtError, match="another audience"):
        _verify(p, audience="someone-else")
    with pytest.raises(SdJwtError, match="another audience"):
        _verify(p, nonce="n-2")
    with pytest.raises(SdJwtError, match="last 300 s"):
        _verify(p, now=lambda: NOW + 3600)
    thief = present(
        cred, ("licensed",), SUPERVISOR, audience="partner", nonce="n-1", now=lambda: NOW
    )
    with pytest.raises(SdJwtError, match="key-binding signature"):
        _verify(thief)
    jwt, *ds, kb = p.split("~")
    extra = next(d for d in cred.split("~")[1:-1] if d not in ds)
    with pytest.raises(SdJwtError, match="sd_hash"):
        _verify("~".join([jwt, *ds, extra, kb]))


def test_forged_issuer_signature_is_refused() -> None:
    p = _present(_issued())
    with pytest.raises(SdJwtError, match="issuer signature"):
        verify_presentation(p, HOLDER.public_key, audience="partner", nonce="n-1", now=lambda: NOW)
    with pytest.raises(SdJwtError, match="<issuer JWT>"):
        _verify("no-tildes")


def test_bad_issuance_inputs() -> None:
    with pytest.raises(ValueError, match="no claim"):
        issue(CLAIMS, ["age"], SUPERVISOR, HOLDER.public_key, issuer="x")
    with pytest.raises(ValueError, match="reserved"):
        issue({"_sd": 1}, [], SUPERVISOR, HOLDER.public_key, issuer="x")


# -- the `sd-jwt` package (openwallet-foundation-labs/sd-jwt-python) as a second implementation


def _jwcrypto_key(key: SigningKey, private: bool) -> Any:
    from jwcrypto.jwk import JWK

    jwk = public_jwk(key.public_key)
    if private:
        jwk["d"] = sdjwt._b64u(key.seed)
    return JWK(**jwk)


def test_sd_jwt_package_verifies_our_credentials() -> None:
    from sd_jwt import holder as holder_mod
    from sd_jwt import verifier

    cred = _issued()
    v = verifier.SDJWTVerifier(cred, lambda iss, header: _jwcrypto_key(SUPERVISOR, False))
    out = v.get_verified_payload()
    assert {k: out[k] for k in CLAIMS} == CLAIMS
    # Their holder presents (key binding with Ed25519); we verify.
    holder = holder_mod.SDJWTHolder(cred)
    holder.create_presentation(
        {"licensed": True},
        nonce="n-1",
        aud="partner",
        holder_key=_jwcrypto_key(HOLDER, True),
        sign_alg="Ed25519",
    )
    claims = verify_presentation(
        holder.sd_jwt_presentation,
        SUPERVISOR.public_key,
        audience="partner",
        nonce="n-1",
        now=lambda: json.loads(
            sdjwt._unb64u(holder.sd_jwt_presentation.split("~")[-1].split(".")[1], "kb")
        )["iat"],
    )
    assert claims["licensed"] == "bank" and "roles" not in claims
