"""The console's checkpoint page: the latest quorum checkpoint and a consistency proof, checked.

`/ui/checkpoints` shows what `GET /v1/checkpoint` returns (the latest
checkpoint a quorum of the members cosigned, made now if there is none yet):
its tree size, root, each member's cosignature against the quorum, and the
signed note's text. The note is verified here against the members' keys on
this node's chain before it is shown.

`?old=N&new=M` asks for the RFC 9162 consistency proof between two sizes of
the history tree (by default half the checkpoint's size and the checkpoint's
size), as `GET /v1/checkpoint/consistency` gives it; the page verifies the
proof against both roots and, when `new` is the checkpoint's size, that its
root is the cosigned one.

Both read the node's `Cosigner` (`sharechain.api.cosigning`), the object
behind the checkpoint routes: no second way to build a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from sharechain.api.cosigning import Cosigner
from sharechain.crypto.merkle import verify_consistency
from sharechain.crypto.signed_note import parse_note
from sharechain.errors import SharechainError
from sharechain.ledger.checkpoints import (
    Checkpoint,
    CheckpointError,
    Roster,
    store_roster,
    verify_checkpoint,
)
from sharechain.web.console import console_of
from sharechain.web.guard import PREFIX, RefusedError

__all__ = ["Consistency", "router"]

router = APIRouter(include_in_schema=False)
_Size = Annotated[int | None, Query(ge=1, le=2**62)]


@dataclass(frozen=True, slots=True)
class Consistency:
    """A consistency proof between two sizes, and what checking it found."""

    old: int
    """Blocks in the older tree."""
    new: int
    """Blocks in the newer tree."""
    old_root: str
    """Root (hex) of the first `old` blocks."""
    new_root: str
    """Root (hex) of the first `new` blocks."""
    proof: tuple[str, ...]
    """The proof's hashes (hex)."""
    verified: str
    """`verified`, or why the proof does not verify."""
    matches_checkpoint: bool
    """`new` is the checkpoint's size and its root is the cosigned one."""


def _cosigner(request: Request) -> Cosigner:
    cosigner = getattr(request.app.state, "cosigner", None)
    if not isinstance(cosigner, Cosigner):
        raise RefusedError(404, "this node serves no checkpoints")
    return cosigner


def _consistency(cosigner: Cosigner, old: int, new: int, cp: Checkpoint | None) -> Consistency:
    old_root, new_root, proof = cosigner.consistency(old, new)
    try:
        verify_consistency(old, new, old_root, new_root, proof)
        verified = "verified"
    except SharechainError as exc:
        verified = f"does not verify: {exc}"
    return Consistency(
        old,
        new,
        old_root.hex(),
        new_root.hex(),
        tuple(p.hex() for p in proof),
        verified,
        cp is not None and cp.size == new and cp.root == new_root,
    )


def _latest(cosigner: Cosigner, roster: Roster) -> tuple[str, Checkpoint | None, str]:
    """The latest quorum note, its checkpoint once verified, and why there is none."""
    try:
        note = cosigner.latest()
        return note, verify_checkpoint(note, roster, origin=cosigner.origin), ""
    except CheckpointError as exc:
        return "", None, str(exc)


@router.get(f"{PREFIX}/checkpoints", response_class=HTMLResponse)
async def checkpoints(request: Request, old: _Size = None, new: _Size = None) -> Response:
    console = console_of(request)
    node = console.node
    cosigner = _cosigner(request)
    roster = store_roster(node.store)
    note, cp, problem = await run_in_threadpool(_latest, cosigner, roster)
    blocks = node.ledger.height + 1
    new = new or (cp.size if cp is not None else blocks)
    old = old or max(1, new // 2)
    if old > new:
        raise RefusedError(400, f"old ({old}) must not exceed new ({new})")
    if new > blocks:
        raise RefusedError(404, f"this node has {blocks} blocks, not {new}")
    proof = await run_in_threadpool(_consistency, cosigner, old, new, cp)
    signers = {s.name for s in parse_note(note).signatures} if note else set()
    members = [(c.org, c.name, c.name in signers) for c in roster.cosigners]
    return console.render(
        request,
        "checkpoints.html",
        page="checkpoints",
        note=note,
        cp=cp,
        problem=problem,
        quorum=roster.quorum,
        members=members,
        cosigned=sum(1 for *_, signed in members if signed),
        blocks=blocks,
        consistency=proof,
    )
