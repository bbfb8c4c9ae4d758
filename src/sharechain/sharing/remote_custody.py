"""Key custody on the nodes: the `Custodian` port over the organisations' nodes.

Each organisation's node keeps its own vault. The owner's tools (this
adapter, signing as the owner) put the owner's key into its own node's vault
and each custodian's key or share, wrapped by the owner to the custodian's
vault slot, into the custodian's node (`PUT /v1/custody/...`). A grantee
asks each holder's node to release (`POST /v1/grants/{id}/key-release`):
the node checks the grant on its own chain, records the release there, and
answers with the wrap only when the chain accepted it. Old epochs are
destroyed (`DELETE /v1/custody/...`) by each node once it has committed the
epoch that replaces them; a purge asks every node to shred
(`POST /v1/datasets/{id}/shred`), each checking the purge on its chain.

`peers` map an organisation to a client of *that organisation's node*, signed
as the acting organisation; `home` is the acting organisation's own node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from sharechain.api.client import NodeClient, raise_for_reply
from sharechain.contracts.epochs import KeyEpoch
from sharechain.crypto.hpke import unwrap_key
from sharechain.crypto.keyfile import OrgKeys
from sharechain.errors import ConfigError, SharechainError
from sharechain.sharing.custody import custody_material, encryption_key
from sharechain.sharing.ports import (
    Delivery,
    Deposit,
    NodeRefusedError,
    Rng,
    UnreachableError,
)
from sharechain.sharing.records import NodeShred, ReleaseRefusedError
from sharechain.sharing.remote_chain import committed_tx, organisations
from sharechain.storage.vault import vault_context, wrap_for_vault

__all__ = ["RemoteCustodian", "ask", "peer"]


def peer(peers: Mapping[str, NodeClient], org: str) -> NodeClient:
    """The client of `org`'s node; `ConfigError` when none was given."""
    try:
        return peers[org]
    except KeyError:
        raise ConfigError(f"no client of {org}'s node was given (needed for its custody)") from None


def ask(org: str, node: NodeClient, what: str, method: str, path: str, **kw: Any) -> httpx.Response:
    """Ask `org`'s node to `what`; a silence or a refusal becomes an error naming the node."""
    where = f"{org}'s node at {node.base_url}"
    try:
        reply = node.http.request(method, path, **kw)
    except httpx.TransportError as exc:
        connected = not isinstance(exc, httpx.ConnectError)
        raise UnreachableError(f"{where} ({type(exc).__name__})", connected=connected) from None
    try:
        raise_for_reply(reply)
    except SharechainError as exc:
        raise NodeRefusedError(where, what, str(exc)) from None
    return reply


