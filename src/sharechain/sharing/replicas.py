"""Who may read, store and delete a blob on a node: the replica rules, read from its chain.

Every node keeps a replica of the current sealed payload of every active
dataset (its upkeep fetches them), so a grantee can fetch while the owner is
offline. On a node, then:

- any member reads the current blob of an active dataset (the bytes are
  ciphertext: the chain gates the key); other blobs (old epochs, purged or
  retired datasets) only the node's own organisation;
- the node takes blobs from its own organisation, and replicas from the owner
  of an active dataset whose current key epoch names the blob;
- a blob some current key epoch names is never deleted; another only by the
  node's organisation or the owner of a dataset one of whose epochs named it.

Each check reads the node's own copy of the chain (a `Store`) and raises
`AccessDeniedError` saying why; the routes that apply them are in
`sharechain.sharing.delivery`.
"""

from __future__ import annotations

from sharechain.contracts import queries
from sharechain.contracts.epochs import KeyEpoch, epoch_from_value
from sharechain.errors import AccessDeniedError
from sharechain.ledger.state import StateReader
from sharechain.ledger.store import Store

__all__ = ["current_epochs", "may_delete", "may_read", "may_write", "naming"]


def current_epochs(store: Store) -> dict[str, KeyEpoch]:
    """Every dataset's current key epoch on this chain copy (dataset -> epoch)."""
    current: dict[str, KeyEpoch] = {}
    for _, value in StateReader(store).scan("epoch/"):
        e = epoch_from_value(value)  # keys sort by epoch: the last one seen is current
        current[e.dataset] = e
    return current


def naming(store: Store, digest: bytes) -> list[KeyEpoch]:
    """Current epochs of active datasets whose sealed payload is the blob `digest`."""
    found = []
    for e in current_epochs(store).values():
        named = e.ciphertext_digest == digest and not e.inline
        if named and queries.dataset(store, e.dataset).status == "active":
            found.append(e)
    return found


def may_read(store: Store, here: str, who: str, digest: bytes) -> None:
    """Raise `AccessDeniedError` unless `who` may download the blob `digest` from `here`'s node."""
    if who == here or naming(store, digest):
        return
    raise AccessDeniedError(
        f"{who} may not read blob {digest.hex()}: no current key epoch of an active "
        "dataset on this node's chain names it"
    )


def may_write(store: Store, here: str, who: str, digest: bytes) -> None:
    """Raise `AccessDeniedError` unless `here`'s node takes the blob `digest` from `who`."""
    if who == here:
        return
    for e in naming(store, digest):
        if who == e.by:
            return
    raise AccessDeniedError(
        f"{who} may not store blob {digest.hex()} on {here}'s node: a node takes "
        "blobs from its own organisation, and replicas from the owner of an active dataset "
        "whose current key epoch names the blob"
    )


def may_delete(store: Store, here: str, who: str, digest: bytes) -> None:
    """Raise `AccessDeniedError` unless `who` may delete the blob `digest` on `here`'s node."""
    if naming(store, digest):
        raise AccessDeniedError(
            f"blob {digest.hex()} is the current payload of a dataset; rotate first"
        )
    if who != here:
        owners = {
            v["by"]
            for _, v in StateReader(store).scan("epoch/")
            if v["ciphertext_digest"] == digest
        }
        if who not in owners:
            raise AccessDeniedError(
                f"only the owner of blob {digest.hex()}'s dataset may delete it"
            )
