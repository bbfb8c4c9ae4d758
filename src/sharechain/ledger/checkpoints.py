"""Checkpoints: the chain's history tree, signed by a quorum of its members.

Block hashes, in height order, are the leaves of an RFC 9162 Merkle tree (the
*history tree*): leaf `SHA-256(0x00 || block hash)`, the same tree shape as a
block's transaction tree. Its root over the first `size` blocks is written as a
C2SP `tlog-checkpoint`::

    sharechain/<genesis hash hex>      origin: which consortium
    <size>                              number of blocks covered (height + 1)
    <base64 root>                       history tree root
    [extension lines]                   none written today, kept when read

and members cosign that text as a C2SP signed note, each under the key name
`<org id>/<first 16 hex digits of SHA-256(its signing key)>` (so a rotated key
has a new name). A checkpoint *counts* when a quorum of the members active at
its size signed it: governance setting `checkpoint_quorum`, default more than
half. A verifier that trusts one checkpoint learns with an RFC 9162
consistency proof that a later one only appended blocks, and with an inclusion
proof that a block hash is covered.

Stricter than a plain signed note, a consortium checkpoint refuses signatures
by keys it does not know: only members sign, and an unknown name is a sign of
tampering or of a stale roster.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sharechain.codec import decode
from sharechain.crypto.merkle import (
    Hash,
    consistency_path,
    consistency_proof,
    inclusion_path,
    inclusion_proof,
    merkle_root,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from sharechain.crypto.signed_note import (
    NoteSignature,
    SignedNote,
    format_note,
    parse_note,
    parse_verifier_key,
    sign_note,
    verifier_key,
    verify_note_signature,
)
from sharechain.crypto.signing import SigningKey, key_id
from sharechain.errors import EncodingError, IntegrityError, InvalidSignatureError, NotFoundError
from sharechain.ledger.genesis import GOVERNANCE_KEY
from sharechain.ledger.identities import Organisation, org_from_value
from sharechain.ledger.store import Store

__all__ = [
    "QUORUM_SETTING",
    "Checkpoint",
    "CheckpointError",
    "Cosigner",
    "HistoryTree",
    "Roster",
    "block_hashes",
    "checkpoint_of",
    "cosign",
    "default_quorum",
    "history_consistency",
    "history_inclusion",
    "key_name",
    "origin_for",
    "parse_checkpoint",
    "roster_from_verifier_keys",
    "roster_of",
    "signed_checkpoint",
    "store_roster",
    "verifier_keys",
    "verify_checkpoint",
    "verify_history_inclusion",
]

QUORUM_SETTING = "checkpoint_quorum"
"""Governance setting: cosignatures a checkpoint needs (0 or absent: more than half)."""

_SIZE = re.compile(r"^(0|[1-9][0-9]{0,18})$")


class CheckpointError(IntegrityError):
    """A checkpoint is malformed, under-signed, or does not follow an earlier one."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The history tree's size and root, named by the consortium's origin."""

    origin: str
    """`sharechain/<genesis hash hex>`: the consortium this checkpoint is of."""
    size: int
    """Blocks covered: heights 0 .. size - 1."""
    root: Hash
    """RFC 9162 root of their block hashes."""
    extensions: tuple[str, ...] = ()
    """Extra lines after the root (opaque, signed with the rest)."""

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "".join(x + "\n" for x in (*lines, *self.extensions))


@dataclass(frozen=True, slots=True)
class Cosigner:
    """A member allowed to cosign, with its key as of the checkpoint."""

    org: str
    """Organisation id."""
    sign_key: bytes
    """Its Ed25519 public key at the checkpoint's size."""

    @property
    def name(self) -> str:
        return key_name(self.org, self.sign_key)


@dataclass(frozen=True, slots=True)
class Roster:
    """Who may cosign a checkpoint, and how many must."""

    cosigners: tuple[Cosigner, ...]
    """The active members with their keys."""
    quorum: int
    """Distinct members whose signatures make the checkpoint count."""


def origin_for(genesis_hash: Hash) -> str:
    return f"sharechain/{genesis_hash.hex()}"


def key_name(org: str, sign_key: bytes) -> str:
    return f"{org}/{key_id(sign_key).hex()[:16]}"


