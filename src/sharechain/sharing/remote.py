"""Which nodes the data plane reaches in node mode, and its ports over them.

The data plane needs more than the one node a command talks to: the owner
deposits keys or shares in its custodians' nodes and copies the blob there;
a grantee asks each custodian's node to release; a purge asks every node to
shred. Where the nodes are (`known_nodes`):

- a network file lists every node;
- otherwise the node's own organisation and its peers' URLs (`GET
  /v1/peers`), or, from a node that does not serve it, the `node.json` its
  `sharechain node start` left in the data directory.

Which node stands for the signer (`NodeSet.ports`): the owner's steps
(publish, rotate) need the owner's *own* node, whose vault keeps its copy of
the data key; a fetch checks every release against the chain of the node
the command talks to. Every client is signed as the signer.

`publish_remote`, `fetch_remote` and `revoke_remote` run one operation with
clients the caller made (tests, benchmarks).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from sharechain.api.client import BUSY_RETRIES, NodeClient
from sharechain.crypto.keyfile import OrgKeys
from sharechain.errors import ConfigError, NotFoundError
from sharechain.sharing.agreement import read_node_file
from sharechain.sharing.fetch import fetch
from sharechain.sharing.ports import Ports, quiet
from sharechain.sharing.publish import publish
from sharechain.sharing.records import Fetched, Listing, Published, Revoked
from sharechain.sharing.remote_blobs import RemoteBlobs
from sharechain.sharing.remote_chain import RemoteChain
from sharechain.sharing.remote_custody import RemoteCustodian
from sharechain.sharing.rotation import revoke
from sharechain.storage.datadir import default_data_dir

__all__ = [
    "NodeSet",
    "fetch_remote",
    "known_nodes",
    "publish_remote",
    "remote_ports",
    "revoke_remote",
]


def known_nodes(
    client: NodeClient, listed: Mapping[str, str] | None, data_dir: Path | None
) -> dict[str, str]:
    """Organisation -> URL of every node reachable from this command (see the module doc)."""
    if listed is not None:
        return dict(listed)
    try:
        body = client.get_json("/v1/peers")
    except NotFoundError:  # a node from before /v1/peers: its node.json, if this is its dir
        found = read_node_file(data_dir if data_dir is not None else default_data_dir())
        if found is None:
            return {}
        return {found.org: client.base_url, **dict(found.peers)}
    return {str(body["org"]): client.base_url, **{str(k): str(v) for k, v in body["peers"].items()}}


@contextlib.contextmanager
def remote_ports(
    home: NodeClient,
    peers: Mapping[str, NodeClient],
    keys: OrgKeys,
    *,
    rng: Callable[[int], bytes] = os.urandom,
    now: Callable[[], float] = time.time,
    warn: Callable[[str], None] = quiet,
) -> Iterator[Ports]:
    """The node-mode adapters: `home` is the signer's node, `peers` every node known."""
    clients = {**peers, keys.org: home}
    with tempfile.TemporaryDirectory(prefix="sharechain-") as tmp:
        yield Ports(
            RemoteChain(home, keys, rng=rng, now=now),
            RemoteCustodian(home, clients, keys),
            RemoteBlobs(home, clients, keys.org, Path(tmp), warn),
            rng,
            warn,
        )


