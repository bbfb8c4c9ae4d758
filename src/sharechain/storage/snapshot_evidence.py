"""The members' word on a snapshot: signed vouchers, and the quorum a node needs before use.

A node that made a snapshot at height `h` signs a *voucher*,

    Ed25519(org key, "sharechain/snapshot/v1\\0" || CBOR([org, h, block hash, state root,
                                                          content hash]))

and serves it beside the file (`GET /v1/snapshots`). Since every honest
node's snapshot at `h` is the same bytes, honest vouchers name the same
content hash. A node about to start from a snapshot asks its peers for their
vouchers and needs those of a quorum of the members active at `h` (the
checkpoint quorum, `checkpoint_quorum`, by default more than half; the
roster and each member's key are read from the snapshot's own state, which
is why the vouchers are fetched from the peers themselves and not from
whoever supplied the file). A peer that altered a row, a header or the hash
in its manifest is alone in vouching for what it sends: refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from sharechain.codec import encode
from sharechain.crypto.signing import SigningKey, verify
from sharechain.errors import InvalidSignatureError
from sharechain.ledger.checkpoints import CheckpointError, store_roster
from sharechain.ledger.hex_records import from_hex_json, to_hex_json
from sharechain.ledger.store import Store
from sharechain.storage.snapshot import SnapshotInfo, SnapshotRefusedError

__all__ = ["SNAPSHOT_DOMAIN", "Voucher", "check_quorum", "sign_voucher"]

SNAPSHOT_DOMAIN = b"sharechain/snapshot/v1\x00"


@dataclass(frozen=True, slots=True)
class Voucher:
    """A member's signed statement that its snapshot at a height has a content hash."""

    org: str
    """The vouching organisation."""
    height: int
    """The snapshot's height."""
    block_hash: bytes
    """The hash of block `height`."""
    state_root: bytes
    """The running state root after it."""
    content_hash: bytes
    """The snapshot's content hash (see `sharechain.storage.snapshot`)."""
    signature: bytes
    """Ed25519 signature of `org` over `SNAPSHOT_DOMAIN || statement()`."""

    def statement(self) -> bytes:
        return encode([self.org, self.height, self.block_hash, self.state_root, self.content_hash])

    def names(self, info: SnapshotInfo) -> bool:
        """True if this voucher is about the snapshot `info` describes."""
        return (self.height, self.block_hash, self.state_root, self.content_hash) == (
            info.height,
            info.block_hash,
            info.state_root,
            info.content_hash,
        )

    def to_json(self) -> dict[str, Any]:
        return to_hex_json(self)

    @classmethod
    def from_json(cls, value: Any) -> Voucher:
        hashes = ("block_hash", "state_root", "content_hash")
        return from_hex_json(cls, value, "snapshot voucher", hashes)


def sign_voucher(org: str, key: SigningKey, info: SnapshotInfo) -> Voucher:
    unsigned = Voucher(org, info.height, info.block_hash, info.state_root, info.content_hash, b"")
    return replace(unsigned, signature=key.sign(SNAPSHOT_DOMAIN, unsigned.statement()))


def check_quorum(store: Store, info: SnapshotInfo, vouchers: Iterable[Voucher]) -> list[str]:
    """The members whose vouchers name `info`; raise unless they are a quorum.

    `store` is the snapshot as loaded (its state gives the roster and keys).
    A voucher that does not verify under its member's key counts for nothing;
    one that verifies and names another content hash is reported.
    """
    try:
        roster = store_roster(store)
    except CheckpointError as exc:
        raise SnapshotRefusedError(
            "evidence", f"the snapshot's roster is unusable: {exc}"
        ) from None
    keys = {c.org: c.sign_key for c in roster.cosigners}
    agree: set[str] = set()
    disagree: set[str] = set()
    for v in vouchers:
        key = keys.get(v.org)
        if key is None or v.height != info.height:
            continue
        try:
            verify(key, v.signature, SNAPSHOT_DOMAIN, v.statement())
        except InvalidSignatureError:
            continue
        (agree if v.names(info) else disagree).add(v.org)
    disagree -= agree
    if len(agree) < roster.quorum:
        others = (
            f"; {', '.join(sorted(disagree))} vouch for another snapshot at that height"
            if disagree
            else ""
        )
        raise SnapshotRefusedError(
            "evidence",
            f"the snapshot at height {info.height} (content {info.content_hash.hex()[:16]}...) is "
            f"vouched for by {len(agree)} member(s) ({', '.join(sorted(agree)) or 'none'}), the "
            f"quorum is {roster.quorum} of {len(roster.cosigners)}{others}: refusing it; take "
            "a snapshot from another peer, or start without one to sync from genesis",
        )
    return sorted(agree)