def default_quorum(members: int) -> int:
    """More than half of the members."""
    return members // 2 + 1


def parse_checkpoint(text: str) -> Checkpoint:
    """Read the body of a checkpoint (the note text), refusing anything malformed."""
    if not text.endswith("\n"):
        raise CheckpointError("checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError("checkpoint needs an origin, a tree size and a root hash")
    origin, size, root, *ext = lines
    if not origin:
        raise CheckpointError("checkpoint origin is empty")
    if not _SIZE.match(size):
        raise CheckpointError(f"checkpoint tree size {size!r} is not a decimal number")
    try:
        raw = base64.b64decode(root, validate=True)
    except binascii.Error:
        raise CheckpointError("checkpoint root is not base64") from None
    if len(raw) != 32:
        raise CheckpointError("checkpoint root is not a 32-byte hash")
    if any(not x for x in ext):
        raise CheckpointError("checkpoint extension lines must not be empty")
    cp = Checkpoint(origin, int(size), raw, tuple(ext))
    if cp.text() != text:
        raise CheckpointError("checkpoint text is not in canonical form")
    return cp


def roster_of(orgs: Iterable[Organisation], governance: Mapping[str, Any]) -> Roster:
    """The active members and the quorum the governance settings ask for."""
    cosigners = tuple(
        sorted((Cosigner(o.id, o.sign_key) for o in orgs if o.active), key=lambda c: c.org)
    )
    if not cosigners:
        raise CheckpointError("no active member can cosign a checkpoint")
    quorum = governance.get(QUORUM_SETTING) or 0
    if not isinstance(quorum, int) or isinstance(quorum, bool) or quorum < 0:
        raise CheckpointError(f"governance setting {QUORUM_SETTING} must be a count")
    if quorum > len(cosigners):
        raise CheckpointError(f"quorum {quorum} exceeds the {len(cosigners)} active members")
    return Roster(cosigners, quorum or default_quorum(len(cosigners)))


def verifier_keys(roster: Roster) -> list[str]:
    """The members' C2SP verifier keys (`name+keyid+base64(0x01 || key)`)."""
    return [verifier_key(c.name, c.sign_key) for c in roster.cosigners]


def roster_from_verifier_keys(vkeys: Sequence[str], quorum: int = 0) -> Roster:
    """A roster given as verifier keys (an outsider's way to say who the members are);
    quorum 0 means more than half."""
    cosigners = []
    for vkey in vkeys:
        name, public = parse_verifier_key(vkey)
        org = name.split("/", 1)[0]
        if name != key_name(org, public):
            raise CheckpointError(f"verifier key {name} is not named <org>/<key hash>")
        cosigners.append(Cosigner(org, public))
    if not cosigners or len({c.org for c in cosigners}) != len(cosigners):
        raise CheckpointError("give one verifier key per member, at least one")
    if not 0 <= quorum <= len(cosigners):
        raise CheckpointError(f"quorum {quorum} is not between 1 and {len(cosigners)}")
    return Roster(tuple(cosigners), quorum or default_quorum(len(cosigners)))


def store_roster(store: Store) -> Roster:
    """The roster of the store's current state (its head)."""
    raw = store.get(GOVERNANCE_KEY)
    governance = decode(raw) if raw is not None else {}
    return roster_of((org_from_value(decode(v)) for _, v in store.scan("org/")), governance)


def cosign(checkpoint: Checkpoint, org: str, key: SigningKey) -> NoteSignature:
    """`org`'s note signature of the checkpoint."""
    return sign_note(checkpoint.text(), key_name(org, key.public_key), key)


def signed_checkpoint(checkpoint: Checkpoint, signatures: Sequence[NoteSignature]) -> str:
    """The signed note: checkpoint text, blank line, one line per cosigner."""
    return format_note(SignedNote(checkpoint.text(), tuple(signatures)))


def verify_checkpoint(
    note: str | bytes,
    roster: Roster,
    *,
    origin: str | None = None,
    previous: Checkpoint | None = None,
    proof: Sequence[Hash] | None = None,
) -> Checkpoint:
    """Return the checkpoint if a quorum of `roster` signed it; raise otherwise.

    With `previous` (a checkpoint already trusted), the new one must be at least
    as large and `proof` must be the RFC 9162 consistency proof between them.
    """
    parsed = parse_note(note)
    cp = parse_checkpoint(parsed.text)
    if origin is not None and cp.origin != origin:
        raise CheckpointError(f"checkpoint is of {cp.origin}, not of {origin}")
    known = {c.name: c for c in roster.cosigners}
    signers: set[str] = set()
    for sig in parsed.signatures:
        member = known.get(sig.name)
        if member is None:
            raise CheckpointError(f"checkpoint is signed by unknown key {sig.name}")
        if member.org in signers:
            raise CheckpointError(f"checkpoint is signed twice by {member.org}")
        try:
            verify_note_signature(parsed, sig, member.sign_key)
        except (EncodingError, InvalidSignatureError) as exc:
            raise CheckpointError(f"cosignature of {member.org} does not verify: {exc}") from None
        signers.add(member.org)
    if len(signers) < roster.quorum:
        raise CheckpointError(
            f"checkpoint has {len(signers)} cosigners, the quorum is {roster.quorum} "
            f"of {len(roster.cosigners)} members"
        )
    if previous is not None:
        if cp.origin != previous.origin:
            raise CheckpointError("the two checkpoints are of different consortia")
        if cp.size < previous.size:
            raise CheckpointError(
                f"checkpoint covers {cp.size} blocks, fewer than the {previous.size} "
                "of an earlier one: the chain was rewritten or this one is stale"
            )
        try:
            verify_consistency(previous.size, cp.size, previous.root, cp.root, proof or ())
        except IntegrityError as exc:
            raise CheckpointError(f"checkpoints are not consistent: {exc}") from None
    return cp


def block_hashes(store: Store, size: int | None = None) -> list[Hash]:
    """The block hashes of heights 0 .. size - 1 (default: the whole chain)."""
    head = store.head()
    have = 0 if head is None else head.height + 1
    size = have if size is None else size
    if not 0 < size <= have:
        raise NotFoundError(f"the chain has {have} blocks; cannot cover {size}")
    out = []
    for h, (height, block_hash) in enumerate(store.block_hashes(size)):
        if height != h:
            break
        out.append(block_hash)
    if len(out) != size:
        raise NotFoundError(f"block {len(out)} is missing from the store")
    return out


def checkpoint_of(hashes: Sequence[Hash], origin: str) -> Checkpoint:
    """The (unsigned) checkpoint of the history tree over `hashes`."""
    return Checkpoint(origin, len(hashes), merkle_root(hashes))


def history_inclusion(hashes: Sequence[Hash], height: int) -> list[Hash]:
    """Audit path of block `height` in the history tree over `hashes`."""
    return inclusion_proof(hashes, height)


def verify_history_inclusion(
    block_hash: Hash, height: int, checkpoint: Checkpoint, path: Sequence[Hash]
) -> None:
    """Raise unless `path` proves `block_hash` is block `height` under `checkpoint`."""
    if not 0 <= height < checkpoint.size:
        raise CheckpointError(f"block {height} is not covered by a checkpoint of {checkpoint.size}")
    try:
        verify_inclusion(block_hash, height, checkpoint.size, path, checkpoint.root)
    except IntegrityError as exc:
        raise CheckpointError(f"block {height} is not in the checkpoint's tree: {exc}") from None


def history_consistency(hashes: Sequence[Hash], old_size: int) -> list[Hash]:
    """Consistency proof from the first `old_size` blocks to all of `hashes`."""
    return consistency_proof(hashes, old_size)


LOW_LEVELS = 6
"""Levels of the history tree a tree reading its blocks back does not keep: a subtree of
2**6 = 64 blocks is hashed again from their hashes when a root or a proof needs a
part of one (127 hashes at most), so the tree holds about one hash per 32 blocks."""

HashSource = Callable[[int, int], Sequence[Hash]]
"""The block hashes of heights `lo .. hi - 1` (`source(lo, hi)`), where a tree reads them
back (a node's store)."""


class HistoryTree:
    """The history tree kept as blocks arrive: the root of any prefix, an audit path or a
    consistency proof in O(log n) hashes.

    Holds the hash of every complete, aligned subtree (level `k`, index `i`:
    leaves `i * 2^k .. (i + 1) * 2^k - 1`) from level `LOW_LEVELS` up when it can
    read block hashes back from `source`, every level and every block hash
    otherwise. A node checking checkpoints every minute would otherwise rehash
    its whole history each time; and a tree of every level held about 200 bytes
    of memory per block for as long as the node ran (2 GB at ten million
    blocks), against about 2.3 now.
    """

    def __init__(self, source: HashSource | None = None) -> None:
        self._source = source
        self._low = 0 if source is None else LOW_LEVELS
        self._levels: list[list[Hash]] = [[] for _ in range(self._low + 1)]
        self._size = 0
        self._kept: list[Hash] = []
        """Every block hash (only without a source)."""
        self._tail: list[Hash] = []
        """The block hashes since the last complete subtree of level `_low`."""

    def __len__(self) -> int:
        return self._size

    def append(self, block_hash: Hash) -> None:
        self._size += 1
        if self._source is None:
            self._kept.append(block_hash)
        self._tail.append(block_hash)
        if len(self._tail) < 1 << self._low:
            return
        node, level = merkle_root(self._tail), self._low
        self._tail = []
        while True:
            row = self._levels[level]
            row.append(node)
            if len(row) % 2:
                return
            node, level = node_hash(row[-2], node), level + 1
            if level == len(self._levels):
                self._levels.append([])

    def stored(self) -> int:
        """How many hashes the tree holds (its nodes, the block hashes it keeps)."""
        return sum(map(len, self._levels)) + len(self._kept) + len(self._tail)

    def leaves(self, size: int) -> list[Hash]:
        """The block hashes of heights 0 .. size - 1."""
        return self._hashes(0, size)

    def root(self, size: int) -> Hash:
        """The history root over the first `size` block hashes."""
        if not 0 < size <= self._size:
            raise CheckpointError(f"the tree has {self._size} leaves, not {size}")
        return self._subtree(0, size)

    def consistency(self, old: int, new: int) -> list[Hash]:
        """The RFC 9162 consistency proof from the first `old` blocks to the first `new`,
        from the stored nodes: O(log^2 n) hashes where `history_consistency` rehashes
        every block (1.3 s at a million blocks, per request)."""
        if not 0 <= old <= new <= self._size:
            raise CheckpointError(f"the tree has {self._size} leaves: no proof from {old} to {new}")
        return [] if old in (0, new) else consistency_path(new, old, self._subtree)

    def inclusion(self, height: int, size: int) -> list[Hash]:
        """The audit path of block `height` in the tree of the first `size` blocks, from
        the stored nodes (as `history_inclusion` computes it from every block)."""
        if not 0 <= height < size <= self._size:
            raise CheckpointError(
                f"the tree has {self._size} leaves: block {height} is not in the first {size}"
            )
        return inclusion_path(size, height, self._subtree)

    def _subtree(self, lo: int, hi: int) -> Hash:
        """The root over leaves `lo .. hi - 1` (hi <= the tree's size): a stored node where
        the range is one aligned subtree of a kept level, the block hashes' root where
        it spans no more than a subtree of the lowest kept level, else its two halves'
        as the RFC splits it (the ranges roots and proofs ask for are aligned, so
        O(log n))."""
        n = hi - lo
        level = n.bit_length() - 1
        if n == 1 << level and lo % n == 0 and level >= self._low:
            return self._levels[level][lo >> level]
        if n <= 1 << self._low:
            return merkle_root(self._hashes(lo, hi))
        k = 1 << ((n - 1).bit_length() - 1)
        return node_hash(self._subtree(lo, lo + k), self._subtree(lo + k, hi))

    def _hashes(self, lo: int, hi: int) -> list[Hash]:
        """The block hashes of heights `lo .. hi - 1`: kept, in the tail, or read back."""
        if self._source is None:
            return self._kept[lo:hi]
        first = self._size - len(self._tail)  # the tail's first height
        out = list(self._source(lo, min(hi, first))) if lo < first else []
        if len(out) != max(0, min(hi, first) - lo):
            raise CheckpointError(f"blocks {lo} to {hi - 1} are not all in the store")
        if hi <= first:
            return out
        return out + self._tail[max(lo, first) - first : hi - first]
