"""Checkpoint cosigning between nodes: how a network of nodes makes quorum checkpoints.

Every node signs a checkpoint of its chain (`sharechain.ledger.checkpoints`)
every `checkpoint_blocks` blocks or `checkpoint_seconds` seconds (data
directory settings, defaults 1000 blocks / 60 s), and on demand; it asks each
peer to cosign the same text and keeps the latest checkpoint a quorum of the
members signed. A peer cosigns only a history it has: it recomputes the
history root at that size from its own blocks (waiting briefly for blocks it
has not committed yet) and refuses anything else, so a checkpoint counts only
when a quorum of independent nodes hold exactly that chain.

The history tree is kept as the chain grows (`HistoryTree`: every complete
subtree's hash of 64 blocks and more, the blocks below read back from the
store), so a checkpoint's root costs O(log n) hashes, whatever the chain's
length, in about 2.3 bytes of memory per block; a round costs a signature,
one request per peer and a few signature checks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import httpx

from sharechain.api.peer_client import PeerClient
from sharechain.api.serving import ServingNode
from sharechain.crypto.merkle import Hash
from sharechain.crypto.signed_note import NoteSignature, parse_note, verify_note_signature
from sharechain.errors import SharechainError
from sharechain.ledger.checkpoints import (
    Checkpoint,
    CheckpointError,
    HistoryTree,
    cosign,
    origin_for,
    parse_checkpoint,
    signed_checkpoint,
    store_roster,
    verify_checkpoint,
)

__all__ = ["DEFAULT_EVERY_BLOCKS", "DEFAULT_EVERY_SECONDS", "Cosigner"]

log = logging.getLogger("sharechain.node.cosigning")  # the node's log, its name kept

DEFAULT_EVERY_BLOCKS = 1000
DEFAULT_EVERY_SECONDS = 60.0
_PEER_WAIT = 2.0
"""Seconds a peer waits for blocks it has not committed yet before refusing to cosign."""
_GROW_PAGE = 65_536
"""Block hashes the history tree reads from the store at once as it grows (2 MiB)."""


class Cosigner:
    """One node's checkpoints: its own cosignature, its peers', the latest quorum one."""

    def __init__(
        self,
        node: ServingNode,
        peers: Sequence[tuple[str, PeerClient]],
        *,
        every_blocks: int = DEFAULT_EVERY_BLOCKS,
        every_seconds: float = DEFAULT_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if every_blocks < 1 or every_seconds <= 0:
            raise CheckpointError("checkpoint intervals must be at least 1 block and above 0 s")
        self.node = node
        self.peers = tuple(peers)
        self.every_blocks = every_blocks
        self.every_seconds = every_seconds
        self.clock = clock
        self.origin = origin_for(node.datadir.genesis_hash)
        self._tree = HistoryTree(self._stored_hashes)
        self._lock = threading.Lock()
        self._latest: tuple[Checkpoint, str] | None = None
        self._gathering = threading.Lock()
        """Held while one refresh gathers the peers' cosignatures: the others wait for it."""

    # -- the history tree -------------------------------------------------------

    def _grow(self, size: int) -> None:
        """Add blocks to the tree up to `size` (call with the lock held), read from the
        store a page at a time (a node restarted on a long chain reads it all once)."""
        while (height := len(self._tree)) < size:
            page = self.node.store.block_hashes(min(size, height + _GROW_PAGE), height)
            for block_height, block_hash in page:
                if block_height != len(self._tree):
                    break
                self._tree.append(block_hash)
            if len(self._tree) == height:
                raise CheckpointError(f"this node has {height} blocks; it cannot cover {size}")

    def _stored_hashes(self, lo: int, hi: int) -> list[Hash]:
        """The block hashes of heights `lo .. hi - 1` the tree reads back from the store."""
        return [h for _, h in self.node.store.block_hashes(hi, lo)]

    def checkpoint(self, size: int) -> Checkpoint:
        """The (unsigned) checkpoint of this node's first `size` blocks."""
        with self._lock:
            self._grow(size)
            return Checkpoint(self.origin, size, self._tree.root(size))

    def consistency(self, old: int, new: int) -> tuple[Hash, Hash, list[Hash]]:
        """The roots of this node's first `old` and `new` blocks (0 < old <= new) and the
        consistency proof between them, from the history tree's nodes (`HistoryTree`)."""
        with self._lock:
            self._grow(new)
            return self._tree.root(old), self._tree.root(new), self._tree.consistency(old, new)

    # -- cosigning ----------------------------------------------------------------

    def cosign(self, text: str) -> str:
        """This node's cosignature of `text` (a note signed by it alone), or a refusal.

        Raises `CheckpointError` unless the checkpoint is of this consortium and
        its root is this node's history at that size.
        """
        cp = parse_checkpoint(text)
        if cp.origin != self.origin:
            raise CheckpointError(f"the checkpoint is of {cp.origin}, not of {self.origin}")
        if cp.size < 1:
            raise CheckpointError("a checkpoint covers the genesis block at least")
        if not self.node.wait_height(cp.size - 1, _PEER_WAIT):
            raise CheckpointError(
                f"this node has {self.node.ledger.height + 1} blocks, not the {cp.size} "
                "the checkpoint covers: it does not cosign a history it does not have"
            )
        if self.checkpoint(cp.size).root != cp.root:
            raise CheckpointError(
                f"the checkpoint's root is not this node's history of {cp.size} blocks: a fork"
            )
        return signed_checkpoint(cp, [cosign(cp, self.node.org, self.node.keys.signing)])

    def _peer_signature(self, org: str, peer: PeerClient, cp: Checkpoint) -> NoteSignature:
        reply = peer.get().http.post("/v1/checkpoint/cosign", json={"checkpoint": cp.text()})
        if reply.status_code != 200:
            raise CheckpointError(f"{org} refused ({reply.status_code}): {reply.text[:300]}")
        note = parse_note(reply.json()["note"])
        if note.text != cp.text() or len(note.signatures) != 1:
            raise CheckpointError(f"{org} answered with another checkpoint")
        org_key = self.node.public_key(org)
        if org_key is None:
            raise CheckpointError(f"{org} is not an active member")
        verify_note_signature(note, note.signatures[0], org_key)
        return note.signatures[0]

    def refresh(self) -> str:
        """Sign the head now, collect the peers' cosignatures; return the quorum note.

        A quorum checkpoint of the head already made is returned as it is, and one
        refresh gathers at a time (those that wait meanwhile take its note if it
        reached their head): any member may ask (`POST /v1/checkpoint`), and each
        gathering asks every peer to cosign, so a member asking without pause
        made the node ask its peers without pause (threat 50). Raises
        `CheckpointError` when fewer than a quorum cosigned (the latest quorum
        checkpoint stays the one before).
        """
        size = self.node.ledger.height + 1
        with self._gathering:
            with self._lock:
                if self._latest is not None and self._latest[0].size >= size:
                    return self._latest[1]
            return self._gather(size)

    def _gather(self, size: int) -> str:
        cp = self.checkpoint(size)
        members = {c.org for c in store_roster(self.node.store).cosigners}
        signatures = []
        if self.node.org in members:  # a removed member's node still gathers the others'
            signatures.append(cosign(cp, self.node.org, self.node.keys.signing))
        for org, peer in self.peers:
            if org not in members:
                continue
            try:
                signatures.append(self._peer_signature(org, peer, cp))
            except (SharechainError, httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                log.warning(
                    "%s: no cosignature from %s for size %d: %s", self.node.org, org, size, exc
                )
        note = signed_checkpoint(cp, sorted(signatures, key=lambda s: s.name))
        verify_checkpoint(note, store_roster(self.node.store), origin=self.origin)
        with self._lock:
            if self._latest is None or self._latest[0].size <= cp.size:
                self._latest = (cp, note)
        return note

    def latest(self) -> str:
        """The latest quorum checkpoint (made now when there is none yet)."""
        with self._lock:
            latest = self._latest
        return latest[1] if latest is not None else self.refresh()

    def latest_size(self) -> int:
        with self._lock:
            return 0 if self._latest is None else self._latest[0].size

    # -- the loop -----------------------------------------------------------------

    def run(self) -> None:
        """Refresh every `every_blocks` blocks or `every_seconds` seconds until the node stops."""
        stop = self.node.stop_event
        last = self.clock()
        while not stop.wait(min(1.0, self.every_seconds)):
            if not self.node.caught_up or self.node.halted is not None:
                continue
            grown = self.node.ledger.height + 1 - self.latest_size()
            if grown <= 0:
                last = self.clock()
                continue
            if grown < self.every_blocks and self.clock() - last < self.every_seconds:
                continue
            last = self.clock()
            try:
                self.refresh()
            except SharechainError as exc:
                log.warning("%s: no quorum checkpoint this round: %s", self.node.org, exc)
