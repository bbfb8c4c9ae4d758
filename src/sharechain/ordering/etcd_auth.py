"""etcd's users and roles: every node may order, none may administer the cluster.

Mutual TLS keeps strangers out of etcd, but every member's node holds a client
certificate, and etcd without authentication lets any client do anything: one
member's client could enable authentication with a root password of its own
(every other node is then refused and ordering stops for all), remove the
other etcd members, or defragment them without pause. So a cluster started
with TLS (`sharechain network up`, `EtcdCluster(tls=True)`; by hand in a
deployment, `docs/deploy.md`) runs with etcd's authentication on:

- `root` (the role `root`) administers: users, roles, membership,
  defragmentation, snapshots. Its password is the operator's
  (`etcd/tls/root.password` in a local network), never a node's;
- every organisation's node is the user named by its organisation id, with
  the role `sharechain-node`: read and write on the keys under the chain's
  prefix (`sharechain/` unless the nodes say otherwise), watches, leases,
  compaction, alarms, status; none of the operations above (etcd 3.4 refuses
  them with "permission denied" to any user but root), and no key outside
  the prefix, where a member's client could otherwise fill etcd's quota with
  keys no node would ever delete (`restrict_node_role`).

etcd's JSON gateway authenticates by token only (it ignores a certificate's
common name, and refuses a certificate that has one while authentication is
on): a client logs in with its user's password (`/v3/auth/authenticate`) and
sends the token in the `Authorization` header. Tokens are etcd's "simple"
tokens: kept by the member that issued them, valid while used (etcd drops
one unused for `--auth-token-ttl`, 300 s). `EtcdAuth` does this for every
httpx client `etcd_tls.etcd_http_client` builds: a token per member, logging
in again when the member says the token is unknown or out of date.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncGenerator, Generator, Iterable
from typing import Any, ClassVar, Final

import httpx

from sharechain.errors import ConfigError, OrderingError
from sharechain.ordering.etcd_wire import _b64, _prefix_end

__all__ = [
    "NODE_PREFIX",
    "NODE_ROLE",
    "ROOT",
    "EtcdAuth",
    "LoginRefused",
    "add_users",
    "auth_enabled",
    "delete_user",
    "enable_auth",
    "list_users",
    "restrict_node_role",
]

ROOT: Final = "root"
"""etcd's administrator user (and role)."""
NODE_ROLE: Final = "sharechain-node"
"""The role of every organisation's node user: read and write on the chain's keys."""
NODE_PREFIX: Final = "sharechain/"
"""The key prefix the node role may read and write by default (the nodes' `etcd_prefix`)."""
IDLE_RELOGIN: Final = 240.0
"""Seconds after which an unused token is replaced before use (etcd's TTL is 300)."""
_STALE_TOKEN: Final = ("invalid auth token", "auth store is old", "user name is empty")
"""What a member answers to a token it no longer knows, or to none."""


class LoginRefused(httpx.HTTPStatusError):
    """A member did not log the client in (wrong password, no such user, no quorum):
    an HTTP error like any other, so callers try the next member and report why."""


