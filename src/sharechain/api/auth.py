"""Signed API requests: HTTP Message Signatures (RFC 9421) with Ed25519.

Every request to a node's `/v1` API is signed by an organisation's Ed25519
key. The signer covers the method, the authority, the path, the query and,
when there is a body, its `Content-Digest` (RFC 9530, SHA-256); the
signature parameters carry `created`, `expires`, a random `nonce`, the
organisation id as `keyid` and `alg="ed25519"`::

    Content-Digest: sha-256=:<base64 of SHA-256(body)>:
    Signature-Input: sig1=("@method" "@authority" "@path" "@query" \
        "content-digest");created=1700000000;expires=1700000060;\
        nonce="...";keyid="hospital-a";alg="ed25519"
    Signature: sig1=:<base64 Ed25519 signature of the signature base>:

The node checks the signature with the organisation's *current* key as the
chain records it (so a removed organisation or a rotated-out key is refused
at once), refuses signatures that are not yet valid, expired, or valid for
longer than `MAX_VALIDITY`, and remembers every nonce until its signature
expires so a captured request cannot be replayed. Ed25519 signs the
signature base itself, as RFC 9421 section 3.3.6 says, so any conforming
implementation can produce or check these signatures.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from sharechain.api._structured import parse_dictionary
from sharechain.crypto.signing import SigningKey, verify
from sharechain.errors import AuthenticationError, InvalidSignatureError, QuotaError

__all__ = [
    "MAX_SKEW",
    "MAX_VALIDITY",
    "NODE_COMPONENT",
    "REQUIRED_COMPONENTS",
    "NonceCache",
    "SignedRequest",
    "check_body_digest",
    "content_digest",
    "sign_request",
    "signature_base",
    "verify_headers",
    "verify_request",
]

REQUIRED_COMPONENTS = ("@method", "@authority", "@path", "@query")
"""Components every signature must cover (plus `content-digest` when there is a body)."""
MAX_VALIDITY = 300
"""Longest accepted lifetime of a signature (`expires - created`), in seconds."""
MAX_SKEW = 30
"""How far in the future `created` may be (clock skew between organisations), in seconds."""
PER_MEMBER_IN_FLIGHT = 100_000
"""Nonces one organisation may hold in a node's `NonceCache` at once: 333 signed
requests a second at the longest lifetime, 1,666 at a minute's. A tenth of the
cache, so that one member filling its share cannot refuse the others' requests."""
_PRUNE_EVERY = 10
"""Seconds between two sweeps of expired nonces (at most; sooner when the cache is full)."""
NODE_COMPONENT = "sharechain-node"
"""The header naming the node a request is meant for (its organisation id), always covered:
a request signed for node A is refused by node B, even with A's `@authority`."""
DEFAULT_VALIDITY = 60
LABEL = "sig1"


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """The outcome of a verified request signature."""

    org: str
    """The organisation whose key signed (the `keyid` parameter)."""
    created: int
    """When it was signed (Unix seconds)."""
    expires: int
    """When the signature stops being valid (Unix seconds)."""
    nonce: str
    """The signer's random nonce, remembered until `expires`."""
    digest: str | None = None
    """The covered `Content-Digest` value the body must hash to (None: no body allowed)."""


