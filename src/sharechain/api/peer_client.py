"""A signed API client to one node that follows this node's key rotations.

Every request a node makes to another (forwarding submissions, streaming
blocks, polling status) is signed with its organisation's key. After the
organisation rotates its key (`sharechain.node.service.Node.refresh_keys`), requests signed with
the old one are refused; a `PeerClient` therefore rebuilds its client with
the current key the first time it is used after a rotation.
"""

from __future__ import annotations

import threading

from sharechain.api.client import NodeClient
from sharechain.api.serving import Signer

__all__ = ["PeerClient"]


class PeerClient:
    """A `NodeClient` to `url`, signed with the node's current key. Thread-safe."""

    def __init__(self, node: Signer, url: str, *, timeout: float) -> None:
        self._node = node
        self._url = url
        self._timeout = timeout
        self._lock = threading.Lock()
        self._client: NodeClient | None = None
        self._retired: list[NodeClient] = []
        """Clients of former keys: requests in flight may still use them until `close`."""
        self._generation = -1

    def get(self) -> NodeClient:
        """The client to use now (a new one after a key rotation)."""
        node = self._node
        with self._lock:
            if self._client is None or self._generation != node.keys_generation:
                old = self._client
                self._generation = node.keys_generation
                self._client = NodeClient(
                    self._url, node.org, node.keys.signing, timeout=self._timeout
                )
                if old is not None:
                    self._retired.append(old)
            return self._client

    def close(self) -> None:
        with self._lock:
            for client in [*self._retired, *([self._client] if self._client else [])]:
                client.close()
            self._client, self._retired = None, []
