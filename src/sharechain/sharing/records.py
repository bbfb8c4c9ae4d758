"""What the data plane's operations return, and how a publication is described.

Both ways of running the data plane (the embedded default and the nodes) give
these same records, so the faces (command line, console, demo) print the same
tables and the same JSON whichever they hold: `Published`, `Fetched`,
`Rotated`, `Revoked`, `PurgeReport` (with one `NodeShred` per place that
destroyed keys and blobs), the `Listing` a publication is described by, and
`ChainInfo` for `chain info`.

`derive_id` is the id the chain gives the object a transaction creates
(`derive_id("dataset", register_tx_id)`), re-exported here for the faces.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sharechain.contracts import derive_id
from sharechain.crypto.stream import StreamDigests
from sharechain.errors import AccessDeniedError, SharechainError
from sharechain.ledger.identities import Organisation
from sharechain.sharing.custody import CUSTODY_MODES, KeyRelease

__all__ = [
    "CUSTODY_MODES",
    "DEFAULT_INLINE_LIMIT",
    "CatalogueQuery",
    "ChainInfo",
    "Fetched",
    "KeyRelease",
    "Listing",
    "NodeShred",
    "Progress",
    "Published",
    "PurgeReport",
    "ReleaseRefusedError",
    "Revoked",
    "Rotated",
    "RotationBlockedError",
    "derive_id",
]

DEFAULT_INLINE_LIMIT: Final = 64 * 1024
"""Payloads up to this size (plaintext bytes) travel sealed on the chain, not as blobs."""

Progress = Callable[[int], None]
"""Called with the number of bytes just processed (for progress bars)."""


class ReleaseRefusedError(AccessDeniedError):
    """A custodian refused to release its key or share; `code` is the chain's validation code.

    Catch it to tell a refusal the chain recorded (`revoked`, `expired`, `wrong_grantee`,
    ...) from other failures; the message says who refused and why.
    """

    def __init__(self, message: str, code: str, reason: str = "", custodian: str = "") -> None:
        super().__init__(message)
        self.code = code
        """The chain's code (`revoked`, `expired`, ...), or `no_key` / `denied`."""
        self.reason = reason
        """The chain's reason, when the chain refused."""
        self.custodian = custodian
        """The custodian that refused."""


class RotationBlockedError(SharechainError):
    """A grant was revoked on the chain, but its dataset could not move to a new key epoch.

    The message names who blocked the rotation (a custodian's node that refused
    or did not answer, the chain's refusal) and what to run once it is resolved.
    The revocation itself holds: every custodian refuses releases under the grant.
    """

    def __init__(self, message: str, grant: str, dataset: str) -> None:
        super().__init__(message)
        self.grant = grant
        """The revoked grant."""
        self.dataset = dataset
        """The dataset still on its old key epoch."""


@dataclass(frozen=True, slots=True)
class Listing:
    """How a publication describes its file in the catalogue and who keeps its key."""

    title: str
    """Short name in the catalogue."""
    description: str = ""
    """Free text."""
    tags: tuple[str, ...] = ()
    """Catalogue tags."""
    classification: str = "internal"
    """public, internal, confidential or secret."""
    schema: tuple[tuple[str, str], ...] = ()
    """Columns a request may name, (name, type)."""
    policy: Mapping[str, Any] | None = None
    """The sharing policy (docs/policies.md), None for the default."""
    custody: str = "owner"
    """owner, supervisor or threshold."""
    holders: tuple[str, ...] | None = None
    """Key holders; None to let the custody mode choose."""
    threshold: int | None = None
    """Shares needed under threshold custody; None for the default."""


