"""Purging a dataset over the network: the record on the chain, the shredding on every node.

On the embedded default `sharing.purge` records `dataset.purge` and destroys
every key, share and blob in the one data directory. On a network each node
keeps its own vault and blobs, so the owner's (or a supervisor's) tools:

1. submit `dataset.purge` to their node and wait for it to commit (the
   chain revokes every grant and keeps the record, marked purged);
2. ask every node they know (`POST /v1/datasets/{id}/shred`), once that node
   has committed the purge, to destroy its own entries and blobs. The node
   checks the purge on its own chain before it deletes anything.

A node that cannot be reached is named in the result; it shreds lazily on the
first later request about the dataset (`sharechain.sharing.shredding`), and a
key release for the dataset is refused by the chain anyway (every grant was
revoked).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from sharechain.api.client import NodeClient, raise_for_reply
from sharechain.contracts.datasets import PURGE
from sharechain.crypto.keyfile import OrgKeys
from sharechain.errors import SharechainError
from sharechain.ledger.transactions import sign_transaction
from sharechain.sharing.remote import committed_tx

__all__ = ["NodeShred", "PurgeReport", "purge_remote", "shred_remote"]


@dataclass(frozen=True, slots=True)
class NodeShred:
    """What one node did when asked to shred a purged dataset."""

    org: str
    """The node's organisation."""
    url: str
    """Where it was asked."""
    destroyed: int
    """Vault entries it destroyed."""
    blobs_deleted: int
    """Blobs it deleted."""
    error: str = ""
    """Why it could not be asked or refused ("" when it shredded)."""


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """A purge recorded on the chain and the shredding on each node."""

    dataset: str
    """The purged dataset."""
    tx_id: bytes
    """The `dataset.purge` transaction (the record that stays)."""
    nodes: tuple[NodeShred, ...]
    """Each node asked, in the order asked."""

    @property
    def keys_destroyed(self) -> int:
        return sum(n.destroyed for n in self.nodes)

    @property
    def blobs_deleted(self) -> int:
        return sum(n.blobs_deleted for n in self.nodes)

    @property
    def unreached(self) -> tuple[NodeShred, ...]:
        """Nodes that did not shred now (they shred on their next request about it)."""
        return tuple(n for n in self.nodes if n.error)


def shred_remote(nodes: Mapping[str, NodeClient], dataset: str, purge_tx: bytes) -> PurgeReport:
    """Ask each node, once it has committed `purge_tx`, to shred `dataset` there.

    `nodes` map an organisation to a client of its node. A node that does not answer,
    does not commit the purge in time or refuses is reported, not raised.
    """
    done = []
    for org, client in dict(nodes).items():
        try:
            committed_tx(client, purge_tx)
            reply = client.http.post(f"/v1/datasets/{dataset}/shred")
            raise_for_reply(reply)
            body = reply.json()
            done.append(
                NodeShred(org, client.base_url, int(body["destroyed"]), int(body["blobs_deleted"]))
            )
        except httpx.TransportError as exc:
            why = f"does not answer ({type(exc).__name__})"
            done.append(NodeShred(org, client.base_url, 0, 0, why))
        except SharechainError as exc:
            done.append(NodeShred(org, client.base_url, 0, 0, str(exc)))
    return PurgeReport(dataset, purge_tx, tuple(done))


def purge_remote(
    client: NodeClient,
    keys: OrgKeys,
    dataset: str,
    *,
    nodes: Mapping[str, NodeClient],
    reason: str = "",
    rng: Callable[[int], bytes] = os.urandom,
    now: Callable[[], float] = time.time,
) -> PurgeReport:
    """Submit `dataset.purge` through `client` (signed by `keys`), then shred on `nodes`.

    Raises `TransactionRejectedError` with the chain's code when the purge is refused
    (not the owner or a supervisor, already purged); nothing is shredded then.
    """
    body = {"dataset": dataset, "reason": reason}
    stx = sign_transaction(keys.signing, PURGE, keys.org, body, now=now, rng=rng)
    receipt = client.submit_checked(stx.raw)
    return shred_remote(nodes, dataset, receipt.tx_id)
