"""A Python client of a node's REST API (httpx), signing every request.

`NodeClient(url, keys)` signs each request with the organisation's key
(RFC 9421, see `sharechain.api.auth`) and turns error replies back into
sharechain exceptions: 401 into `AuthenticationError`, 403 into
`AccessDeniedError`, 404 into `NotFoundError`, 503 into `OrderingError`,
anything else into `SharechainError`, each with the node's explanation.
Pass `transport=` (e.g. `httpx.MockTransport` or an ASGI transport) to test
without sockets.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
import time
from collections.abc import Callable, Generator, Sequence
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote

import httpx

from sharechain.api.auth import sign_request
from sharechain.api.privacy_records import computation_from_view
from sharechain.api.wire import from_jsonable
from sharechain.codec import decode, encode
from sharechain.contracts.computations import Computation
from sharechain.contracts.policies import Policy
from sharechain.contracts.privacy_queries import Budget, Transformation
from sharechain.crypto.signing import SigningKey
from sharechain.errors import (
    AccessDeniedError,
    AuthenticationError,
    EncodingError,
    NotFoundError,
    OrderingError,
    SharechainError,
    TooLargeError,
    TransactionRejectedError,
)
from sharechain.ledger.attestations import Attestation
from sharechain.ordering.solo import Receipt

__all__ = [
    "BLOCKS_ANSWER_BYTES",
    "BUSY_RETRIES",
    "MAX_ANSWER_BYTES",
    "MAX_BUSY_WAIT",
    "MAX_ERROR_BYTES",
    "MAX_PEER_JSON_BYTES",
    "MAX_SYNC_BYTES",
    "TLS_ENV",
    "NodeClient",
    "NotANodeError",
    "SignatureAuth",
    "busy_wait",
    "present_cert",
    "raise_for_reply",
    "trust_ca",
]


BUSY_RETRIES: Final = 3
"""How often a user's client (`NodeClient(busy_retries=...)`: the data plane, the command
line) sends a request again that a node refused as busy (429 with `Retry-After`)."""
MAX_BUSY_WAIT: Final = 5.0
"""The longest `Retry-After` such a client waits out; a longer one is the caller's error."""


def busy_wait(reply: httpx.Response) -> float | None:
    """The seconds to wait before sending a request again that `reply` refused as busy:
    a 429 whose `Retry-After` is a number of seconds up to `MAX_BUSY_WAIT` and whose
    explanation is small (`MAX_ERROR_BYTES`, declared); None for any other answer."""
    if reply.status_code != 429:
        return None
    try:
        wait = float(reply.headers.get("retry-after", ""))
        size = int(reply.headers.get("content-length", ""))
    except ValueError:
        return None
    if not 0 <= wait <= MAX_BUSY_WAIT or not 0 <= size <= MAX_ERROR_BYTES:
        return None
    return wait