class EtcdAuth(httpx.Auth):
    """Log in to each etcd member as `user` and send its token; thread-safe.

    One instance is shared by the clients of one process with the same
    credentials (`for_credentials`), so they log in once per member.
    """

    def __init__(self, user: str, password: str) -> None:
        self.user = user
        self._password = password
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}
        """Member (scheme://host:port) -> (token, monotonic time of its last use)."""

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        member = f"{request.url.scheme}://{request.url.netloc.decode()}"
        token = self._token(member)
        if token is None:
            token = yield from self._login(request, member)
        request.headers["Authorization"] = token
        response = yield request
        if response.status_code == 200:
            return
        response.read()  # an error body: small
        if not any(s in response.text for s in _STALE_TOKEN):
            return
        with self._lock:
            self._tokens.pop(member, None)
        request.headers["Authorization"] = yield from self._login(request, member)
        yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        raise RuntimeError("EtcdAuth serves synchronous clients only")
        yield request  # unreachable: makes this an async generator

    def forget(self, member: str) -> None:
        """Drop the token of `member` (scheme://host:port): the next request logs in.

        For a watch, whose refusal of a token comes inside its stream ("permission
        denied" as the cancel reason) where this flow does not look."""
        with self._lock:
            self._tokens.pop(member.rstrip("/"), None)

    def _token(self, member: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            found = self._tokens.get(member)
            if found is None or now - found[1] > IDLE_RELOGIN:
                return None
            self._tokens[member] = (found[0], now)
            return found[0]

    def _login(
        self, request: httpx.Request, member: str
    ) -> Generator[httpx.Request, httpx.Response, str]:
        url = request.url.copy_with(path="/v3/auth/authenticate", query=None)
        reply = yield httpx.Request(
            "POST", url, json={"name": self.user, "password": self._password}
        )
        reply.read()
        try:
            token = reply.json().get("token") if reply.status_code == 200 else None
        except ValueError:
            token = None
        if not isinstance(token, str) or not token:
            raise LoginRefused(
                f"etcd at {member} refused the login of user {self.user!r} "
                f"(HTTP {reply.status_code}: {reply.text[:200]}); check the etcd password "
                "file the node was given (--etcd-password-file) and that the consortium's "
                "etcd operator created this user (`sharechain network issue-certs`, "
                "docs/deploy.md)",
                request=reply.request,
                response=reply,
            )
        with self._lock:
            self._tokens[member] = (token, time.monotonic())
        return token

    _shared: ClassVar[dict[tuple[str, str], EtcdAuth]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def for_credentials(cls, user: str, password: str) -> EtcdAuth:
        """The process's one `EtcdAuth` for these credentials."""
        with cls._shared_lock:
            found = cls._shared.get((user, password))
            if found is None:
                found = cls._shared[(user, password)] = cls(user, password)
            return found


def _call(
    client: httpx.Client, endpoints: Iterable[str], path: str, body: object
) -> dict[str, Any]:
    """POST to the first member that answers; raise `OrderingError` with etcd's reason."""
    failures = []
    for url in endpoints:
        try:
            reply = client.post(url.rstrip("/") + path, json=body)
        except httpx.HTTPError as exc:
            failures.append(f"{url}: {exc}")
            continue
        if reply.status_code == 200:
            answer = reply.json()
            return answer if isinstance(answer, dict) else {}
        failures.append(f"{url}: HTTP {reply.status_code}: {reply.text[:200]}")
        if reply.status_code < 500:
            break
    raise OrderingError(f"etcd refused {path}: {'; '.join(failures) or 'no endpoint given'}")


def auth_enabled(client: httpx.Client, endpoints: Iterable[str]) -> bool:
    """Whether the cluster asks for a token (`client` logged in as nobody)."""
    try:
        _call(client, endpoints, "/v3/auth/role/list", {})
    except OrderingError as exc:
        if "user name is empty" in str(exc) or "permission denied" in str(exc):
            return True
        raise
    return False


def enable_auth(
    client: httpx.Client,
    endpoints: Iterable[str],
    root_password: str,
    users: dict[str, str],
    *,
    prefix: str = NODE_PREFIX,
) -> None:
    """Create `root`, the node role and `users` (name -> password), then turn auth on.

    `client` must not be logged in (authentication is still off). Each step is
    idempotent, so a provisioning cut short is simply run again. The node role
    reads and writes the keys under `prefix` only.
    """
    endpoints = tuple(endpoints)
    roles = _call(client, endpoints, "/v3/auth/role/list", {}).get("roles") or []
    if NODE_ROLE not in roles:
        _call(client, endpoints, "/v3/auth/role/add", {"name": NODE_ROLE})
    restrict_node_role(client, endpoints, prefix)
    existing = set(_call(client, endpoints, "/v3/auth/user/list", {}).get("users") or [])
    if ROOT not in existing:
        _call(client, endpoints, "/v3/auth/user/add", {"name": ROOT, "password": root_password})
    _call(client, endpoints, "/v3/auth/user/grant", {"user": ROOT, "role": ROOT})
    _add(client, endpoints, users, existing)
    _call(client, endpoints, "/v3/auth/enable", {})


def restrict_node_role(client: httpx.Client, endpoints: Iterable[str], prefix: str) -> bool:
    """Let the node role read and write the keys under `prefix`, and no others; True if
    its permissions changed. Idempotent: a cluster whose role was granted every key
    (before this rule) is narrowed, as root once authentication is on."""
    endpoints = tuple(endpoints)
    if not prefix:
        raise ConfigError("the node role needs a key prefix (the nodes' etcd_prefix), not ''")
    wanted = {"key": _b64(prefix.encode()), "range_end": _b64(_prefix_end(prefix.encode()))}
    perms = _call(client, endpoints, "/v3/auth/role/get", {"role": NODE_ROLE}).get("perm") or []
    changed, present = False, False
    for perm in perms:
        span = {"key": perm.get("key", ""), "range_end": perm.get("range_end", "")}
        if span == wanted and perm.get("permType", "READ") == "READWRITE":
            present = True
            continue
        _call(client, endpoints, "/v3/auth/role/revoke", {"role": NODE_ROLE, **span})
        changed = True
    if not present:
        _call(
            client,
            endpoints,
            "/v3/auth/role/grant",
            {"name": NODE_ROLE, "perm": {"permType": "READWRITE", **wanted}},
        )
        changed = True
    return changed


def add_users(root: httpx.Client, endpoints: Iterable[str], users: dict[str, str]) -> None:
    """Create node users (name -> password) that do not exist yet; `root` is logged in as root."""
    endpoints = tuple(endpoints)
    _add(root, endpoints, users, list_users(root, endpoints))


def list_users(root: httpx.Client, endpoints: Iterable[str]) -> set[str]:
    """The cluster's users, `root` among them; `root` is logged in as root."""
    return set(_call(root, tuple(endpoints), "/v3/auth/user/list", {}).get("users") or [])


def delete_user(root: httpx.Client, endpoints: Iterable[str], name: str) -> bool:
    """Delete node user `name` (a removed member's): its tokens stop working at once."""
    if name == ROOT:
        raise ConfigError("the root user is not a node's; it cannot be deleted here")
    endpoints = tuple(endpoints)
    if name not in list_users(root, endpoints):
        return False
    _call(root, endpoints, "/v3/auth/user/delete", {"name": name})
    return True


def _add(
    client: httpx.Client, endpoints: tuple[str, ...], users: dict[str, str], existing: set[str]
) -> None:
    for name, password in users.items():
        if name == ROOT:
            raise ConfigError("a node's etcd user cannot be named root")
        if name not in existing:
            _call(client, endpoints, "/v3/auth/user/add", {"name": name, "password": password})
        _call(client, endpoints, "/v3/auth/user/grant", {"user": name, "role": NODE_ROLE})