def content_digest(body: bytes) -> str:
    """The RFC 9530 `Content-Digest` field value of `body` (SHA-256)."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


def _path_and_query(target: str) -> tuple[str, str]:
    parts = urlsplit(target)
    return parts.path or "/", "?" + parts.query


def signature_base(components: Mapping[str, str], covered: tuple[str, ...], params: str) -> bytes:
    """The RFC 9421 signature base: one line per covered component, then the parameters."""
    lines = [f'"{name}": {components[name]}' for name in covered]
    lines.append(f'"@signature-params": {params}')
    return "\n".join(lines).encode()


def _params(covered: tuple[str, ...], created: int, expires: int, nonce: str, keyid: str) -> str:
    inner = " ".join(f'"{c}"' for c in covered)
    return (
        f'({inner});created={created};expires={expires};nonce="{nonce}";'
        f'keyid="{keyid}";alg="ed25519"'
    )


def sign_request(
    key: SigningKey,
    org: str,
    method: str,
    authority: str,
    target: str,
    body: bytes = b"",
    *,
    validity: int = DEFAULT_VALIDITY,
    node: str | None = None,
    now: Callable[[], float] = time.time,
    rng: Callable[[int], bytes] = os.urandom,
) -> dict[str, str]:
    """The headers that sign a request to `target` (path and query) on `authority`.

    `node` is the organisation whose node the request is meant for: it travels in
    the covered `Sharechain-Node` header, so no other node accepts the request.
    """
    path, query = _path_and_query(target)
    components = {
        "@method": method.upper(),
        "@authority": authority.lower(),
        "@path": path,
        "@query": query,
    }
    headers: dict[str, str] = {}
    covered: tuple[str, ...] = REQUIRED_COMPONENTS
    if node is not None:
        headers["Sharechain-Node"] = components[NODE_COMPONENT] = node
        covered = (*covered, NODE_COMPONENT)
    if body:
        headers["Content-Digest"] = components["content-digest"] = content_digest(body)
        covered = (*covered, "content-digest")
    created = int(now())
    nonce = base64.urlsafe_b64encode(rng(16)).decode().rstrip("=")
    params = _params(covered, created, created + validity, nonce, org)
    signature = key.sign(b"", signature_base(components, covered, params))
    headers["Signature-Input"] = f"{LABEL}={params}"
    headers["Signature"] = f"{LABEL}=:{base64.b64encode(signature).decode()}:"
    return headers


class NonceCache:
    """Nonces seen while their signatures are valid; refuses a second use. Thread-safe.

    The cache lives in memory, so it also refuses signatures created before it
    was: a request captured before a node restarted cannot be replayed to the
    new process, whose cache never saw its nonce. It holds at most `max_entries`
    nonces, and at most `per_member` of one organisation (`QuotaError`, 429,
    beyond): a member sending more signed requests than that within their
    lifetime is refused, not everyone.
    """

    def __init__(
        self,
        max_entries: int = 1_000_000,
        *,
        per_member: int = PER_MEMBER_IN_FLIGHT,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.not_before = int(now())
        self._seen: dict[tuple[str, str], int] = {}
        self._held: dict[str, int] = {}
        """How many of `_seen`'s nonces each organisation holds (recounted at each prune)."""
        self._lock = threading.Lock()
        self._max = max_entries
        self.per_member = per_member
        """Nonces one organisation may hold at once; beyond, its requests get 429."""
        self._next_prune = 0

    def check_and_add(
        self, org: str, nonce: str, expires: int, now: int, created: int | None = None
    ) -> None:
        if created is not None and created < self.not_before:
            raise AuthenticationError(
                "signature created before this node started (it may have been used "
                "already); sign the request afresh"
            )
        with self._lock:
            if now >= self._next_prune or len(self._seen) >= self._max:
                self._seen = {k: e for k, e in self._seen.items() if e > now}
                held: dict[str, int] = {}
                for member, _ in self._seen:
                    held[member] = held.get(member, 0) + 1
                self._held = held
                self._next_prune = now + _PRUNE_EVERY
                if len(self._seen) >= self._max:
                    raise AuthenticationError(
                        "too many signed requests in flight; retry in a few seconds"
                    )
            if (org, nonce) in self._seen:
                raise AuthenticationError(
                    f"replayed request: nonce {nonce!r} of {org} was already used; "
                    "sign every request afresh"
                )
            count = self._held.get(org, 0)
            if count >= self.per_member:
                # Charged to the member that sent them: the others' requests go on.
                raise QuotaError(
                    f"{org} has {count:,} signed requests in flight on this node, at most "
                    f"{self.per_member:,} (each is remembered until its signature expires); "
                    "send fewer, or sign with a shorter lifetime, and retry shortly",
                    retry_after=_PRUNE_EVERY,
                )
            self._seen[(org, nonce)] = expires
            self._held[org] = count + 1


