"""The blocks a node's peers vouch for: a node catching up commits no other.

A member can write any value into the etcd log with its node's etcd
credentials, and its node answers the blocks its peers ask for. Either way it
can hand a node that catches up (restarted, restored, behind) a block it signed
itself in place of the one the others committed: the same transactions and
results, its own name as orderer, linked to the block before. That block is
valid in every way a node can check alone, and a node that commits it has
forked for good (threat 46 in `docs/security.md`); etcd's key metadata cannot
tell it from the leader's (a delete and a create give version 1 again).

What the member cannot forge is the other members' signatures. Every node
signs an attestation of each block it commits (`ledger.attestations`) and its
peers collect them. A block a peer attests names, by its `prev_hash`, the
block below it, and so on down: walking back from it through the blocks on
offer gives the hash of every block between this node's head and it
(`VouchedChain.extend`). That chain is *vouched for* when no peer signed
another hash at a height it crosses, unless more than half of the peers
signed the walk's: the honest peers that committed those heights all signed
the real blocks, so a member's re-signed chain is contested by each of them,
and one member's contrary attestation cannot hold a node back where more
than half agree. A peer that attests a height nobody else reached is
believed until another contradicts it: a chain only one node has committed
is the one it built. Then:

- A block at a height up to the vouched one is committed only if it is the
  one the walk named. From the etcd log, another block there is refused with
  an ALERT (kept as evidence when a member signed it) and the height is
  fetched from the peers instead, checked against the same hash. From a peer,
  it is that peer's lie: refused, and the next peer is asked. A block is the
  vouched one only if its body is also the one its header commits to
  (`tx_root`, `results_root`): a block's hash covers its header alone, so a
  member could put the genuine header over transactions of its own.
- A block the etcd log returned to a range read (what a key holds *now*,
  rewritten or not) above the vouched height waits until the peers vouch for
  it, one poll of theirs usually, or until a whole round of polls after the
  read has more than half of them answer with a lower height: nobody committed
  that height, so no committed block was rewritten there, and the block is
  judged as a watched one is (a foreign value there is voided as before). A
  block the watch delivers as it is written (`EtcdLog.watch_marked`: the
  first write of a height after the node's read of the log) is followed at
  once, as a current node does: the leader wrote it a moment ago and no
  other node has committed that height.
- A node with no peers trusts its ordering service as before: there is
  nobody to vouch.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import httpx

from sharechain.api.client import NodeClient
from sharechain.errors import EncodingError, SharechainError
from sharechain.ledger.attestations import Attestation
from sharechain.ledger.blocks import BlockHeader, body_matches, decode_block
from sharechain.node.service import Node
from sharechain.ordering.foreign_values import foreign_reason

__all__ = [
    "Seen",
    "Vouched",
    "VouchedChain",
    "block_hash",
    "fetch_vouched",
    "quorum",
    "receive_attestations",
]

log = logging.getLogger("sharechain.node")

WINDOW = 16
"""Blocks read at a time while walking back from a vouched block (the etcd log's page;
a peer is asked for a page of its own, `arrivals.catch_up_from_peers`' `limit`)."""

WAIT_LOG_EVERY = 10.0
"""Seconds between two log lines while a block waits for its peers to vouch for it."""

Reader = Callable[[int, int], Iterable[tuple[int, bytes]]]
"""Reads the blocks at heights `lo..hi` (inclusive) on offer, oldest first; a height
may be missing."""


@dataclass(frozen=True, slots=True)
class Vouched:
    """A block the peers attest: its height, hash, and who of them signed it."""

    height: int
    block_hash: bytes
    signers: tuple[str, ...]


def quorum(node: Node) -> int | None:
    """How many peers must sign a block's hash to vouch for it: more than half of the
    peers this node polls; None when it polls none."""
    peers = len(node.config.peers)
    return peers // 2 + 1 if peers else None


def candidates(node: Node) -> tuple[list[Vouched], dict[str, dict[int, bytes]]]:
    """The blocks the peers attest that a walk may start from (the highest that more
    than half of them signed alike first, then each peer's highest, highest first),
    and every hash each peer attested by height."""
    orgs = [org for org, _ in node.config.peers]
    attested = node.book.attested(orgs)
    signers: dict[tuple[int, bytes], list[str]] = {}
    for org, hashes in attested.items():
        for height, block in hashes.items():
            signers.setdefault((height, block), []).append(org)
    picked = {max(hashes.items()) for hashes in attested.values() if hashes}
    needed = quorum(node)
    agreed = [key for key, who in signers.items() if needed is not None and len(who) >= needed]
    if agreed:
        picked.add(max(agreed))
    found = [Vouched(h, block, tuple(sorted(signers[(h, block)]))) for h, block in picked]
    # What more than half signed first; then the others, highest first.
    majority = needed or 1
    found.sort(key=lambda v: (len(v.signers) < majority, -v.height, v.block_hash))
    return found, attested


def _header(data: bytes | None) -> BlockHeader | None:
    """The header of the block `data` encodes; None if it is no well-formed block, or its
    body is not the one its header commits to (a genuine header over swapped
    transactions hashes like the genuine block, but is not it)."""
    if data is None:
        return None
    try:
        block = decode_block(data, check_canonical=False)
    except EncodingError:
        return None
    return block.header if body_matches(block) else None


def block_hash(data: bytes) -> bytes | None:
    """The hash of the block `data` encodes (None if it is not a block, or its body is
    not its header's)."""
    header = _header(data)
    return None if header is None else header.hash()


@dataclass(slots=True)
class _Walk:
    """A walk back from a block a peer attests (`VouchedChain._walk`)."""

    hashes: dict[int, bytes] = field(default_factory=dict)
    """The hash of each block from the attested one down, and what lies below (the
    hash the lowest block links to)."""
    taken: dict[int, bytes] = field(default_factory=dict)
    """Blocks taken from elsewhere where the source offered another."""
    offered: list[tuple[int, bytes]] = field(default_factory=list)
    """The blocks the source offered in their place."""
    why: str = ""
    """Why the walk stopped short ("" if it reached this node's head)."""


class VouchedChain:
    """The hashes of the blocks between a node's head and the block its peers vouch for.

    One serves one source of blocks (`source`, as the log names it; `kind` labels the
    metric), on the thread that reads it: a node's etcd watcher, or its catch-up from
    one peer.
    """

    def __init__(self, source: str, kind: str) -> None:
        self.source = source
        self.kind = kind
        self._hashes: dict[int, bytes] = {}
        self.top = -1
        """The highest height whose hash is known (-1: none)."""
        self.found: dict[int, bytes] = {}
        """Blocks fetched from the peers where the source offered another."""
        self.anchor: Vouched | None = None
        """The vouched block the hashes were walked back from."""
        self._reported: set[tuple[int, bytes]] = set()
        """(height, digest) of the blocks refused so far: each is counted and
        logged once, however often a walk meets it again."""
        self._logged = 0.0

    def expected(self, height: int) -> bytes | None:
        """The hash of the block at `height` that the peers vouch for, if known."""
        return self._hashes.get(height)

    def extend(
        self,
        node: Node,
        read: Reader,
        elsewhere: Callable[[int, bytes], bytes | None] | None = None,
        *,
        window: int = WINDOW,
    ) -> str | None:
        """Learn the hashes up to the highest block the peers vouch for now; why not, if
        none could be learnt. `read` is asked for `window` blocks at a time.

        Each block a peer attests is tried, highest first (`candidates`): walking
        back from it through the blocks `read` offers (a block there that is not
        the one named by the block above it is taken from `elsewhere`, checked
        alike, if given), down to this node's head, which the walk must reach.
        The walk is *vouched for* if no peer signed another hash at a height it
        crosses, unless more than half of the peers signed the walk's: one
        member's attestation cannot outvote the others', and one member alone
        cannot hold a node back where the others agree. Only then are the
        blocks the source offered in place of the walk's refused (`refused`). A
        walk that more than half of the peers vouch for but that does not reach
        this node's head halts the node: its chain is not theirs.
        """
        found, attested = candidates(node)
        if not found:
            return f"none of its {len(node.config.peers)} peers has attested a block yet"
        needed = quorum(node) or 1
        why: str | None = None
        learnt = False
        for anchor in found:
            base = node.ledger.height
            if anchor.height <= max(self.top, base):
                continue  # nothing new above what this node knows
            walk = self._walk(node, anchor, read, elsewhere, window)
            if walk.why:
                if len(anchor.signers) >= needed and walk.offered:
                    # More than half of the peers signed it, and the source offers another.
                    self.anchor = anchor
                    for height, data in walk.offered:
                        self.refused(node, height, data)
                    walk.why += f", and another block at {walk.offered[-1][0]}"
                why = why or walk.why
                continue
            contested = self._contested(node, anchor, walk.hashes, attested) or self._reaches(
                node, anchor, walk.hashes
            )
            if contested:
                why = why or contested
                if node.halted is not None:
                    return contested
                continue
            self.anchor = anchor
            for height, data in walk.offered:
                self.refused(node, height, data)
            self._hashes = {h: v for h, v in self._hashes.items() if h > base} | walk.hashes
            self.found = {h: v for h, v in self.found.items() if h > base} | walk.taken
            self.top = anchor.height
            learnt = True
        return None if learnt else why

    def _walk(
        self,
        node: Node,
        anchor: Vouched,
        read: Reader,
        elsewhere: Callable[[int, bytes], bytes | None] | None,
        window: int,
    ) -> _Walk:
        """Walk back from `anchor` down to just above what this node knows."""
        low = max(self.top, node.ledger.height) + 1
        want = anchor.block_hash
        walk = _Walk()
        hi = anchor.height
        while hi >= low:
            if node.stop_event.is_set():
                walk.why = "the node is stopping"
                return walk
            lo = max(low, hi - window + 1)
            offer = dict(read(lo, hi))
            for height in range(hi, lo - 1, -1):
                data = offer.get(height)
                header = _header(data)
                if header is None or header.hash() != want:
                    if data is not None:
                        walk.offered.append((height, data))
                    data = elsewhere(height, want) if elsewhere is not None else None
                    header = _header(data)
                    if data is None or header is None or header.hash() != want:
                        walk.why = (
                            f"{self.source} offers no block {height} of the chain of block "
                            f"{anchor.height}, which {', '.join(anchor.signers)} attest"
                        )
                        return walk
                    walk.taken[height] = data
                walk.hashes[height] = want
                want = header.prev_hash
            hi = lo - 1
        walk.hashes[low - 1] = want  # what the walk says lies below: checked by `_reaches`
        return walk

    def _contested(
        self,
        node: Node,
        anchor: Vouched,
        hashes: dict[int, bytes],
        attested: dict[str, dict[int, bytes]],
    ) -> str:
        """Why the walk is not vouched for: a peer signed another hash at a height it
        crosses, and more than half of the peers did not sign the walk's ("" if none)."""
        needed = quorum(node) or 1
        for org, signed in attested.items():
            for height, block in signed.items():
                walked = hashes.get(height)
                if walked is None or walked == block:
                    continue
                backers = sum(1 for other in attested.values() if other.get(height) == walked)
                if backers < needed:
                    return (
                        f"{org} attests another block {height} than the chain of block "
                        f"{anchor.height}, which {', '.join(anchor.signers)} attest"
                    )
        return ""

    def _reaches(self, node: Node, anchor: Vouched, hashes: dict[int, bytes]) -> str:
        """Why the walk does not reach what this node knows ("" if it does); the node
        halts if more than half of the peers vouch for the walk."""
        bottom = min(hashes)
        below = self._hashes.get(bottom) if bottom > node.ledger.height else None
        if below is not None:
            if below == hashes[bottom]:
                return ""
            self._hashes, self.top, self.found = {}, -1, {}  # walk again from this node's head
            return f"the peers now attest block {anchor.height} of another chain; walking again"
        meta = node.store.block_meta(bottom)
        if meta is None or meta.hash == hashes[bottom]:
            return ""
        why = (
            f"block {bottom} of this node is not the one {', '.join(anchor.signers)} "
            f"attest (their block {anchor.height} links down to another)"
        )
        if len(anchor.signers) >= (quorum(node) or 1):
            why += "; restore the node from a backup or a snapshot of a peer"
            node.halt(why)
        return why

    def unvouched(self, first: int, blocks: list[bytes]) -> int | None:
        """The height of the first of `blocks` (from height `first`) that is not the one
        the peers vouch for; None if all are (heights above `top` are not judged)."""
        for height, data in enumerate(blocks, first):
            want = self._hashes.get(height)
            if want is not None and block_hash(data) != want:
                return height
        return None

    def refused(self, node: Node, height: int, data: bytes | None) -> None:
        """Count, log and keep (if a member signed it) the block `data` that the source
        offers at `height` in place of the one the peers vouch for."""
        anchor = self.anchor
        if data is None or anchor is None:
            return  # nothing there (a gap): nothing to refuse
        seen = (height, hashlib.sha256(data).digest())
        if seen in self._reported:
            return
        if len(self._reported) >= 4096:
            self._reported.clear()
        self._reported.add(seen)
        node.metrics.unvouched_blocks.labels(self.kind).inc()
        header = _header(data)
        signer = None
        if header is not None and foreign_reason(node, height, data, links=False) is None:
            signer = header.orderer
        kept = ""
        if signer is not None:
            kept = "; the signed block " + node.evidence.keep(height, signer, data).describe()
        log.error(
            "ALERT %s: %s offers at height %d a block %s that is not the one %s vouch for "
            "(their block %d links down to another): refused%s",
            node.org,
            self.source,
            height,
            f"signed by {signer}" if signer is not None else "nobody signed",
            ", ".join(anchor.signers),
            anchor.height,
            kept,
        )

    def wait(self, node: Node, height: int, read: Reader) -> bool | None:
        """Wait until the peers vouch for `height` (True), or until a whole round of polls
        after the read shows more than half of them below it (False: nobody committed
        it, it is the log's newest, judged as a watched block is); None if the node
        stops or halts."""
        started = time.monotonic()
        fresh = node.poll_rounds + 2  # the round under way may have begun before the read
        while True:
            why = self.extend(node, read, lambda h, want: fetch_vouched(node, h, want))
            if node.halted is not None or node.stop_event.is_set():
                return None
            if self.top >= height:
                return True
            now = time.monotonic()
            if node.poll_rounds >= fresh and _below(node, height):
                return False
            if now - started >= WAIT_LOG_EVERY and now - self._logged >= WAIT_LOG_EVERY:
                self._logged = now
                log.warning(
                    "%s: block %d from %s waits %.0f s for its %d peers to vouch for it "
                    "(%s); are they up, and do they agree?",
                    node.org,
                    height,
                    self.source,
                    now - started,
                    len(node.config.peers),
                    why or f"they vouch up to block {self.top}",
                )
            if node.stop_event.wait(min(node.config.poll_interval, 0.5)):
                return None


def peer_wait(node: Node) -> float:
    """Seconds for the peers' attestations of a block they committed to reach this node:
    two polls of theirs, and a second to spare."""
    return 2 * node.config.poll_interval + 1.0


def _below(node: Node, height: int) -> bool:
    """Whether more than half of the peers answered their last poll with a height below
    `height`: they did not commit it (one peer's word moves nothing either way)."""
    peers = [org for org, _ in node.config.peers]
    below = [
        org
        for org in peers
        if org not in node.peer_errors and node.peer_heights.get(org, height) < height
    ]
    return 2 * len(below) > len(peers)


def fetch_vouched(node: Node, height: int, want: bytes) -> bytes | None:
    """The block at `height` whose header hashes to `want`, from whichever peer has it."""
    for org, url in node.config.peers:
        client = NodeClient(url, node.org, node.keys.signing, timeout=10.0)
        try:
            blocks = client.sync_blocks(height, limit=1)
        except (httpx.HTTPError, SharechainError) as exc:
            log.info("block %d from %s: %s", height, org, exc)
            continue
        finally:
            client.close()
        header = _header(blocks[0] if blocks else None)
        if header is not None and header.height == height and header.hash() == want:
            log.warning(
                "%s: took block %d from %s, which holds the vouched one", node.org, height, org
            )
            return blocks[0]
    return None


Seen = tuple[tuple[tuple[str, object], ...] | None, bytes | None]
"""An attestation as a peer sent it (its JSON fields) and the key it was checked against."""


def _frozen(value: object) -> tuple[tuple[str, object], ...] | None:
    """The fields of an attestation's JSON, hashable (None if it is not a flat map)."""
    if not isinstance(value, dict) or not all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in value.values()
    ):
        return None
    return tuple(sorted(value.items()))


def receive_attestations(
    node: Node, org: str, values: object, known: set[Seen] | None = None
) -> set[Seen]:
    """Hand `org`'s attestations to the book; returns those handed (with the key they
    were checked against). The same attestation under the same key is skipped: the
    book would find it filed already, or refuse it again."""
    handed: set[Seen] = set()
    if not isinstance(values, list):
        return handed
    public_key = node.public_key(org)
    for value in values:
        seen = (_frozen(value), public_key)
        if known is not None and seen in known:
            handed.add(seen)
            continue
        try:
            att = Attestation.from_json(value)
        except EncodingError:
            continue
        if att.org != org:
            continue  # a node speaks for its own organisation only
        if seen[0] is not None:
            handed.add(seen)
        conflict = node.book.receive(att, public_key)
        if conflict is not None:
            node.on_conflict(conflict)
    return handed
