"""What a route takes from its request: the caller, the node serving it, its uploads.

The routes of the data plane (`sharing.delivery`, `sharing.custody_routes`,
`sharing.mailbox_routes`), of the chain's state (`api.state_routes`) and of
its checkpoints (`api.checkpoint_routes`) are written against `ServingNode`,
the part of a running node they use, so they live below `node/`; the node
(`sharechain.node.service.Node`) is the one implementation, kept on the app
(`app.state.node`, set by `node.app.create_app`).

`Auth` is the FastAPI dependency every signed endpoint takes; it names the
caller whose RFC 9421 signature the guard verified (`api.refusals`).
`NodeDep` and `UploadsDep` are the node and its uploads in progress.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Annotated, Protocol

from fastapi import Depends, Request
from fastapi import Path as PathParam
from pydantic import BaseModel

from sharechain.api.auth import SignedRequest
from sharechain.api.quotas import Limits
from sharechain.api.refusals import SIGNED_SCOPE
from sharechain.crypto.keyfile import OrgKeys
from sharechain.errors import AccessDeniedError, AuthenticationError
from sharechain.ledger.chain import Ledger
from sharechain.ledger.store import Store
from sharechain.ordering.solo import Receipt
from sharechain.storage.datadir import DataDir
from sharechain.storage.uploads import Uploads

__all__ = [
    "Auth",
    "Caller",
    "HexId",
    "LimitsDep",
    "NodeDep",
    "Peers",
    "ServingNode",
    "Signer",
    "UploadsDep",
    "authenticate",
]


class Signer(Protocol):
    """An organisation that signs its requests with keys it may rotate (`api.peer_client`)."""

    @property
    def org(self) -> str: ...

    @property
    def keys(self) -> OrgKeys:
        """The keys it signs with now."""
        ...

    @property
    def keys_generation(self) -> int:
        """Counts key replacements: a client signed with older keys is rebuilt."""
        ...


class Peers(Protocol):
    """The part of a node's configuration the routes read."""

    @property
    def peers(self) -> tuple[tuple[str, str], ...]:
        """(organisation, URL) of the other nodes."""
        ...


class ServingNode(Signer, Protocol):
    """The running node the routes below `node/` serve from."""

    @property
    def config(self) -> Peers: ...

    @property
    def datadir(self) -> DataDir: ...

    @property
    def store(self) -> Store: ...

    @property
    def ledger(self) -> Ledger: ...

    @property
    def now(self) -> Callable[[], float]: ...

    @property
    def stop_event(self) -> threading.Event: ...

    @property
    def caught_up(self) -> bool: ...

    @property
    def halted(self) -> str | None:
        """Why the node stopped committing (None: it commits)."""
        ...

    @property
    def problem(self) -> str | None:
        """Why its store is quarantined (None: it verified)."""
        ...

    def roles(self, org: str) -> tuple[str, ...]: ...

    def public_key(self, org: str) -> bytes | None: ...

    def submit(self, raws: Sequence[bytes]) -> list[Future[Receipt]]: ...

    def wait_height(self, height: int, timeout: float) -> bool:
        """Wait until the local head reaches `height`; False on timeout or stop."""
        ...

    def spawn(self, name: str, target: Callable[[], None]) -> None:
        """Run `target` on a thread of its own until the node stops."""
        ...

    def on_close(self, closer: Callable[[], None]) -> None: ...


class Caller(BaseModel):
    """The authenticated organisation behind a request."""

    org: str
    """The organisation whose current key signed the request."""
    roles: tuple[str, ...]
    """Its roles on the chain (`member`, `supervisor`, `admin`)."""

    def require(self, role: str, what: str) -> None:
        if role not in self.roles:
            raise AccessDeniedError(
                f"{what} needs the {role} role; {self.org} has {list(self.roles)}"
            )

    @property
    def supervisor(self) -> bool:
        return "supervisor" in self.roles


async def authenticate(request: Request) -> Caller:
    """The caller whose signature the guard checked (`sharechain.api.refusals`).

    The guard verifies every signed path's signature from the headers, before
    the body is read, and checks the body against it as it streams. Async so
    FastAPI runs it on the event loop, not in a worker thread (it never blocks).
    """
    node: ServingNode = request.app.state.node
    signed: SignedRequest | None = request.scope.get(SIGNED_SCOPE)
    if signed is None:
        raise AuthenticationError("the request is not signed; sign it as RFC 9421 describes")
    return Caller(org=signed.org, roles=node.roles(signed.org))


Auth = Annotated[Caller, Depends(authenticate)]


def _node(request: Request) -> ServingNode:
    node: ServingNode = request.app.state.node
    return node


def _limits(request: Request) -> Limits:
    limits: Limits = request.app.state.limits
    return limits


def _uploads(request: Request) -> Uploads:
    uploads: Uploads = request.app.state.uploads
    return uploads


NodeDep = Annotated[ServingNode, Depends(_node)]
"""The node whose API serves the request."""
LimitsDep = Annotated[Limits, Depends(_limits)]
"""The node's per-caller limits (`sharechain.api.quotas`)."""
UploadsDep = Annotated[Uploads, Depends(_uploads)]
"""The chunked uploads in progress on that node."""
HexId = Annotated[str, PathParam(min_length=1, max_length=128, pattern="^[0-9a-f]+$")]
"""A dataset or grant id in a path (hex)."""
