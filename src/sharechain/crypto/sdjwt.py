"""SD-JWT (RFC 9901) credentials with Ed25519 and key binding.

An issuer signs a JWT (JWS compact form, `alg` `Ed25519` per RFC 9864) whose
selectively disclosable claims are replaced by digests: each such claim
becomes a *disclosure*, `base64url(JSON [salt, name, value])`, and the payload's
`_sd` array lists `base64url(SHA-256(disclosure))` (the ASCII of the base64url
text is hashed, RFC 9901 section 4.2.3), sorted; `_sd_alg` is `sha-256`. The
payload's `cnf.jwk` is the holder's public key. The issued credential is
`<JWT>~<disclosure>~...~`.

To present, the holder keeps the disclosures it wants to show and appends a
key-binding JWT (`typ` `kb+jwt`), signed with its key, holding `aud`, `nonce`,
`iat` and `sd_hash`, the SHA-256 of everything before it. A verifier checks
the issuer's signature, every disclosure against `_sd` (no duplicates, no
unknown ones), and the key binding, then rebuilds the claims.

Only flat object claims are disclosable here (no nested or array-element
disclosures); that is all membership credentials need. JOSE is `joserfc`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from sharechain.crypto.signing import SigningKey
from sharechain.errors import IntegrityError

__all__ = [
    "ALG",
    "KB_TYP",
    "SD_ALG",
    "SdJwtError",
    "disclosure_digest",
    "encode_disclosure",
    "issue",
    "present",
    "public_jwk",
    "verify_presentation",
]

ALG = "Ed25519"
SD_ALG = "sha-256"
KB_TYP = "kb+jwt"
TYP = "sharechain-membership+sd-jwt"
MAX_KB_AGE_S = 300
_RESERVED = frozenset({"_sd", "...", "_sd_alg", "cnf", "iss", "iat"})


class SdJwtError(IntegrityError):
    """An SD-JWT or its presentation is malformed, forged or not bound to its holder."""


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64u(text: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise SdJwtError(f"{what} is not base64url") from None


def _jwk(key: SigningKey) -> OKPKey:
    return OKPKey.import_key(
        {"kty": "OKP", "crv": "Ed25519", "x": _b64u(key.public_key), "d": _b64u(key.seed)}
    )


def public_jwk(public_key: bytes) -> dict[str, str]:
    """The RFC 8037 JWK of an Ed25519 public key."""
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64u(public_key)}


def encode_disclosure(salt: str, name: str, value: Any) -> str:
    """`base64url(JSON [salt, name, value])`, JSON as RFC 9901's examples print it."""
    return _b64u(json.dumps([salt, name, value], ensure_ascii=False).encode())


def disclosure_digest(disclosure: str) -> str:
    return _b64u(hashlib.sha256(disclosure.encode("ascii")).digest())


def _sign(header: Mapping[str, Any], payload: Mapping[str, Any], key: SigningKey) -> str:
    data = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return jws.serialize_compact(dict(header), data, _jwk(key), algorithms=[ALG])


def issue(
    claims: Mapping[str, Any],
    disclosable: Iterable[str],
    issuer_key: SigningKey,
    holder_public_key: bytes,
    *,
    issuer: str,
    now: Callable[[], float] = time.time,
    rng: Callable[[int], bytes] = os.urandom,
) -> str:
    """Issue `claims`, the names in `disclosable` selectively disclosable, bound to the holder."""
    hidden = set(disclosable)
    if hidden - set(claims):
        raise ValueError(f"no claim {sorted(hidden - set(claims))[0]!r} to make disclosable")
    if _RESERVED & set(claims):
        raise ValueError(f"claim names {sorted(_RESERVED & set(claims))} are reserved")
    payload: dict[str, Any] = {k: v for k, v in claims.items() if k not in hidden}
    disclosures = [encode_disclosure(_b64u(rng(16)), n, claims[n]) for n in sorted(hidden)]
    payload.update(
        iss=issuer,
        iat=int(now()),
        _sd=sorted(disclosure_digest(d) for d in disclosures),
        _sd_alg=SD_ALG,
        cnf={"jwk": public_jwk(holder_public_key)},
    )
    jwt = _sign({"alg": ALG, "typ": TYP}, payload, issuer_key)
    return "~".join([jwt, *disclosures, ""])


def _split(sd_jwt: str) -> tuple[str, list[str], str]:
    parts = sd_jwt.split("~")
    if len(parts) < 2 or not parts[0]:
        raise SdJwtError("an SD-JWT is <issuer JWT>~<disclosure>~...~[<key-binding JWT>]")
    return parts[0], parts[1:-1], parts[-1]


