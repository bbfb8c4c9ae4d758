"""The etcd cluster as the block log reaches it: endpoints, failover, each member's health.

`EtcdLog` decides what to read and write (keys, compares, watches); this module
decides where a request goes. Every request is a POST to etcd's JSON gateway
(`/v3/...`) sent to the member that answered last, then to the others in turn,
until one answers or the call's `timeout` has passed. A member that cannot
serve now (no quorum, shutting down: the retryable gRPC codes) is skipped like
one that does not answer; any other refusal is final and raised at once. When
the time is up, `OrderingError` names every member tried and why it failed.

`status` asks every member for its health, the leader it follows, its Raft
index and its database size, for `network status`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from sharechain.errors import OrderingError
from sharechain.ordering.etcd_tls import EtcdTLS, etcd_http_client
from sharechain.ordering.etcd_wire import Json, _describe, _json_or_error, _refusal

__all__ = ["MAX_BACKOFF", "EndpointStatus", "EtcdGateway"]

# gRPC status codes that mean "this member cannot serve now, another may":
# CANCELLED, UNKNOWN, DEADLINE_EXCEEDED, ABORTED, UNAVAILABLE.
_RETRYABLE_CODES = frozenset({1, 2, 4, 10, 14})

MAX_BACKOFF = 0.5
"""The longest pause, in seconds, between two rounds over the members."""


@dataclass(frozen=True, slots=True)
class EndpointStatus:
    """Health of one etcd endpoint, as `network status` shows it."""

    endpoint: str
    """The client URL asked."""
    reachable: bool
    """Whether the member answered the status request."""
    name: str = ""
    """Member name from the cluster's member list ("" if unknown)."""
    member_id: int = 0
    """etcd's id of the member that answered."""
    leader_id: int = 0
    """Id of the leader this member follows (0: it knows of no leader)."""
    is_leader: bool = False
    """Whether this member is the Raft leader."""
    raft_index: int = 0
    """Index of the member's last Raft log entry."""
    raft_term: int = 0
    """Raft term the member is in."""
    db_size: int = 0
    """Size of the member's database file in bytes."""
    version: str = ""
    """etcd server version."""
    error: str = ""
    """Why the member did not answer ("" when reachable)."""


class EtcdGateway:
    """The members' client URLs and one HTTP client each; thread-safe.

    `timeout` bounds each `post` (all members and retries included); `clock`
    (monotonic seconds) is injectable for tests. `preferred` is the index of
    the member tried first: the last one that answered, or the one a watch
    moved on to.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        timeout: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        tls: EtcdTLS | None = None,
    ) -> None:
        if not endpoints:
            raise OrderingError("no etcd endpoints given; pass the members' client URLs")
        self.endpoints = tuple(url.rstrip("/") for url in endpoints)
        """The client URLs, without a trailing slash."""
        self.timeout = timeout
        # One member may hang (no quorum) while another could answer; do not
        # let a single attempt eat the whole budget.
        self._attempt_timeout = max(1.0, timeout / 2)
        self._clock = clock
        context = None if tls is None else tls.context()
        self._clients = tuple(etcd_http_client(tls, context) for _ in self.endpoints)
        # One client for the watch streams too: a new httpx.Client loads the CA
        # store for its SSL context, which cost an idle node a third of its CPU
        # when every re-established stream (each `watch_idle_timeout`) made one.
        self.watch_client = etcd_http_client(tls, context)
        """The client every watch stream is read through."""
        self.preferred = 0

    def close(self) -> None:
        """Close the HTTP connections."""
        for client in self._clients:
            client.close()
        self.watch_client.close()

    def post(self, path: str, body: Json) -> Json:
        """POST to the first endpoint that answers, within the timeout."""
        deadline = self._clock() + self.timeout
        failures: dict[str, str] = {}
        backoff = 0.02
        count = len(self.endpoints)
        while True:
            for offset in range(count):
                index = (self.preferred + offset) % count
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                url = self.endpoints[index]
                try:
                    reply = self._clients[index].post(
                        url + path, json=body, timeout=min(remaining, self._attempt_timeout)
                    )
                except httpx.HTTPError as exc:
                    failures[url] = _describe(exc)
                    continue
                payload = _json_or_error(reply)
                if isinstance(payload, str):
                    failures[url] = payload
                    continue
                if reply.status_code == 200:
                    self.preferred = index
                    return payload
                code = int(payload.get("code", 2))
                message = str(payload.get("message") or payload.get("error") or reply.text[:200])
                if code in _RETRYABLE_CODES:
                    failures[url] = message
                    continue
                raise _refusal(url, code, message)
            remaining = deadline - self._clock()
            if remaining <= 0:
                tried = "; ".join(f"{url}: {why}" for url, why in failures.items())
                raise OrderingError(
                    f"no etcd quorum answered {path} within {self.timeout:.1f}s "
                    f"(tried {tried or 'nothing'}); check that a majority of the etcd members "
                    "are running and reachable, then retry"
                )
            time.sleep(min(backoff, remaining))
            backoff = min(backoff * 2, MAX_BACKOFF)

    def status(self) -> tuple[EndpointStatus, ...]:
        """Ask every endpoint for its health, leader, Raft index and database size."""
        replies: list[Json | str] = []
        attempt = min(self.timeout, 2.0)
        for client, url in zip(self._clients, self.endpoints, strict=True):
            try:
                reply = client.post(f"{url}/v3/maintenance/status", json={}, timeout=attempt)
            except httpx.HTTPError as exc:
                replies.append(_describe(exc))
                continue
            answer = _json_or_error(reply)
            if isinstance(answer, dict) and reply.status_code != 200:
                answer = str(answer.get("message") or answer)
            replies.append(answer)
        names: dict[int, str] = {}
        with contextlib.suppress(OrderingError):
            members = self.post("/v3/cluster/member/list", {}).get("members", [])
            names = {int(m.get("ID", 0)): str(m.get("name", "")) for m in members}
        statuses = []
        for url, answer in zip(self.endpoints, replies, strict=True):
            if isinstance(answer, str):
                statuses.append(EndpointStatus(endpoint=url, reachable=False, error=answer))
                continue
            member_id = int(answer.get("header", {}).get("member_id", 0))
            leader_id = int(answer.get("leader", 0))
            statuses.append(
                EndpointStatus(
                    endpoint=url,
                    reachable=True,
                    name=names.get(member_id, ""),
                    member_id=member_id,
                    leader_id=leader_id,
                    is_leader=member_id != 0 and member_id == leader_id,
                    raft_index=int(answer.get("raftIndex", 0)),
                    raft_term=int(answer.get("raftTerm", 0)),
                    db_size=int(answer.get("dbSize", 0)),
                    version=str(answer.get("version", "")),
                )
            )
        return tuple(statuses)
