"""Bodies of the data-plane routes between nodes: blobs, custody, key releases, shredding.

The routes are in `sharechain.sharing.delivery` (and the chunked uploads they
take in `sharechain.storage.uploads`); the refusals they answer with are in
`sharechain.api.problems`.
"""

from __future__ import annotations

from pydantic import Field

from sharechain.api.records import Hex, Model

__all__ = [
    "BlobDeleted",
    "BlobStored",
    "ChunkReceived",
    "CustodyBody",
    "CustodyDestroyed",
    "CustodyEntry",
    "CustodyStored",
    "KeyRelease",
    "KeySession",
    "PeerList",
    "ReleaseBody",
    "Shredded",
]


class BlobStored(Model):
    """The whole blob is here: its digest matched and it is installed."""

    digest: Hex
    stored: bool
    """Always true."""
    size: int
    """Bytes of the blob."""


class ChunkReceived(Model):
    """A chunk was accepted; send the next one from `received`."""

    digest: str
    """The blob's digest, or `id-<upload>` for a streamed upload before its final chunk."""
    stored: bool
    """Always false: the blob is complete only after its final chunk."""
    received: int
    """Bytes of the blob received so far."""


class BlobDeleted(Model):
    """The outcome of deleting a blob."""

    digest: Hex
    deleted: bool
    """False when the node did not hold it."""


class CustodyBody(Model):
    """A vault entry wrapped by the owner for this node's organisation (hex)."""

    wrapped: str = Field(..., min_length=2, max_length=8192, pattern="^[0-9a-f]+$")


class CustodyStored(Model):
    """A key (or share) deposited in this node's vault."""

    org: str
    """The custodian organisation (this node's)."""
    dataset: str
    epoch: int
    kind: str
    """`key` or `share`."""
    stored: bool


class CustodyEntry(Model):
    """This organisation's own vault entry, still wrapped to its key."""

    wrapped: Hex


class CustodyDestroyed(Model):
    """Vault entries destroyed on this node."""

    org: str
    destroyed: int
    """How many entries were destroyed."""


class Shredded(Model):
    """What this node destroyed of a dataset the chain records as purged."""

    org: str
    dataset: str
    purged: bool
    """Always true (a dataset not purged on this chain is refused with 403)."""
    destroyed: int
    """Vault entries destroyed by this call (0 when repeated)."""
    blobs_deleted: int
    height: int
    """This node's height when it shredded."""


class PeerList(Model):
    """This node's organisation and its peers' URLs."""

    org: str
    peers: dict[str, str]
    """Organisation id -> URL of its node."""


class ReleaseBody(Model):
    """A grantee's request for a custodian's key (or share)."""

    session: str = Field(..., min_length=8, max_length=128, pattern="^[0-9A-Za-z_-]+$")
    """Fetch session, issued by a custodian's node (`key-session`): the shares of one
    threshold fetch share it and count as one use."""


class KeySession(Model):
    """A key-release session a custodian's node issued to the caller (single-use)."""

    grant: str
    """The grant it is bound to (full id)."""
    session: str
    """The session id to name in `POST /v1/grants/{grant}/key-release`."""
    expires: int
    """When it stops being usable (Unix seconds)."""


class KeyRelease(Model):
    """A custodian's key (or share), wrapped to the grantee, released under the chain's record."""

    grant: str
    dataset: str
    epoch: int
    custodian: str
    """The organisation whose node released it."""
    to: str
    """The grantee it is wrapped to."""
    session: str
    wrapped: Hex
    """The key or share, wrapped (HPKE) to the grantee's encryption key."""
    tx_id: Hex
    """The `grant.key-release` transaction that recorded the release."""
    height: int
    index: int
