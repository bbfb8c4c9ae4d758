"""The data plane in node mode: publish, fetch, rotate, revoke and purge through the nodes.

The commands of the data plane need more than the one node a command talks
to: the owner deposits keys or shares in its custodians' nodes and copies
the blob there; a grantee asks each custodian's node to release; a purge
asks every node to shred. Where the nodes are:

- `--network FILE`: every node the network file lists;
- `--node URL`: the node's own organisation and its peers' URLs
  (`GET /v1/peers`), or, from a node that does not serve it, the `node.json`
  its `sharechain node start` left in `--data-dir`.

Which node stands for the signer: the owner's steps (publish, rotate, the
rotation after a revocation) need the owner's *own* node, whose vault keeps
its copy of the data key; a fetch checks every release against the chain of
the node the command talks to. Every client is signed as the signer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from sharechain.api.client import NodeClient
from sharechain.contracts.grants import Grant
from sharechain.crypto.keyfile import OrgKeys
from sharechain.errors import ConfigError, NotFoundError
from sharechain.sharing.agreement import read_node_file
from sharechain.sharing.backend import Listing, Progress
from sharechain.sharing.local import Fetched, Published, Rotated
from sharechain.sharing.remote import (
    fetch_remote,
    key_epoch_of,
    publish_remote,
    rotate_remote,
)
from sharechain.sharing.remote_purge import PurgeReport, shred_remote
from sharechain.storage.datadir import default_data_dir

__all__ = ["RemotePlane", "known_nodes"]


def _stderr(message: str) -> None:
    sys.stderr.write(message + "\n")


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


class RemotePlane:
    """The data plane of one signer over the nodes it knows."""

    def __init__(
        self,
        client: NodeClient,
        keys: OrgKeys,
        nodes: Mapping[str, str],
        warn: Callable[[str], None] = _stderr,
    ) -> None:
        self.warn = warn
        """Where notes and warnings for the operator go (rich markup allowed)."""
        self.client = client
        """The node the command talks to."""
        self.keys = keys
        self.nodes = dict(nodes)
        """Organisation -> URL of every node known."""

    @contextmanager
    def _clients(self, own: NodeClient) -> Iterator[dict[str, NodeClient]]:
        """A signed client of every known node; `own` stands for the signer's node."""
        made = {
            org: NodeClient(url, self.keys.org, self.keys.signing, timeout=30.0)
            for org, url in self.nodes.items()
            if url.rstrip("/") != own.base_url
        }
        clients = {org: made.get(org, own) for org in self.nodes} | {self.keys.org: own}
        try:
            yield clients
        finally:
            for c in made.values():
                c.close()

    @contextmanager
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
        with NodeClient(url, me, self.keys.signing, timeout=30.0) as own:
            yield own

    def publish(self, source: Path, listing: Listing, progress: Progress | None) -> Published:
        with self._owner_node() as own, self._clients(own) as clients:
            return publish_remote(
                own, self.keys, source, peers=clients, progress=progress, **listing.options()
            )

    def rotate(self, ds: str, *, reason: str) -> Rotated:
        with self._owner_node() as own, self._clients(own) as clients:
            return rotate_remote(own, self.keys, ds, peers=clients, reason=reason)

    def rotate_after_revoke(self, g: Grant) -> Rotated | None:
        """The owner's rotation after its revocation (`sharing.rotate_after_revoke` remotely)."""
        gid = g.id
        if g.status != "revoked":
            raise ConfigError(f"grant {gid} is not revoked; revoke it first")
        try:
            epoch = key_epoch_of(self.client, g.dataset)
        except NotFoundError:
            return None  # registered with digests only: no payload to re-seal
        ds = self.client.get_json(f"/v1/datasets/{g.dataset}")["dataset"]
        if ds["status"] != "active":
            return None
        if self.keys.org != epoch.by:
            # Only the owner's tools hold the data key; a supervisor's revocation is still
            # enforced by the chain (every release under the grant is refused).
            self.warn(
                f"[yellow]note:[/] the key epoch of dataset {g.dataset} was not rotated: only "
                f"its owner ({epoch.by}) can; run `sharechain dataset rotate-key {g.dataset} "
                f"--as {epoch.by}` with its node"
            )
            return None
        return self.rotate(g.dataset, reason=f"grant {gid} revoked")

    def fetch(
        self, gid: str, out: Path, *, offline: frozenset[str], progress: Progress | None
    ) -> Fetched:
        with self._clients(self.client) as clients:
            return fetch_remote(clients, self.keys, gid, out, offline=offline, progress=progress)

    def shred(self, ds: str, purge_tx: bytes) -> PurgeReport:
        with self._clients(self.client) as clients:
            report = shred_remote(clients, ds, purge_tx)
        for n in report.unreached:
            self.warn(
                f"[yellow]warning:[/] {n.org}'s node at {n.url} did not shred dataset {ds} now "
                f"({n.error}); it shreds on its next request about the dataset"
            )
        return report