def verify_headers(
    *,
    method: str,
    authority: str,
    target: str,
    headers: Mapping[str, str],
    has_body: bool,
    public_key: Callable[[str], bytes | None],
    nonces: NonceCache,
    node: str | None = None,
    now: Callable[[], float] = time.time,
) -> SignedRequest:
    """Check a request's signature from its headers alone, before any byte of its body.

    The signature covers the body through `Content-Digest`, so the signer and
    its signature are checked first and the body afterwards, as it streams
    (`check_body_digest` on its SHA-256): a request that is not signed never
    gets its body read. `has_body` says the request announces a body
    (`Content-Length` above 0 or chunked); such a signature must cover
    `content-digest`. With `node`, the signature must cover `sharechain-node`
    naming it (a request meant for another node is refused). Raises
    `AuthenticationError` saying why a request is refused. `headers` must be
    case-insensitive (lower-case names are looked up); `public_key(org)` returns
    the organisation's current signing key, or None when it is not active.
    """
    inputs = parse_dictionary(headers.get("signature-input"), "Signature-Input", inner=True)
    signatures = parse_dictionary(headers.get("signature"), "Signature", inner=False)
    label = next(iter(inputs))
    if label not in signatures:
        raise AuthenticationError(f"no Signature for the label {label!r} of Signature-Input")
    covered_obj, params = inputs[label]
    covered = tuple(str(c) for c in covered_obj)  # type: ignore[attr-defined]  # inner lists are tuples
    signature = signatures[label][0]
    if not isinstance(signature, bytes):
        raise AuthenticationError("Signature must be a byte sequence (:base64:)")
    missing = [c for c in REQUIRED_COMPONENTS if c not in covered]
    if has_body and "content-digest" not in covered:
        missing.append("content-digest")
    if node is not None and NODE_COMPONENT not in covered:
        missing.append(f"{NODE_COMPONENT} (the id of the node the request is meant for)")
    if missing:
        raise AuthenticationError(f"the signature must cover {', '.join(missing)}")
    created, expires, nonce, org = (
        params.get("created"),
        params.get("expires"),
        params.get("nonce"),
        params.get("keyid"),
    )
    if not isinstance(created, int) or not isinstance(expires, int):
        raise AuthenticationError("signature parameters created and expires are required")
    if not isinstance(nonce, str) or not 16 <= len(nonce) <= 128:
        raise AuthenticationError("signature parameter nonce is required (16-128 characters)")
    if not isinstance(org, str) or not org:
        raise AuthenticationError("signature parameter keyid must name the organisation")
    if params.get("alg", "ed25519") != "ed25519":
        raise AuthenticationError('only alg="ed25519" is accepted')
    t = int(now())
    if created > t + MAX_SKEW:
        raise AuthenticationError(f"signature created in the future ({created - t} s ahead)")
    if expires <= t:
        raise AuthenticationError(f"signature expired {t - expires + 1} s ago; sign afresh")
    if expires - created > MAX_VALIDITY or expires <= created:
        raise AuthenticationError(
            f"signature lifetime must be between 1 and {MAX_VALIDITY} seconds"
        )
    path, query = _path_and_query(target)
    components = {
        "@method": method.upper(),
        "@authority": authority.lower(),
        "@path": path,
        "@query": query,
    }
    digest: str | None = None
    if "content-digest" in covered:
        digest = components["content-digest"] = headers.get("content-digest", "")
    if NODE_COMPONENT in covered:
        meant = headers.get(NODE_COMPONENT, "")
        if node is not None and meant != node:
            raise AuthenticationError(
                f"the request was signed for node {meant!r}, and this is {node}'s node; "
                "sign it for the node it is sent to"
            )
        components[NODE_COMPONENT] = meant
    unknown = [c for c in covered if c not in components]
    if unknown:
        raise AuthenticationError(f"cannot cover components {unknown}")
    key = public_key(org)
    if key is None:
        raise AuthenticationError(f"{org!r} is not an active organisation of this consortium")
    raw_params = headers["signature-input"].split("=", 1)[1].strip()
    if "," in raw_params:
        raise AuthenticationError("send exactly one signature per request")
    try:
        verify(key, signature, b"", signature_base(components, covered, raw_params))
    except InvalidSignatureError:
        raise AuthenticationError(
            f"the request signature does not verify under {org}'s current key"
        ) from None
    nonces.check_and_add(org, nonce, expires, t, created)
    return SignedRequest(org, created, expires, nonce, digest)


def check_body_digest(signed: SignedRequest, sha256: bytes) -> None:
    """Raise `AuthenticationError` unless the body's SHA-256 is what the signature covered."""
    if signed.digest is None:
        if sha256 != _EMPTY_SHA256:
            raise AuthenticationError("the signature must cover content-digest of the body")
        return
    expected = f"sha-256=:{base64.b64encode(sha256).decode()}:"
    if signed.digest != expected:
        raise AuthenticationError("Content-Digest does not match the request body")


_EMPTY_SHA256 = hashlib.sha256(b"").digest()


def verify_request(
    *,
    method: str,
    authority: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    public_key: Callable[[str], bytes | None],
    nonces: NonceCache,
    node: str | None = None,
    now: Callable[[], float] = time.time,
) -> SignedRequest:
    """Check a whole request (headers, then the body against its `Content-Digest`)."""
    signed = verify_headers(
        method=method,
        authority=authority,
        target=target,
        headers=headers,
        has_body=bool(body),
        public_key=public_key,
        nonces=nonces,
        node=node,
        now=now,
    )
    check_body_digest(signed, hashlib.sha256(body).digest())
    return signed
