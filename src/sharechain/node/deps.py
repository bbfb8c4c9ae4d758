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

from sharechain.api.auth import verify_request
from sharechain.errors import AccessDeniedError
from sharechain.node.service import Node
from sharechain.node.uploads import Uploads

__all__ = ["Auth", "Caller", "HexId", "NodeDep", "UploadsDep", "authenticate"]


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
    """Verify the request's signature; raises `AuthenticationError` (401) saying why not."""
    node: Node = request.app.state.node
    body = await request.body()
    path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    signed = verify_request(
        method=request.method,
        authority=request.headers.get("host", ""),
        target=f"{path.decode('latin-1')}?{query.decode('latin-1')}",
        headers=request.headers,
        body=body,
        public_key=node.public_key,
        nonces=node.nonces,
        now=node.now,
    )
    return Caller(org=signed.org, roles=node.roles(signed.org))


Auth = Annotated[Caller, Depends(authenticate)]


def _node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def _uploads(request: Request) -> Uploads:
    uploads: Uploads = request.app.state.uploads
    return uploads


NodeDep = Annotated[Node, Depends(_node)]
"""The node whose API serves the request."""
UploadsDep = Annotated[Uploads, Depends(_uploads)]
"""The chunked uploads in progress on that node."""
HexId = Annotated[str, PathParam(min_length=1, max_length=128, pattern="^[0-9a-f]+$")]
"""A dataset or grant id in a path (hex)."""