def present(
    sd_jwt: str,
    reveal: Iterable[str],
    holder_key: SigningKey,
    *,
    audience: str,
    nonce: str,
    now: Callable[[], float] = time.time,
) -> str:
    """Keep the disclosures of the claims in `reveal` and bind them to this audience and nonce."""
    jwt, disclosures, _ = _split(sd_jwt)
    wanted = set(reveal)
    kept = [d for d in disclosures if json.loads(_unb64u(d, "disclosure"))[1] in wanted]
    prefix = "~".join([jwt, *kept, ""])
    sd_hash = _b64u(hashlib.sha256(prefix.encode("ascii")).digest())
    body = {"iat": int(now()), "aud": audience, "nonce": nonce, "sd_hash": sd_hash}
    return prefix + _sign({"alg": ALG, "typ": KB_TYP}, body, holder_key)


def _verified(token: str, public_key: bytes, what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        key = OKPKey.import_key(dict[str, str | list[str]](public_jwk(public_key)))
        obj = jws.deserialize_compact(token, key, algorithms=[ALG])
        payload = json.loads(obj.payload)
    except (JoseError, ValueError) as exc:
        raise SdJwtError(f"the {what} signature does not verify: {exc}") from None
    if not isinstance(payload, dict):
        raise SdJwtError(f"the {what} payload is not a JSON object")
    return obj.headers(), payload


def _open(disclosure: str) -> tuple[str, Any]:
    try:
        value = json.loads(_unb64u(disclosure, "disclosure"))
    except ValueError:
        raise SdJwtError("a disclosure is not base64url JSON") from None
    if not isinstance(value, list) or len(value) != 3 or not isinstance(value[1], str):
        raise SdJwtError("a disclosure must be [salt, claim name, value]")
    if not isinstance(value[0], str) or value[1] in _RESERVED:
        raise SdJwtError(f"disclosure of {value[1]!r}: bad salt or reserved claim name")
    return value[1], value[2]


def verify_presentation(
    presentation: str,
    issuer_public_key: bytes,
    *,
    audience: str,
    nonce: str,
    now: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """The claims shown, if the presentation holds; raise `SdJwtError` with the reason."""
    jwt, disclosures, kb = _split(presentation)
    _, payload = _verified(jwt, issuer_public_key, "issuer")
    if payload.get("_sd_alg") != SD_ALG:
        raise SdJwtError(f"_sd_alg must be {SD_ALG}, got {payload.get('_sd_alg')!r}")
    sd = payload.get("_sd", [])
    if not isinstance(sd, list) or len(set(sd)) != len(sd):
        raise SdJwtError("the issuer's _sd digests are not a list of distinct digests")
    claims = {k: v for k, v in payload.items() if k not in ("_sd", "_sd_alg")}
    seen: set[str] = set()
    for d in disclosures:
        digest = disclosure_digest(d)
        if digest in seen:
            raise SdJwtError("the same disclosure is presented twice")
        seen.add(digest)
        if digest not in sd:
            raise SdJwtError("a disclosure was altered or not issued (its digest is not in _sd)")
        name, value = _open(d)
        if name in claims:
            raise SdJwtError(f"claim {name!r} is disclosed twice or clashes with a plain claim")
        claims[name] = value
    if not kb:
        raise SdJwtError("the presentation lacks its key-binding JWT (holder binding)")
    jwk = payload.get("cnf", {}).get("jwk", {}) if isinstance(payload.get("cnf"), dict) else {}
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise SdJwtError("the credential names no Ed25519 holder key (cnf.jwk)")
    header, body = _verified(kb, _unb64u(str(jwk.get("x", "")), "cnf.jwk.x"), "key-binding")
    if header.get("typ") != KB_TYP:
        raise SdJwtError(f"the key-binding JWT's typ must be {KB_TYP}")
    prefix = presentation[: len(presentation) - len(kb)]
    if body.get("sd_hash") != _b64u(hashlib.sha256(prefix.encode("ascii")).digest()):
        raise SdJwtError("the key-binding JWT is over other disclosures (sd_hash)")
    if body.get("aud") != audience or body.get("nonce") != nonce:
        raise SdJwtError("the key-binding JWT is for another audience or nonce (replay)")
    iat = body.get("iat")
    if not isinstance(iat, int) or abs(now() - iat) > MAX_KB_AGE_S:
        raise SdJwtError(f"the key-binding JWT is not from the last {MAX_KB_AGE_S} s")
    return claims
