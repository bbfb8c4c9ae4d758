"""Anchors: this consortium (B) records another consortium's (A's) checkpoints.

B runs a light client of A inside its contracts. It trusts one thing about A,
A's genesis hash, given when an admin of B starts to follow A; from A's
genesis transaction it learns A's founders, their signing keys and A's
checkpoint quorum. Afterwards any member of B may

- advance A's roster with A's membership transactions: key rotations
  (`org.rotate-key`), each signed by the key it replaces, and admissions and
  removals by vote (`org.propose`, `org.vote`), tallied as A's membership
  contract tallies them; each proved in A's chain by an inclusion proof under
  a checkpoint of A that B already recorded (the rules of a proof bundle,
  `sharechain.ledger.roster_replay`, applied by the same code). A removed
  member's cosignature no longer counts, an admitted one's does, and the
  quorum is computed over A's active members;
- record a checkpoint of A: it must be cosigned by a quorum of A's roster as
  B tracks it, cover at least as many blocks as the last one recorded, and come
  with the RFC 9162 consistency proof from it, so B's records of A only ever
  extend one history. Rotations under the new checkpoint itself may come with
  it (a rotation is authorised by the key it replaces, not by the checkpoint).

A recorded checkpoint then says, with B's block time, that A's history tree of
that size existed by then: a proof bundle of A under it plus a proof bundle of
B's `anchor.record` transaction show a verifier that a transaction was on
chain A by the time of B's block (`sharechain.ledger.anchored`).

Like bundles, the light client does not see A's validation codes, so it
judges each membership transaction by the rules it can check (signer, key,
validity window, the contract's conditions) and refuses evidence the chain
would have refused; evidence nobody submits (a removal of A's) it cannot
notice until someone does; docs/proofs.md section 4 says what that leaves open.

State:
- `anchor/<A's genesis hash hex>`: what B knows of A (roster, latest checkpoint);
- `anchor-cp/<A's genesis hash hex>/<size, 20 digits>`: a recorded checkpoint.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sharechain.codec import decode
from sharechain.contracts._fields import require_role, sender
from sharechain.contracts.codes import BAD_PAYLOAD, DUPLICATE, NOT_FOUND
from sharechain.crypto.merkle import merkle_root
from sharechain.crypto.signed_note import parse_note
from sharechain.errors import EncodingError, IntegrityError
from sharechain.ledger.blocks import decode_header
from sharechain.ledger.bundles import bundle_headers, bundle_txs, keys_roster, load_bundle
from sharechain.ledger.checkpoints import (
    QUORUM_SETTING,
    Checkpoint,
    CheckpointError,
    Roster,
    origin_for,
    parse_checkpoint,
    verify_checkpoint,
)
from sharechain.ledger.contract import BlockContext, ContractRegistry, Reject, State
from sharechain.ledger.genesis import GENESIS_TYPE
from sharechain.ledger.roster_replay import Members, members_from_genesis, refuse_removed_signers
from sharechain.ledger.transactions import SignedTransaction

__all__ = [
    "BAD_ANCHOR",
    "FOLLOW",
    "KEYS",
    "RECORD",
    "Followed",
    "RecordedCheckpoint",
    "checkpoint_key",
    "followed",
    "followed_key",
    "recorded",
    "registry",
]

FOLLOW = "anchor.follow"
KEYS = "anchor.keys"
RECORD = "anchor.record"
BAD_ANCHOR = "bad_anchor"
"""Code of a refusal by the light client: the evidence or checkpoint does not verify."""

MAX_EVIDENCE = 64 * 1024
"""Bytes of one evidence document (blocks and transactions of A)."""
MAX_EVIDENCE_TXS = 64
MAX_NOTE = 16 * 1024
"""Characters of a checkpoint note (64 signatures fit)."""
MAX_PROOF = 64
"""Hashes of a consistency proof (enough for any tree of 2^63 leaves)."""
MAX_ROSTER = 256
"""Organisations of a followed consortium."""


@dataclass(frozen=True, slots=True)
class Followed:
    """What this chain knows of a followed consortium."""

    origin: str
    """`sharechain/<A's genesis hash hex>`."""
    keys: tuple[tuple[str, bytes], ...]
    """A's active members and their signing keys as tracked, by organisation id."""
    removed: tuple[str, ...]
    """A's members removed by vote, as tracked."""
    quorum: int
    """A's governance `checkpoint_quorum` (0: more than half)."""
    size: int
    """Tree size of the latest recorded checkpoint (1 right after following)."""
    root: bytes
    """Its history root."""
    keys_at: tuple[int, int]
    """(height, index) in A of the last membership transaction applied."""