class SignatureAuth(httpx.Auth):
    """httpx authentication that signs each request as `org` (RFC 9421, Ed25519).

    With `busy_retries`, a request a node refuses as busy (429 with a short
    `Retry-After`: one of the caller's limits, checked before the node does any of
    the work) is signed again and sent again after that wait, at most that many
    times; the last refusal is the answer. A node's own clients of its peers keep
    0: their loops have their own pace and their own judgement of a peer.
    """

    requires_request_body = True

    def __init__(
        self,
        org: str,
        key: SigningKey,
        *,
        node: Callable[[], str | None] = lambda: None,
        now: Callable[[], float] = time.time,
        rng: Callable[[int], bytes] = os.urandom,
        busy_retries: int = 0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.org = org
        self._key = key
        self._node = node
        self._now = now
        self._rng = rng
        self._busy_retries = busy_retries
        self._sleep = sleep

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        for attempt in range(self._busy_retries + 1):
            headers = sign_request(
                self._key,
                self.org,
                request.method,
                request.url.netloc.decode("ascii"),
                request.url.raw_path.decode("ascii"),
                request.content,
                node=self._node(),
                now=self._now,
                rng=self._rng,
            )
            request.headers.update(headers)  # a fresh signature, nonce and time each send
            reply = yield request
            wait = busy_wait(reply)
            if wait is None or attempt == self._busy_retries:
                return
            self._sleep(wait)


_ERRORS: dict[int, type[SharechainError]] = {
    401: AuthenticationError,
    403: AccessDeniedError,
    404: NotFoundError,
    413: TooLargeError,
    503: OrderingError,
}


def _raise_for(reply: httpx.Response) -> None:
    if reply.is_success:
        return
    try:
        body = reply.json()
        detail = body.get("detail", body) if isinstance(body, dict) else body
    except ValueError:
        detail = reply.text[:500]
    message = detail if isinstance(detail, str) else str(detail)
    cls = _ERRORS.get(reply.status_code, SharechainError)
    raise cls(
        f"{reply.request.method} {reply.request.url.path}: HTTP {reply.status_code}: {message}"
    )


class NotANodeError(SharechainError):
    """An answer no sharechain node gives (not JSON, no organisation named): the URL is
    not a node's, or the peer lies."""


BLOCKS_ANSWER_BYTES = 32 << 20
"""Bytes of blocks a node's answer of `/v1/blocks` or `/v1/sync/blocks` holds at most (a
single larger block is still answered, alone). A follower reads it to tell an answer cut
by it from one that reached the node's head."""
MAX_SYNC_BYTES = 48 << 20
"""The most `sync_blocks` reads of one answer (a node sends at most `BLOCKS_ANSWER_BYTES`)."""
MAX_PEER_JSON_BYTES = 4 << 20
"""The most read of the small documents nodes ask their peers for: status, attestations,
health, readiness, the join document, the snapshot list."""
MAX_ANSWER_BYTES = 256 << 20
"""The most read of any other answer (queries, metrics): a client's memory stays bounded
whatever a node sends."""
MAX_ERROR_BYTES = 64 << 10
"""The most read of an error answer: its explanation is a sentence."""
RECEIPT_BYTES = 16 << 10
"""What a submission's answer may take per transaction, beyond `MAX_PEER_JSON_BYTES`."""


def _json(reply: httpx.Response) -> Any:
    """A successful reply's JSON body; NotANodeError if it is not JSON."""
    try:
        return reply.json()
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        raise NotANodeError(
            f"{reply.request.method} {reply.request.url}: the answer is not JSON"
            f" ({reply.headers.get('content-type', 'no content type')}); is this a sharechain node?"
        ) from None


raise_for_reply = _raise_for
"""Turn an error reply into the sharechain exception its status means (for callers of `http`)."""


_CBOR = "application/cbor"


_TRUSTED: list[str] = []
_IDENTITY: list[tuple[str, str]] = []

TLS_ENV: Final = ("SHARECHAIN_TLS_CA", "SHARECHAIN_TLS_CERT", "SHARECHAIN_TLS_KEY")
"""Environment variables naming the CA to trust and this party's certificate and key (PEM)."""


def trust_ca(path: str | os.PathLike[str] | None) -> None:
    """Trust the CA bundle at `path` (PEM) for every `NodeClient` of this process.

    A node started with `--tls-ca`, and a command given a network file that
    names its CA, call this, so every client (replication, blob fetching, the
    data plane) checks the nodes' certificates against the consortium's CA.
    Each call adds a CA (a process may talk to two networks); None forgets
    them all. `$SHARECHAIN_TLS_CA` is trusted too (a command line given
    `--node https://...`).
    """
    if path is None:
        _TRUSTED.clear()
    elif str(path) not in _TRUSTED:
        _TRUSTED.append(str(path))


def present_cert(cert: str | os.PathLike[str] | None, key: str | os.PathLike[str] = "") -> None:
    """Show this certificate and key (PEM) to every node that asks for one (mutual TLS).

    A node serving HTTPS presents its own certificate this way when it calls its
    peers; `$SHARECHAIN_TLS_CERT` and `$SHARECHAIN_TLS_KEY` do the same for a
    command line. None forgets it.
    """
    _IDENTITY[:] = [] if cert is None else [(str(cert), str(key))]


def _tls(
    ca: str | None, cert: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None = None
) -> ssl.SSLContext:
    env_ca, env_cert, env_key = (os.environ.get(name, "") for name in TLS_ENV)
    trusted = (ca,) if ca else (*_TRUSTED, *((env_ca,) if env_ca else ()))
    if cert is None and _IDENTITY:
        cert = _IDENTITY[0]
    if cert is None and env_cert:
        cert = (env_cert, env_key)
    if cert is None:
        return _context(tuple(trusted))
    return _context(tuple(trusted), str(cert[0]), str(cert[1]))


@functools.cache
def _context(
    cas: tuple[str, ...], cert: str | None = None, key: str | None = None
) -> ssl.SSLContext:
    """A TLS context per set of CA bundles, made once per process and shared by every client.

    Making one loads the CA bundle: ~20 ms of CPU, which each new client paid,
    even for plain-HTTP nodes (a benchmark opening 17 clients lost 8 us per
    transaction to it). An SSLContext may serve many connections and threads.
    Without a CA of our own, the system's CAs are trusted.
    """
    if not cas:
        context = httpx.create_ssl_context()
    else:
        context = ssl.create_default_context(cafile=cas[0])
        for more in cas[1:]:
            context.load_verify_locations(cafile=more)
    if cert is not None:
        context.load_cert_chain(cert, key or None)
    return context


def _receipt(value: dict[str, Any]) -> Receipt:
    return Receipt(
        bytes.fromhex(value["tx_id"]),
        int(value["height"]),
        int(value["index"]),
        str(value["code"]),
        str(value.get("reason", "")),
    )


def _cbor_receipts(reply: httpx.Response) -> list[Receipt]:
    """The receipts of a CBOR answer: `{receipts: [[tx_id, height, index, code, reason]]}`."""
    try:
        rows = decode(reply.content, canonical=False)["receipts"]
        return [Receipt(t, h, i, c, r) for t, h, i, c, r in rows]
    except (EncodingError, KeyError, TypeError, ValueError) as exc:
        raise SharechainError(
            f"{reply.request.url.host} sent malformed receipts: {type(exc).__name__}: {exc}"
        ) from None


def _json_receipts(reply: httpx.Response) -> list[Receipt]:
    """The receipts of a JSON answer: `{receipts: [{tx_id, height, index, code, reason}]}`."""
    body = _json(reply)
    try:
        return [_receipt(r) for r in body.get("receipts", [])]
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise SharechainError(
            f"{reply.request.url.host} sent malformed receipts: {type(exc).__name__}: {exc}"
        ) from None


_SMALL = "a node's status, attestations, health, join document or snapshot list are small"


def _segment(text: str) -> str:
    """`text` as one path segment (an id or prefix; never a way to another path)."""
    return quote(text, safe="")


class NodeClient:
    """A signed HTTP client of one node."""

    def __init__(
        self,
        base_url: str,
        org: str,
        key: SigningKey,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        node: str | None = None,
        ca: str | os.PathLike[str] | None = None,
        cert: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None = None,
        now: Callable[[], float] = time.time,
        busy_retries: int = 0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """A client of the node at `base_url`, signing as `org` with `key`.

        `node` is the organisation whose node this is: every signature names it,
        so the request is refused by any other node. Left out, it is read once
        from the node's `/v1/health`. `ca` is a CA bundle (PEM) to trust for an
        `https` node instead of the process's default (`trust_ca`); `cert` is
        this organisation's (certificate, key) PEM files, for a node that asks
        clients for one (mutual TLS). `busy_retries`: how often a signed request the
        node refuses as busy (429 with a `Retry-After` of at most `MAX_BUSY_WAIT`
        seconds) is sent again after that wait (`SignatureAuth`); `BUSY_RETRIES` for
        a user's tools, 0 (the default) for a node's clients of its peers.
        """
        self.base_url = base_url.rstrip("/")
        self.org = org
        self._cbor_submit = True
        """Submit batches as CBOR; cleared when the node predates CBOR submissions."""
        self._node_id = node
        self._auth = SignatureAuth(
            org, key, node=self.node_id, now=now, busy_retries=busy_retries, sleep=sleep
        )
        self._http = httpx.Client(
            base_url=self.base_url,
            auth=self._auth,
            timeout=timeout,
            transport=transport,
            verify=_tls(None if ca is None else str(ca), cert),
        )

    def node_id(self) -> str:
        """The organisation whose node this client talks to (asked once, unsigned)."""
        if self._node_id is None:
            reply = self._unsigned("/v1/health")
            _raise_for(reply)
            body = _json(reply)
            if not isinstance(body, dict) or not isinstance(body.get("org"), str):
                raise NotANodeError(
                    f"{self.base_url}/v1/health does not name the node's organisation; "
                    "is this a sharechain node?"
                )
            self._node_id = body["org"]
        return self._node_id

    def close(self) -> None:
        self._http.close()

    @property
    def http(self) -> httpx.Client:
        """The signed httpx client, for streamed and ranged requests (the data plane)."""
        return self._http

    def signed(self, method: str, url: str, **kwargs: Any) -> httpx.Request:
        """A request built and signed now; send it with `http.send(request, auth=None)`.

        Lets a caller prepare (read, hash, sign) the next upload chunk on another
        thread while the previous one is in flight. Send it within the signature's
        lifetime (60 s).
        """
        request = self._http.build_request(method, url, **kwargs)
        return next(self._auth.auth_flow(request))

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _read(
        self,
        method: str,
        path: str,
        cap: int,
        why: str,
        *,
        timeout: float | None = None,
        total: float | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send a request and read its answer, refused (SharechainError) as soon as the
        body passes `cap` bytes (an error answer: `MAX_ERROR_BYTES`): what a node
        sends is read in bounded memory, whatever it sends. The answer comes back
        read, its body decoded (`content`, `text` and `json()` work as usual)."""
        wait = httpx.USE_CLIENT_DEFAULT if timeout is None else timeout
        # httpx times each read, not the whole answer: with `total`, an answer dripped
        # a byte at a time is cut off once it has taken that long.
        deadline = None if total is None else time.monotonic() + total
        with self._http.stream(method, path, timeout=wait, **kwargs) as reply:
            limit = cap if reply.is_success else MAX_ERROR_BYTES
            content = bytearray()
            for chunk in reply.iter_bytes():
                if deadline is not None and time.monotonic() > deadline:
                    raise SharechainError(
                        f"{self.base_url}{path}: the answer took longer than {total:.0f} s; refused"
                    )
                content += chunk
                if len(content) > limit:
                    if not reply.is_success:  # an endless explanation: keep its start
                        break
                    raise SharechainError(
                        f"{self.base_url}{path}: the answer is larger than {cap} bytes ({why});"
                        " refused"
                    )
        # Decoded already: the copy must not claim an encoding or a length.
        headers = [
            (k, v)
            for k, v in reply.headers.multi_items()
            if k not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(
            reply.status_code,
            headers=headers,
            content=bytes(content[:limit]),
            request=reply.request,
        )

    def _capped(
        self,
        path: str,
        params: dict[str, Any],
        cap: int,
        why: str,
        *,
        timeout: float | None = None,
    ) -> bytes:
        """GET `path`'s body in at most `cap` bytes (`_read`); an error answer raises."""
        reply = self._read("GET", path, cap, why, params=params, timeout=timeout)
        _raise_for(reply)
        return reply.content

    def _capped_json(self, path: str, params: dict[str, Any]) -> Any:
        content = self._capped(path, params, MAX_PEER_JSON_BYTES, _SMALL)
        try:
            return json.loads(content)
        except ValueError:
            raise NotANodeError(f"{self.base_url}{path}: the answer is not JSON") from None

    def _get(self, path: str, *, cap: int = MAX_ANSWER_BYTES, **params: Any) -> Any:
        why = _SMALL if cap <= MAX_PEER_JSON_BYTES else "the most this client reads of an answer"
        reply = self._read(
            "GET", path, cap, why, params={k: v for k, v in params.items() if v is not None}
        )
        _raise_for(reply)
        return _json(reply)

    def _unsigned(self, path: str) -> httpx.Response:
        """GET a small document every node serves unsigned (health, readiness)."""
        return self._read("GET", path, MAX_PEER_JSON_BYTES, _SMALL, auth=None)

    # -- operations ---------------------------------------------------------

    def health(self) -> dict[str, Any]:
        reply = self._unsigned("/v1/health")
        _raise_for(reply)
        body: dict[str, Any] = _json(reply)
        return body

    def ready(self) -> dict[str, Any]:
        """The readiness document; raises `OrderingError` (503) when the node is not ready."""
        reply = self._unsigned("/v1/ready")
        _raise_for(reply)
        body: dict[str, Any] = _json(reply)
        return body

    def status(self) -> dict[str, Any]:
        """The node's status (at most `MAX_PEER_JSON_BYTES`: nodes ask their peers for it)."""
        body: dict[str, Any] = self._capped_json("/v1/status", {})
        return body

    def submit(
        self, raws: Sequence[bytes], *, wait: bool = True, timeout: float = 30.0
    ) -> list[Receipt]:
        """Submit signed transactions; with `wait`, return their receipts once committed.

        The batch goes as CBOR, envelopes as byte strings, and the receipts come
        back in CBOR: half the bytes of hex in JSON and less work at both ends.
        A node that predates CBOR submissions refuses the body (415 or 422)
        before it queues anything; this client then speaks JSON to it.
        """
        cap = MAX_PEER_JSON_BYTES + RECEIPT_BYTES * len(raws)
        why = f"receipts take at most {RECEIPT_BYTES} bytes a transaction"
        if self._cbor_submit:
            reply = self._read(
                "POST",
                "/v1/txs",
                cap,
                why,
                content=encode({"txs": list(raws), "wait": wait, "timeout": timeout}),
                headers={"Content-Type": _CBOR, "Accept": _CBOR},
                timeout=timeout + 10.0,
                total=timeout + 10.0,
            )
            if reply.status_code not in (415, 422):
                _raise_for(reply)
                if reply.headers.get("content-type", "").startswith(_CBOR):
                    return _cbor_receipts(reply)
                return _json_receipts(reply)
            self._cbor_submit = False
        reply = self._read(
            "POST",
            "/v1/txs",
            cap,
            why,
            json={"txs": [r.hex() for r in raws], "wait": wait, "timeout": timeout},
            timeout=timeout + 10.0,
            total=timeout + 10.0,
        )
        _raise_for(reply)
        return _json_receipts(reply)

    def submit_checked(self, raw: bytes, *, timeout: float = 30.0) -> Receipt:
        """Submit one transaction and raise `TransactionRejectedError` unless it is valid."""
        (receipt,) = self.submit([raw], timeout=timeout)
        if not receipt.ok:
            raise TransactionRejectedError(receipt.code, receipt.reason, receipt.tx_id)
        return receipt

    def tx(self, tx_id: bytes) -> dict[str, Any]:
        body: dict[str, Any] = self._get(f"/v1/txs/{tx_id.hex()}")
        return body

    def proof(self, tx_id: bytes) -> dict[str, Any]:
        body: dict[str, Any] = self._get(f"/v1/txs/{tx_id.hex()}/proof")
        return body

    def blocks(self, start: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        body = self._get("/v1/blocks", start=start, limit=limit)
        return list(body["blocks"])

    def block(self, height: int) -> dict[str, Any]:
        body: dict[str, Any] = self._get(f"/v1/blocks/{height}")
        return body

    def sync_blocks(self, start: int, *, limit: int = 64, wait: float = 0.0) -> list[bytes]:
        """Raw block bytes from `start` on (long-polls up to `wait` s when there are none).

        A node answers at most 32 MiB of blocks; an answer over `MAX_SYNC_BYTES` is
        refused (SharechainError) as it streams in, never held whole."""
        params = {"start": start, "limit": limit, "wait": wait}
        content = self._capped(
            "/v1/sync/blocks",
            params,
            MAX_SYNC_BYTES,
            "a node sends at most 32 MiB of blocks at a time",
            timeout=wait + 30.0,
        )
        try:
            value = decode(content)
        except EncodingError as exc:
            raise SharechainError(f"{self.base_url} sent malformed blocks: {exc}") from None
        if not isinstance(value, list) or not all(isinstance(b, bytes) for b in value):
            raise SharechainError(f"{self.base_url} sent malformed blocks")
        return value

    def attestations(self, since: int = 0) -> list[Attestation]:
        """The node's recent attestations (at most `MAX_PEER_JSON_BYTES` of them)."""
        body = self._capped_json("/v1/attestations", {"since": since})
        return [Attestation.from_json(a) for a in body["attestations"]]

    def attestation_status(self) -> dict[str, Any]:
        body: dict[str, Any] = self._get("/v1/attestations/status")
        return body

    def metrics(self) -> str:
        reply = self._read("GET", "/metrics", MAX_ANSWER_BYTES, "metrics", auth=None)
        _raise_for(reply)
        return reply.text

    # -- privacy records (`contracts.privacy_queries`) ----------------------------

    def computations(self, *, party: str | None = None, limit: int = 1000) -> list[Computation]:
        """Sessions, newest first: this organisation's (a supervisor's: all, or `party`'s)."""
        body = self._get("/v1/computations", party=party, limit=limit)
        return [computation_from_view(c) for c in body["computations"]]

    def computation(self, session: str) -> Computation:
        """One session (its full id), for its parties and supervisors."""
        return computation_from_view(self._get(f"/v1/computations/{_segment(session)}"))

    def transformation(self, gid: str) -> Transformation | None:
        """The transformation record of grant `gid`'s masked release (None until made)."""
        body = self._get(f"/v1/grants/{_segment(gid)}/transformation")["transformation"]
        return None if body is None else from_jsonable(Transformation, body)

    def transformations(self, ds: str) -> list[Transformation]:
        """The transformation records of the masked versions made from dataset `ds`."""
        body = self._get(f"/v1/datasets/{_segment(ds)}/transformations")
        return [from_jsonable(Transformation, t) for t in body["transformations"]]

    def budgets(self, ds: str) -> list[Budget]:
        """The privacy budget spent on dataset `ds`, per grantee (owner and supervisors)."""
        body = self._get(f"/v1/datasets/{_segment(ds)}/budgets")
        return [from_jsonable(Budget, b) for b in body["budgets"]]

    def default_policy(self) -> Policy:
        """The consortium's default policy: what a dataset registered without one gets."""
        policy: Policy = from_jsonable(Policy, self._get("/v1/policies/default")["policy"])
        return policy

    def get_json(self, path: str, *, cap: int = MAX_ANSWER_BYTES, **params: Any) -> Any:
        """GET any API path (e.g. query endpoints) and return the decoded JSON.

        An answer over `cap` bytes is refused as it streams in (SharechainError):
        pass `MAX_PEER_JSON_BYTES` for the small documents a node asks its peers for."""
        return self._get(path, cap=cap, **params)
