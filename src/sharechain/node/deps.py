"""What a route takes from its request: the caller, the node, the node's uploads.

`Auth` is the FastAPI dependency every signed endpoint takes; it verifies
the request's RFC 9421 signature against the node's view of the chain and
names the caller. `NodeDep` and `UploadsDep` are the node and its uploads in
progress, kept on the app (`create_app`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi import Path as PathParam
from pydantic import BaseModel

from sharechain.api.auth import SignedRequest
from sharechain.api.quotas import Limits
from sharechain.api.refusals import SIGNED_SCOPE
from sharechain.errors import AccessDeniedError, AuthenticationError
from sharechain.node.service import Node
from sharechain.storage.uploads import Uploads

__all__ = ["Auth", "Caller", "HexId", "LimitsDep", "NodeDep", "UploadsDep", "authenticate"]


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
    node: Node = request.app.state.node
    signed: SignedRequest | None = request.scope.get(SIGNED_SCOPE)
    if signed is None:
        raise AuthenticationError("the request is not signed; sign it as RFC 9421 describes")
    return Caller(org=signed.org, roles=node.roles(signed.org))


Auth = Annotated[Caller, Depends(authenticate)]


def _node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def _limits(request: Request) -> Limits:
    limits: Limits = request.app.state.limits
    return limits


def _uploads(request: Request) -> Uploads:
    uploads: Uploads = request.app.state.uploads
    return uploads


NodeDep = Annotated[Node, Depends(_node)]
"""The node whose API serves the request."""
LimitsDep = Annotated[Limits, Depends(_limits)]
"""The node's per-caller limits (`sharechain.api.quotas`)."""
UploadsDep = Annotated[Uploads, Depends(_uploads)]
"""The chunked uploads in progress on that node."""
HexId = Annotated[str, PathParam(min_length=1, max_length=128, pattern="^[0-9a-f]+$")]
"""A dataset or grant id in a path (hex)."""