@dataclass(frozen=True, slots=True)
class RecordedCheckpoint:
    """A checkpoint of a followed consortium, recorded after checking it."""

    note: str
    """The signed note as recorded."""
    size: int
    """Its tree size."""
    root: bytes
    """Its history root."""
    recorder: str
    """Organisation of this chain that recorded it."""
    tx_id: bytes
    """The `anchor.record` transaction."""
    height: int
    """Block height (of this chain) of the record."""
    timestamp: int
    """Block time of the record (ms): A's tree of this size existed by then."""


def followed_key(genesis_hash: bytes) -> str:
    return f"anchor/{genesis_hash.hex()}"


def checkpoint_key(genesis_hash: bytes, size: int) -> str:
    return f"anchor-cp/{genesis_hash.hex()}/{size:020d}"


def followed(value: Any) -> Followed:
    members = Members.from_value(value["members"])
    return Followed(
        value["origin"],
        tuple(sorted(members.keys().items())),
        tuple(sorted(o for o, v in members.orgs.items() if not v["active"])),
        value["quorum"],
        value["size"],
        value["root"],
        members.last,
    )


def recorded(value: Any) -> RecordedCheckpoint:
    return RecordedCheckpoint(
        value["note"],
        value["size"],
        value["root"],
        value["recorder"],
        value["tx_id"],
        value["height"],
        value["timestamp"],
    )


def _evidence(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, bytes) or len(raw) > MAX_EVIDENCE:
        raise Reject(
            BAD_PAYLOAD, f"evidence must be a JSON document of at most {MAX_EVIDENCE} bytes"
        )
    try:
        doc = load_bundle(raw)
    except IntegrityError as exc:
        raise Reject(BAD_PAYLOAD, f"evidence: {exc}") from None
    for field in ("blocks", "txs"):
        if not isinstance(doc.get(field), list) or len(doc[field]) > MAX_EVIDENCE_TXS:
            raise Reject(
                BAD_PAYLOAD, f"evidence {field} must be a list of at most {MAX_EVIDENCE_TXS}"
            )
    return doc


def _genesis_hash(origin: Any) -> bytes:
    try:
        gh = bytes.fromhex(origin.removeprefix("sharechain/")) if isinstance(origin, str) else b""
    except ValueError:
        gh = b""
    if len(gh) != 32 or origin != origin_for(gh):
        raise Reject(BAD_PAYLOAD, "origin must be sharechain/<64 hex digits of a genesis hash>")
    return gh


def _tracked(state: State, origin: Any) -> tuple[bytes, dict[str, Any]]:
    gh = _genesis_hash(origin)
    key = followed_key(gh)
    state.touch(key)
    value = state.get(key)
    if value is None:
        raise Reject(NOT_FOUND, f"this chain does not follow {origin}; send {FOLLOW} first")
    return gh, dict(value)


def _advance(value: dict[str, Any], doc: Mapping[str, Any] | None, cp: Checkpoint) -> None:
    """Apply the membership transactions of `doc`, proved under `cp`, to the tracked roster."""
    if doc is None:
        return
    members = Members.from_value(value["members"])
    members.replay(bundle_txs(doc, bundle_headers(doc, cp)), cp.size)
    if len(members.orgs) > MAX_ROSTER:
        raise CheckpointError(f"a followed consortium may have at most {MAX_ROSTER} members")
    value["members"] = members.to_value()


def _roster(value: Mapping[str, Any]) -> Roster:
    return keys_roster(
        Members.from_value(value["members"]).keys(), {QUORUM_SETTING: value["quorum"]}
    )


