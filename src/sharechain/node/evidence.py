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

__all__ = ["DEFAULT_EVIDENCE_BYTES", "Evidence", "Kept"]

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
