"""Evidence of a member's fault: the signed blocks a node voided, kept within a budget.

A member's signed block that every node refuses (threats 41 and 43 in
docs/security.md) is voided rather than halted on, and each node keeps it
under `<data dir>/evidence/`: it carries its orderer's signature, so it
proves the fault to anyone. A hostile member can append such blocks again and
again (each as large as etcd accepts), so what a node keeps is bounded:
`evidence_bytes` in the data directory's settings (default
`DEFAULT_EVIDENCE_BYTES`) for the folder as a whole, and never so much that
less than twice the node's disk reserve would stay free. A block past either
bound is not kept; the ALERT the caller logs still names its orderer, height
and hash.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sharechain.crypto.signing import verify
from sharechain.errors import EncodingError, InvalidSignatureError
from sharechain.ledger.blocks import BLOCK_DOMAIN, decode_block
from sharechain.ledger.identities import Organisation
from sharechain.ledger.store import Head

__all__ = ["DEFAULT_EVIDENCE_BYTES", "Evidence", "Exhibit", "Kept", "examine"]

DEFAULT_EVIDENCE_BYTES: Final = 64 * 1024 * 1024
"""What a node keeps of voided blocks at most, all together (`evidence_bytes`)."""


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


@dataclass(frozen=True, slots=True)
class Kept:
    """Where a voided block's evidence is, or why it was not kept."""

    path: Path | None
    """The file holding it (None: not kept)."""
    digest: str
    """The block's SHA-256, hex: it names the block in the logs either way."""
    why_not: str = ""
    """Why it was not kept ("" when it was)."""

    def describe(self) -> str:
        if self.path is not None:
            return f"kept as evidence in {self.path}"
        return f"not kept as evidence ({self.why_not}; sha256 {self.digest})"


@dataclass
class Evidence:
    """The evidence folder of one node, held to `budget` bytes and clear of `reserve`."""

    folder: Path
    budget: int = DEFAULT_EVIDENCE_BYTES
    reserve: int = 0
    """The node's disk reserve: a block is not kept if less than twice it would stay free."""
    free_bytes: Callable[[Path], int] = field(default=_free_bytes)

    def used(self) -> int:
        """Bytes the folder's evidence files hold now."""
        if not self.folder.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.folder.glob("*.block"))

    def keep(self, height: int, orderer: str, data: bytes) -> Kept:
        """Write the signed block `data` once (by content), unless a bound forbids it."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.folder / f"invalid-block-{height}-{orderer}-{digest[:16]}.block"
        if path.exists():
            return Kept(path, digest)
        used = self.used()
        if used + len(data) > self.budget:
            why = (
                f"the evidence folder holds {used:,} bytes of its {self.budget:,} "
                "(settings.evidence_bytes); move older evidence away to keep more"
            )
            return Kept(None, digest, why)
        try:
            self.folder.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            return Kept(None, digest, f"its folder could not be made: {exc}")
        if self.free_bytes(self.folder) - len(data) < 2 * self.reserve:
            why = (
                f"the disk would keep less than twice the node's reserve of {self.reserve:,} bytes"
            )
            return Kept(None, digest, why)
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:  # a full disk, say: the block is voided all the same
            tmp.unlink(missing_ok=True)
            return Kept(None, digest, f"writing it failed: {exc}")
        return Kept(path, digest)


@dataclass(frozen=True, slots=True)
class Exhibit:
    """One evidence file, read back: what the block says and whether its signature holds."""

    path: Path
    size: int
    digest: str
    """SHA-256 of the file, hex: the name the ALERT gave it."""
    height: int | None = None
    orderer: str | None = None
    timestamp_ms: int | None = None
    transactions: int | None = None
    signed: bool | None = None
    """True: the orderer's key as the chain now records it verifies the block; False: it
    does not; None: the file is no block, or the orderer is no organisation of the chain."""
    signature: str = ""
    """The signature check, in words."""
    chain_hash: str | None = None
    """The hash of the block the chain holds at that height (hex), None if none yet."""

    def as_json(self) -> dict[str, object]:
        return {
            "file": str(self.path),
            "bytes": self.size,
            "sha256": self.digest,
            "height": self.height,
            "orderer": self.orderer,
            "timestamp_ms": self.timestamp_ms,
            "transactions": self.transactions,
            "signed": self.signed,
            "signature": self.signature,
            "chain_hash": self.chain_hash,
        }


def examine(
    folder: Path,
    organisation: Callable[[str], Organisation | None],
    block_at: Callable[[int], Head | None],
) -> list[Exhibit]:
    """Read every evidence file in `folder`, lowest height first.

    `organisation` and `block_at` read the node's chain (`Ledger.organisation`,
    `Store.block_meta`). A block signed with a key the orderer has rotated
    since no longer verifies here: the check names the current key's failure,
    and the file keeps the signature for whoever holds the older key.
    """
    found = []
    for path in sorted(folder.glob("*.block")) if folder.is_dir() else ():
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        try:
            block = decode_block(data)
        except EncodingError as exc:
            found.append(Exhibit(path, len(data), digest, signature=f"not a block ({exc})"))
            continue
        h = block.header
        org = organisation(h.orderer)
        signed: bool | None
        if org is None:
            signed, words = None, f"{h.orderer!r} is no organisation of this chain"
        else:
            try:
                verify(org.sign_key, block.signature, BLOCK_DOMAIN, h.encoded())
                signed, words = True, f"signed with {h.orderer}'s key as the chain records it"
            except InvalidSignatureError:
                signed = False
                words = f"not {h.orderer}'s current key (rotated since, or not theirs)"
        held = block_at(h.height)
        found.append(
            Exhibit(
                path,
                len(data),
                digest,
                h.height,
                h.orderer,
                h.timestamp,
                len(block.txs),
                signed,
                words,
                None if held is None else held.hash.hex(),
            )
        )
    return sorted(found, key=lambda e: (e.height is None, e.height or 0, e.path.name))