def _follow(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    require_role(sender(state, stx.tx.sender), "admin", "follow another consortium")
    doc = _evidence(stx.tx.payload.get("evidence"))
    try:
        header = decode_header(decode(base64.b64decode(doc["blocks"][0]["header"], validate=True)))
        gh = header.hash()
        origin = origin_for(gh)
        cp = Checkpoint(origin, 1, merkle_root([gh]))
        txs = bundle_txs(doc, bundle_headers(doc, cp))
        genesis = txs[0]
        if (genesis.height, genesis.index, genesis.stx.tx.type) != (0, 0, GENESIS_TYPE):
            raise Reject(BAD_ANCHOR, "the evidence must be block 0 and its genesis transaction")
        members = members_from_genesis(genesis.stx.tx.payload)
        governance = genesis.stx.tx.payload["governance"] or {}
        keys_roster(members.keys(), governance)
    except (IndexError, KeyError, TypeError, binascii.Error):
        raise Reject(
            BAD_ANCHOR, "the evidence must be block 0 and its genesis transaction"
        ) from None
    except (IntegrityError, EncodingError) as exc:
        raise Reject(BAD_ANCHOR, str(exc)) from None
    if len(members.orgs) > MAX_ROSTER:
        raise Reject(BAD_ANCHOR, f"a followed consortium may have at most {MAX_ROSTER} members")
    key = followed_key(gh)
    state.touch(key)
    if state.get(key) is not None:
        raise Reject(DUPLICATE, f"this chain already follows {origin}")
    state.put(
        key,
        {
            "origin": origin,
            "members": members.to_value(),
            "quorum": governance.get(QUORUM_SETTING) or 0,
            "size": 1,
            "root": cp.root,
        },
    )


def _keys(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    p = stx.tx.payload
    gh, value = _tracked(state, p.get("origin"))
    size = p.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise Reject(BAD_PAYLOAD, "size must be the tree size of a recorded checkpoint")
    cp_key = checkpoint_key(gh, size)
    state.touch(cp_key)
    entry = state.get(cp_key)
    if entry is None:
        raise Reject(NOT_FOUND, f"no checkpoint of size {size} of {value['origin']} is recorded")
    doc = _evidence(p.get("evidence"))
    try:
        _advance(value, doc, Checkpoint(value["origin"], size, entry["root"]))
        _roster(value)
    except (IntegrityError, EncodingError) as exc:
        raise Reject(BAD_ANCHOR, str(exc)) from None
    state.put(followed_key(gh), value)


def _proof(p: Mapping[str, Any]) -> list[bytes]:
    proof = p.get("proof", [])
    if (
        not isinstance(proof, list | tuple)
        or len(proof) > MAX_PROOF
        or not all(isinstance(h, bytes) and len(h) == 32 for h in proof)
    ):
        raise Reject(BAD_PAYLOAD, f"proof must be a list of at most {MAX_PROOF} 32-byte hashes")
    return list(proof)


def _record(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    p = stx.tx.payload
    gh, value = _tracked(state, p.get("origin"))
    note = p.get("checkpoint")
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise Reject(
            BAD_PAYLOAD, f"checkpoint must be a signed note of at most {MAX_NOTE} characters"
        )
    proof = _proof(p)
    doc = None if p.get("evidence") is None else _evidence(p["evidence"])
    previous = Checkpoint(value["origin"], value["size"], value["root"])
    try:
        cp = parse_checkpoint(parse_note(note).text)
        if cp.origin != previous.origin:
            raise CheckpointError(f"checkpoint is of {cp.origin}, not of {previous.origin}")
        _advance(value, doc, cp)
        roster = _roster(value)
        refuse_removed_signers(note, Members.from_value(value["members"]))
        verify_checkpoint(note, roster, origin=previous.origin, previous=previous, proof=proof)
    except (IntegrityError, EncodingError) as exc:
        raise Reject(BAD_ANCHOR, str(exc)) from None
    if cp.size == previous.size:
        raise Reject(
            DUPLICATE, f"a checkpoint of size {cp.size} of {cp.origin} is recorded already"
        )
    value["size"], value["root"] = cp.size, cp.root
    state.put(followed_key(gh), value)
    state.put(
        checkpoint_key(gh, cp.size),
        {
            "note": note,
            "size": cp.size,
            "root": cp.root,
            "recorder": stx.tx.sender,
            "tx_id": stx.id,
            "height": ctx.height,
            "timestamp": ctx.timestamp,
        },
    )


def registry() -> ContractRegistry:
    return ContractRegistry({FOLLOW: _follow, KEYS: _keys, RECORD: _record})
