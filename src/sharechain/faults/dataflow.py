"""The soak's regulated flow through the data plane, and the scan for its plaintext.

`data_flow` runs, under the soak's faults, what a consortium does with a real
dataset: the owner seals a random plaintext and registers it through its own
node (`Plane.publish`, key kept by the owner's custody), a member requests it,
the owner and the supervisor approve, the member fetches it (a key release the
chain counts, the payload opened and checked, a read receipt), an outsider's
fetch under the same grant is refused, the owner revokes the grant, and the
member's fetch after the revocation is refused. Each step is retried, through
whichever node answers, until it gets an answer or the deadline passes; a
publication that failed half-way is tried again with a fresh plaintext, and
every plaintext ever sealed is kept for the scan.

`plaintext_found` then reads every file under the network's directory (each
node's store, WAL, blobs, vault and log; each etcd member's data) and names
those holding any of the plaintexts: only the owner's source file and the
grantee's fetched copy may. The plaintexts are random, so a 32-byte window of
one found anywhere else is a copy of it, not chance. Every window of every
plaintext (at each of its offsets) is indexed by its first 8 bytes, and each
file is read once, looking up its window at every 32nd byte (numpy, a sorted
index): any copied piece of 63 bytes or more covers one of those windows,
wherever it starts. A hit is confirmed on all 32 bytes.
`key_found` searches the same files for each publication's data key (read
back from the owner's vault, where it is kept wrapped): no file may hold it
in the clear.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import httpx
import numpy as np

from sharechain.contracts import derive_id
from sharechain.errors import SharechainError
from sharechain.sharing.plane import Plane
from sharechain.sharing.records import Listing, Published, ReleaseRefusedError
from sharechain.storage.datadir import DataDir
from sharechain.storage.vault import Vault

__all__ = [
    "DATA_FLOW",
    "PLAINTEXT_BYTES",
    "DataFlow",
    "Submit",
    "data_flow",
    "key_found",
    "plaintext_found",
]

PLAINTEXT_BYTES: Final = 48 * 1024
"""Size of each random plaintext the owner publishes (several segments' worth of windows)."""
_WINDOW: Final = 32
"""Bytes of a plaintext that, found anywhere, show a copy (random bytes: not chance).
Files are looked at every `_WINDOW` bytes, so any copy of 2 x 32 - 1 = 63 bytes or more
is found."""
DATA_FLOW: Final = (
    "published",
    "valid",
    "valid",
    "valid",
    "delivered",
    "refused",
    "valid",
    "refused",
)
"""The outcomes of a flow that went through: publish; request; the owner's and the
supervisor's approvals; the grantee's fetch; an outsider's fetch refused; the
revocation; the grantee's fetch after it refused."""
_RETRIED: Final = (SharechainError, httpx.HTTPError, OSError)
"""What a faulted node, link or etcd member makes a step raise (then it is tried again)."""

T = TypeVar("T")


@dataclass(slots=True)
class DataFlow:
    """What the flow did, and where its plaintexts may legitimately be."""

    outcomes: list[str] = field(default_factory=list)
    """Each step's outcome, in `DATA_FLOW` order (shorter if it stopped early)."""
    plaintexts: list[bytes] = field(default_factory=list)
    """Every plaintext sealed (a retried publication adds one)."""
    keys: list[bytes] = field(default_factory=list)
    """The data key of each publication that went through, read back from the owner's
    vault (where it is kept wrapped): no file of the run may hold it in the clear."""
    allowed: list[Path] = field(default_factory=list)
    """Files that may hold them: the owner's sources and the grantee's copy."""
    dataset: str = ""
    """The dataset the flow shared (the last one published)."""
    grant: str = ""
    """The grant the flow used."""


Submit = Callable[[str, str, dict[str, Any]], tuple[bytes, str]]
"""Submit a signed transaction as an organisation, retried until answered: (raw, code)."""


def data_flow(
    network: Path,
    work: Path,
    orgs: Sequence[str],
    supervisor: str,
    submit: Submit,
    deadline: float,
    flow: DataFlow | None = None,
) -> DataFlow:
    """Run the flow with `orgs[0]` as owner, `orgs[1]` as grantee and the first
    organisation that is neither (nor `supervisor`, when another exists) as the outsider.

    Fills `flow` as it goes (a new one if None) and returns it: a caller that
    stops waiting still knows every plaintext sealed so far."""
    owner, member = orgs[0], orgs[1]
    others = [o for o in orgs if o not in (owner, member)]
    outsider = next((o for o in others if o != supervisor), others[-1])
    flow = flow if flow is not None else DataFlow()
    work.mkdir(parents=True, exist_ok=True)
    planes: dict[str, Plane] = {}

    def plane(org: str) -> Plane:
        if org not in planes:
            planes[org] = Plane.connect(network=network, as_org=org)
        return planes[org]

    try:
        published = _retry(lambda: _publish(plane(owner), owner, work, flow), deadline)
        if published is None:
            flow.outcomes.append("unpublished")
            return flow
        flow.outcomes.append("published")
        dataset = published.dataset
        with contextlib.suppress(SharechainError, OSError):  # counted: `SoakResult.data_keys`
            flow.keys.append(_data_key(network, owner, published))
        flow.dataset = dataset
        ask = {"dataset": dataset, "purpose": "treatment", "duration": 86_400_000}
        request, code = submit(member, "access.request", ask)
        flow.outcomes.append(code)
        rid = derive_id("request", hashlib.sha256(request).digest())
        flow.outcomes.append(submit(owner, "access.approve", {"request": rid})[1])
        approval, code = submit(supervisor, "access.approve", {"request": rid})
        flow.outcomes.append(code)
        flow.grant = derive_id("grant", hashlib.sha256(approval).digest())
        copy = work / member / "fetched"
        flow.allowed.append(copy)
        flow.outcomes.append(_fetch(plane(member), member, copy, deadline, flow))
        outside = work / outsider / "fetched"
        flow.outcomes.append(_fetch(plane(outsider), outsider, outside, deadline, flow))
        revoke = {"grant": flow.grant, "reason": "soak"}
        flow.outcomes.append(submit(owner, "grant.revoke", revoke)[1])
        again = work / member / "after-revocation"
        flow.outcomes.append(_fetch(plane(member), member, again, deadline, flow))
    finally:
        for p in planes.values():
            with contextlib.suppress(*_RETRIED):
                p.close()
    return flow


def _retry(step: Callable[[], T], deadline: float) -> T | None:
    """`step()` until it returns or the deadline passes (None then)."""
    while True:
        try:
            return step()
        except _RETRIED:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.5)