class RemoteCustodian:
    """The vaults of the organisations' nodes, reached as one organisation."""

    def __init__(self, home: NodeClient, peers: Mapping[str, NodeClient], keys: OrgKeys) -> None:
        self.home = home
        self.peers = dict(peers)
        self.keys = keys
        self._asked: dict[tuple[str, int], list[str]] = {}
        """(dataset, epoch) -> organisations whose node may have kept a deposit of it."""

    def _node(self, org: str, after: bytes | None) -> NodeClient:
        """`org`'s node; when `after` is given, once it has committed that transaction."""
        if org == self.keys.org:
            return self.home
        node = self.peers.get(org)
        if node is None:
            raise UnreachableError(f"{org} (no address of its node is known)")
        if after is not None:
            committed_tx(node, after)
        return node

    def deposit(self, d: Deposit, rng: Rng) -> None:
        orgs = organisations(self.home)
        shares = custody_material(d.key, d.owner, d.holders, d.threshold, rng)
        for org, kind, secret in ((d.owner, "key", d.key), *shares):
            where = (d.dataset, d.epoch, kind)
            wrapped = wrap_for_vault(secret, org, encryption_key(orgs, org), *where)
            asked = self._asked.setdefault((d.dataset, d.epoch), [])
            node = self._node(org, None)
            asked.append(org)
            path, body = f"/v1/custody/{d.dataset}/{d.epoch}/{kind}", {"wrapped": wrapped.hex()}
            try:
                ask(org, node, f"keep its {kind} of key epoch {d.epoch}", "PUT", path, json=body)
            except UnreachableError as exc:
                if not exc.connected:
                    asked.remove(org)  # no connection: nothing can have been kept there
                raise

    def own_key(self, owner: str, dataset: str, epoch: int) -> bytes:
        wrapped = self.home.get_json(f"/v1/custody/{dataset}/{epoch}/key")["wrapped"]
        context = vault_context(owner, dataset, epoch, "key")
        return unwrap_key(bytes.fromhex(wrapped), self.keys.encryption_private, context=context)

    def release(
        self, holder: str, grant: str, *, to: str, session: str, epoch: KeyEpoch
    ) -> Delivery:
        """Ask `holder`'s node to release to us (`to` is always the signer here)."""
        node = self.peers.get(holder)
        if node is None:
            raise UnreachableError(f"{holder} (no address of its node is known)")
        try:
            if not session:  # the custodian's node issues it, bound to the grant and to us
                issued = node.http.post(f"/v1/grants/{grant}/key-session")
                raise_for_reply(issued)
                session = str(issued.json()["session"])
            reply = node.http.post(f"/v1/grants/{grant}/key-release", json={"session": session})
        except httpx.TransportError as exc:
            raise UnreachableError(
                f"{holder}'s node at {node.base_url} ({type(exc).__name__})"
            ) from None
        if reply.status_code in (403, 409):
            body = reply.json()
            code = str(body.get("code", "denied"))
            raise ReleaseRefusedError(
                f"key release refused ({code}) by {holder}'s node {node.base_url}: "
                f"{body.get('detail', body)}",
                code,
                str(body.get("reason", "")),
                holder,
            )
        raise_for_reply(reply)
        got = reply.json()
        return Delivery(
            str(got["custodian"]),
            int(got["epoch"]),
            bytes.fromhex(got["tx_id"]),
            bytes.fromhex(got["wrapped"]),
            session,
        )

    def destroy(
        self, dataset: str, epoch: int | None, orgs: Sequence[str], *, after: bytes | None
    ) -> int:
        if after is None:
            return 0  # never committed: no node releases anything of that epoch
        destroyed = 0
        params = {} if epoch is None else {"epoch": epoch}
        for org in dict.fromkeys(orgs):
            node = self._node(org, after)
            what = f"destroy its keys of dataset {dataset} it no longer needs"
            reply = ask(org, node, what, "DELETE", f"/v1/custody/{dataset}", params=params)
            destroyed += int(reply.json()["destroyed"])
        return destroyed

    def undo(self, dataset: str, epoch: int, orgs: Sequence[str]) -> tuple[str, ...]:
        """Ask each node that may hold a deposit of the uncommitted `epoch` to destroy it."""
        pending = []
        asked = self._asked.pop((dataset, epoch), list(orgs))
        for org in dict.fromkeys(o for o in orgs if o in asked):
            try:
                node = self._node(org, None)
                what = f"destroy its deposit for the uncommitted key epoch {epoch}"
                path = f"/v1/custody/{dataset}"
                ask(org, node, what, "DELETE", path, params={"epoch": epoch})
            except SharechainError as exc:
                pending.append(str(exc))
        return tuple(pending)

    def shred(self, dataset: str, purge_tx: bytes) -> tuple[NodeShred, ...]:
        """Ask each node, once it has committed `purge_tx`, to shred `dataset` there.

        A node that does not answer, does not commit the purge in time or refuses is
        reported, not raised.
        """
        done = []
        for org, client in self.peers.items():
            try:
                committed_tx(client, purge_tx)
                reply = client.http.post(f"/v1/datasets/{dataset}/shred")
                raise_for_reply(reply)
                body = reply.json()
                destroyed, deleted = int(body["destroyed"]), int(body["blobs_deleted"])
                done.append(NodeShred(org, client.base_url, destroyed, deleted))
            except httpx.TransportError as exc:
                why = f"does not answer ({type(exc).__name__})"
                done.append(NodeShred(org, client.base_url, 0, 0, why))
            except SharechainError as exc:
                done.append(NodeShred(org, client.base_url, 0, 0, str(exc)))
        return tuple(done)