@dataclass(frozen=True, slots=True)
class Published:
    """A dataset registered with its sealed payload and key custody."""

    dataset: str
    """The new dataset id."""
    epoch: int
    """Its key epoch (1)."""
    digests: StreamDigests
    """Fingerprints recorded on the chain."""
    custody: str
    """Custody mode."""
    holders: tuple[str, ...]
    """Organisations holding the key or its shares."""
    threshold: int
    """Shares needed (threshold custody), else 1."""
    inline: bool
    """Whether the sealed payload travels on the chain instead of the blob store."""
    tx_id: bytes
    """The `dataset.register` transaction."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """A payload fetched, decrypted and verified against the chain."""

    grant: str
    """The grant used."""
    dataset: str
    """The dataset."""
    epoch: int
    """Key epoch of the payload opened."""
    path: Path
    """Where the plaintext now is."""
    digests: StreamDigests
    """Fingerprints computed while opening (equal to the chain's)."""
    releases: tuple[KeyRelease, ...]
    """The key releases it took."""
    read_tx: bytes
    """The read receipt (`grant.read`) signed by the grantee."""


@dataclass(frozen=True, slots=True)
class Rotated:
    """A dataset moved to a new key epoch."""

    dataset: str
    """The dataset."""
    epoch: int
    """The new key epoch."""
    ciphertext_digest: bytes
    """Digest of the newly sealed payload."""
    tx_id: bytes
    """The `dataset.epoch` transaction."""
    destroyed: int
    """Custody entries of the old epoch destroyed (over every place holding them)."""


@dataclass(frozen=True, slots=True)
class Revoked:
    """A revoked grant and the key rotation that followed."""

    grant: str
    """The grant."""
    tx_id: bytes
    """The `grant.revoke` transaction."""
    rotated: Rotated | None
    """The new key epoch of the dataset (None if there was no payload to re-seal)."""


@dataclass(frozen=True, slots=True)
class NodeShred:
    """What one place (a node, or the embedded data directory) destroyed of a purged dataset."""

    org: str
    """The organisation whose node it is (on the embedded default: the one purging)."""
    url: str
    """Where it was asked: a node's URL, or the data directory."""
    destroyed: int
    """Vault entries it destroyed."""
    blobs_deleted: int
    """Blobs it deleted."""
    error: str = ""
    """Why it could not be asked or refused ("" when it shredded)."""


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """A purge recorded on the chain and the shredding in each place."""

    dataset: str
    """The purged dataset."""
    tx_id: bytes
    """The `dataset.purge` transaction (the record that stays)."""
    nodes: tuple[NodeShred, ...]
    """Each place asked, in the order asked."""

    @property
    def keys_destroyed(self) -> int:
        return sum(n.destroyed for n in self.nodes)

    @property
    def blobs_deleted(self) -> int:
        return sum(n.blobs_deleted for n in self.nodes)

    @property
    def unreached(self) -> tuple[NodeShred, ...]:
        """Places that did not shred now (a node shreds on its next request about it)."""
        return tuple(n for n in self.nodes if n.error)


@dataclass(frozen=True, slots=True)
class CatalogueQuery:
    """Which datasets of the catalogue to list (every filter optional)."""

    owner: str | None = None
    """Only this owner's datasets."""
    tag: str | None = None
    """Only datasets with this tag."""
    classification: str | None = None
    """Only datasets of this classification."""
    text: str | None = None
    """Text in title, description or tags."""
    include_inactive: bool = False
    """Retired, superseded and purged datasets too."""


@dataclass(frozen=True, slots=True)
class ChainInfo:
    """What `chain info` shows."""

    consortium: str
    """Consortium name."""
    genesis_hash: bytes
    """Hash of block 0."""
    height: int
    """Height of the head."""
    head_hash: bytes
    """The head's header hash."""
    head_timestamp: int
    """The head's block time (ms)."""
    state_root: bytes
    """Running state root at the head."""
    transactions: int
    """Transactions on the chain, refused ones included."""
    organisations: tuple[Organisation, ...]
    """Every organisation ever admitted."""
    data_dir: str | None
    """The data directory read (embedded), else None."""
    node: str | None
    """The node's URL (node mode), else None."""