def _data_key(network: Path, owner: str, published: Published) -> bytes:
    """The data key the owner's node keeps for `published`, unwrapped with the owner's
    private key (the harness holds every organisation's key file)."""
    keys = DataDir.open(network / "consortium").keys(owner)
    vault = Vault(network / "nodes" / owner, keys)
    return vault.get(published.dataset, published.epoch, "key")


def _publish(plane: Plane, owner: str, work: Path, flow: DataFlow) -> Published:
    plaintext = os.urandom(PLAINTEXT_BYTES)
    source = work / owner / f"source-{len(flow.plaintexts)}"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(plaintext)
    flow.plaintexts.append(plaintext)
    flow.allowed.append(source)
    listing = Listing(title=f"soak {len(flow.plaintexts)}", classification="confidential")
    return plane.publish(owner, source, listing, inline_limit=0)


def _fetch(plane: Plane, org: str, out: Path, deadline: float, flow: DataFlow) -> str:
    """`delivered` (the copy equals a plaintext), `refused` (the chain said no),
    `mismatch`, or `unanswered` at the deadline."""
    out.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            plane.fetch(org, flow.grant, out, dataset=flow.dataset)
        except ReleaseRefusedError:
            return "refused"
        except _RETRIED:
            if time.monotonic() > deadline:
                return "unanswered"
            time.sleep(0.5)
            continue
        return "delivered" if out.read_bytes() in flow.plaintexts else "mismatch"


def plaintext_found(root: Path, plaintexts: Iterable[bytes], allowed: Iterable[Path]) -> list[Path]:
    """Files under `root` (but `allowed`) holding a copy of any plaintext, or of a piece
    of one of 63 bytes or more (see the module's docstring)."""
    index = _Windows([p for p in plaintexts if len(p) >= _WINDOW])
    return _holding(root, index.in_view, allowed)


def key_found(root: Path, keys: Iterable[bytes]) -> list[Path]:
    """Files under `root` holding any of `keys` in the clear (vaults keep them wrapped,
    releases travel wrapped to the grantee, who opens them in memory only)."""
    needles = list(keys)
    return _holding(root, lambda m: any(m.find(k) >= 0 for k in needles), ()) if needles else []


class _Windows:
    """Every `_WINDOW`-byte window of some texts, indexed by its first 8 bytes."""

    def __init__(self, texts: Sequence[bytes]) -> None:
        self._texts = texts
        heads, where = [], []
        for n, text in enumerate(texts):
            count = len(text) - _WINDOW + 1
            # The 8 bytes at each offset, as one little-endian integer each.
            raw = np.frombuffer(text, dtype=np.uint8)
            eights = np.lib.stride_tricks.sliding_window_view(raw, 8)[:count]
            heads.append(eights.copy().view("<u8").ravel())
            where.append(np.stack([np.full(count, n), np.arange(count)], axis=1))
        keys = np.concatenate(heads) if heads else np.empty(0, dtype="<u8")
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._where = np.concatenate(where)[order] if where else np.empty((0, 2), dtype=int)

    def in_view(self, view: mmap.mmap) -> bool:
        """Whether the bytes in `view` hold a window, looked at every `_WINDOW` bytes."""
        if not len(self._keys):
            return False
        usable = len(view) - len(view) % _WINDOW
        if not usable:
            return False
        # A copy: no view of the mapping outlives this call (it could not be closed).
        starts = np.frombuffer(view, dtype="<u8", count=usable // 8)[:: _WINDOW // 8].copy()
        at = np.searchsorted(self._keys, starts)
        hit = np.nonzero(self._keys[np.minimum(at, len(self._keys) - 1)] == starts)[0]
        for block in hit.tolist():  # random texts: hits are copies, confirmed whole
            offset = block * _WINDOW
            found = view[offset : offset + _WINDOW]
            i = int(at[block])
            while i < len(self._keys) and self._keys[i] == starts[block]:
                n, start = (int(x) for x in self._where[i])
                if self._texts[n][start : start + _WINDOW] == found:
                    return True
                i += 1
        return False


def _holding(root: Path, holds: Callable[[mmap.mmap], bool], allowed: Iterable[Path]) -> list[Path]:
    """Files under `root` (but `allowed`) whose bytes `holds` something."""
    skip = {a.resolve() for a in allowed}
    found: list[Path] = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file() or path.resolve() in skip:
            continue
        try:
            if path.stat().st_size == 0:  # nothing to map
                continue
            with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                hit = holds(m)
        except FileNotFoundError:  # removed while the scan ran
            continue
        if hit:
            found.append(path)
    return found