class NodeSet:
    """The nodes one signer reaches: the command's node and every node known from it."""

    def __init__(
        self,
        client: NodeClient,
        keys: OrgKeys,
        listed: Mapping[str, str] | None,
        data_dir: Path | None,
    ) -> None:
        self.client = client
        """The node the command talks to."""
        self.keys = keys
        self._listed = listed
        self._data_dir = data_dir
        self._nodes: dict[str, str] | None = None

    @property
    def nodes(self) -> dict[str, str]:
        """Organisation -> URL of every node known (asked once)."""
        if self._nodes is None:
            self._nodes = known_nodes(self.client, self._listed, self._data_dir)
        return self._nodes

    @contextlib.contextmanager
    def _owner_node(self) -> Iterator[NodeClient]:
        """The signer's own node: the one the command talks to, or its URL from the peers."""
        me = self.keys.org
        url = self.nodes.get(me)
        if url is None and self.nodes:
            raise ConfigError(
                f"{me}'s own node is needed (its vault keeps {me}'s copy of the data key), "
                f"but none is known from {self.client.base_url} (nodes known: "
                f"{', '.join(sorted(self.nodes))}); give its URL with --node, or --network FILE"
            )
        if url is None or url.rstrip("/") == self.client.base_url:
            yield self.client
            return
        with self._client(url) as own:
            yield own

    def _client(self, url: str) -> NodeClient:
        """A client of the node at `url`, signing as this organisation (a user's: it
        waits out a node's busy refusals)."""
        return NodeClient(
            url, self.keys.org, self.keys.signing, timeout=30.0, busy_retries=BUSY_RETRIES
        )

    @contextlib.contextmanager
    def ports(self, *, owner: bool, warn: Callable[[str], None]) -> Iterator[Ports]:
        """Adapters over every known node; `owner`: the signer's own node stands for it."""
        with contextlib.ExitStack() as stack:
            home = stack.enter_context(self._owner_node()) if owner else self.client
            peers = {}
            for org, url in self.nodes.items():
                if url.rstrip("/") == home.base_url:
                    peers[org] = home
                else:
                    peers[org] = stack.enter_context(self._client(url))
            yield stack.enter_context(remote_ports(home, peers, self.keys, warn=warn))


def publish_remote(
    client: NodeClient,
    keys: OrgKeys,
    source: Path,
    *,
    peers: Mapping[str, NodeClient],
    rng: Callable[[int], bytes] = os.urandom,
    now: Callable[[], float] = time.time,
    inline_limit: int | None = None,
    **listing: Any,
) -> Published:
    """`publish` as `keys.org` through its node `client`; `peers` are the custodians' nodes."""
    with remote_ports(client, peers, keys, rng=rng, now=now) as ports:
        progress = listing.pop("progress", None)
        segment = {k: listing.pop(k) for k in ("segment_size",) if k in listing}
        return publish(
            ports,
            keys.org,
            source,
            _listing(listing),
            inline_limit=inline_limit,
            progress=progress,
            **segment,
        )


def _listing(options: dict[str, Any]) -> Listing:
    for name in ("tags", "holders", "schema"):
        if options.get(name) is not None:
            options[name] = tuple(options[name])
    return Listing(**options)


def fetch_remote(
    clients: Mapping[str, NodeClient],
    keys: OrgKeys,
    grant: str,
    out: Path,
    *,
    dataset: str | None = None,
    offline: frozenset[str] = frozenset(),
    rng: Callable[[int], bytes] = os.urandom,
    now: Callable[[], float] = time.time,
) -> Fetched:
    """`fetch` as `keys.org`; `clients[keys.org]` is its own node (its chain checks all)."""
    home = clients.get(keys.org)
    if home is None:
        raise ConfigError(f"no client of {keys.org}'s node was given (needed for its custody)")
    with remote_ports(home, clients, keys, rng=rng, now=now) as ports:
        return fetch(ports, keys.org, grant, out, dataset=dataset, offline=offline)


def revoke_remote(
    client: NodeClient,
    keys: OrgKeys,
    grant: str,
    *,
    peers: Mapping[str, NodeClient],
    reason: str = "",
    rng: Callable[[int], bytes] = os.urandom,
    now: Callable[[], float] = time.time,
) -> Revoked:
    """`revoke` as `keys.org` (the owner) through its node; `peers` are the other nodes."""
    with remote_ports(client, peers, keys, rng=rng, now=now) as ports:
        return revoke(ports, keys.org, grant, reason=reason)
