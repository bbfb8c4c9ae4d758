"""Proof bundles: one JSON document that shows a transaction is on the chain.

A bundle carries everything an outside verifier needs, and nothing it must
trust but the consortium's genesis hash (which is in the checkpoint's origin):

- `checkpoint`: a quorum checkpoint (C2SP signed note) of the history tree;
- `blocks`: the headers the proofs below point into, each with its audit path
  in the history tree, so the checkpoint covers them; block 0 is always there
  and its hash must be the genesis hash named by the origin;
- `txs`: transaction envelopes, each with its audit path in its block's
  `tx_root`, and its validation result (code and reason) with the audit path
  of `CBOR([tx_id, code, reason])` in its block's `results_root`, at the same
  index. The first is the *subject*; the others are the evidence of the
  members' keys: the genesis transaction (founders, their roles and keys,
  governance) and every valid membership transaction before the checkpoint
  (`org.rotate-key`, `org.propose`, `org.vote`), in chain order;
- `lineage` (optional): earlier transactions the object needs, proved alike
  (a dataset version's earlier versions);
- `object` (optional): what the subject is (a dataset version, a grant, a read
  receipt, a notarised file); `sharechain.contracts.bundle_objects` checks it
  against the subject and says what it shows.

The verifier replays the membership evidence (`sharechain.ledger.roster_replay`):
from the genesis founders it applies each rotation (signed by the key it
replaces, with the new key's proof of possession) and tallies each proposal's
votes as the membership contract does, admitting or removing organisations.
The active members' keys at the end are the checkpoint's roster (quorum:
governance `checkpoint_quorum`, default more than half), and the subject and
lineage must each be signed by its sender's key as of its own position in the
chain: a key rotated out, or an organisation removed, before it is refused.

Each transaction's validation code is proved (`results_root`): the subject
may be a refused transaction (the bundle then proves it was refused, and
why); membership evidence must be valid, and is also judged by the rules a
verifier can recompute (docs/proofs.md section 4).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from sharechain.codec import decode
from sharechain.crypto.merkle import Hash, verify_inclusion
from sharechain.crypto.signed_note import parse_note
from sharechain.crypto.signing import key_id, verify
from sharechain.errors import (
    EncodingError,
    IntegrityError,
    InvalidSignatureError,
)
from sharechain.ledger.blocks import (
    BlockHeader,
    TxResult,
    decode_header,
    result_leaf,
)
from sharechain.ledger.bundle_doc import (
    BUNDLE_TYPE,
    BundleError,
    build_bundle,
    evidence_doc,
    load_bundle,
    membership_ids,
)
from sharechain.ledger.checkpoints import (
    Checkpoint,
    CheckpointError,
    Roster,
    parse_checkpoint,
    roster_of,
    verify_checkpoint,
    verify_history_inclusion,
)
from sharechain.ledger.genesis import GENESIS_TYPE
from sharechain.ledger.identities import Organisation
from sharechain.ledger.roster_replay import (
    EvidenceError,
    Members,
    Placed,
    members_from_genesis,
    refuse_removed_signers,
)
from sharechain.ledger.strict_cbor import strict_decode
from sharechain.ledger.transactions import TX_DOMAIN, decode_transaction

__all__ = [
    "BUNDLE_TYPE",
    "BundleError",
    "BundleTx",
    "Proved",
    "build_bundle",
    "bundle_headers",
    "bundle_txs",
    "evidence_doc",
    "keys_roster",
    "load_bundle",
    "membership_ids",
    "verify_bundle",
]


BundleTx = Placed
"""One transaction of a bundle, with where it sits (and its block's time)."""


@dataclass(frozen=True, slots=True)
class Proved:
    """What a verified bundle shows."""

    checkpoint: Checkpoint
    """The quorum checkpoint it is under."""
    subject: BundleTx
    """The transaction it proves (signed by its sender's key of the time), with its
    validation code (`subject.code`, proved under its block's `results_root`)."""
    lineage: tuple[BundleTx, ...]
    """Earlier transactions the object needs (a dataset's earlier versions), oldest first,
    each proved and signed like the subject."""
    headers: Mapping[int, BlockHeader]
    """The block headers it carries, by height."""


def _bytes(value: Any, what: str, size: int | None = None) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True) if isinstance(value, str) else None
    except binascii.Error:
        raw = None
    if raw is None or (size is not None and len(raw) != size):
        raise BundleError(f"{what} must be base64" + (f" of {size} bytes" if size else ""))
    return raw


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BundleError(f"{what} must be a non-negative integer")
    return value


def _path(value: Any, what: str) -> list[Hash]:
    if not isinstance(value, list) or len(value) > 64:
        raise BundleError(f"{what} must be a list of at most 64 hashes")
    return [_bytes(x, what, 32) for x in value]


def bundle_headers(doc: Mapping[str, Any], cp: Checkpoint) -> dict[int, BlockHeader]:
    """The block headers of `doc["blocks"]`, each proved under `cp` (raise otherwise)."""
    blocks = doc.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        raise BundleError("bundle has no block headers")
    out: dict[int, BlockHeader] = {}
    for i, b in enumerate(blocks):
        if not isinstance(b, dict):
            raise BundleError(f"blocks[{i}] must be an object")
        raw = _bytes(b.get("header"), f"blocks[{i}].header")
        try:
            header = decode_header(decode(raw))
        except EncodingError as exc:
            raise BundleError(f"blocks[{i}].header: {exc}") from None
        if header.height in out:
            raise BundleError(f"block {header.height} is listed twice")
        path = _path(b.get("path"), f"blocks[{i}].path")
        verify_history_inclusion(header.hash(), header.height, cp, path)
        out[header.height] = header
    return out


def bundle_txs(
    doc: Mapping[str, Any], headers: Mapping[int, BlockHeader], field: str = "txs"
) -> list[BundleTx]:
    """The transactions of `doc[field]`, each proved in its block of `headers`."""
    txs = doc.get(field, [] if field != "txs" else None)
    if not isinstance(txs, list) or (field == "txs" and not txs):
        raise BundleError("bundle has no transactions" if field == "txs" else f"{field} is no list")
    out = []
    for i, t in enumerate(txs):
        if not isinstance(t, dict):
            raise BundleError(f"{field}[{i}] must be an object")
        raw = _bytes(t.get("envelope"), f"{field}[{i}].envelope")
        height, index = _int(t.get("height"), "height"), _int(t.get("index"), "index")
        size = _int(t.get("size"), f"{field}[{i}].size")
        header = headers.get(height)
        if header is None:
            raise BundleError(
                f"{field}[{i}] is in block {height}, whose header is not in the bundle"
            )
        tx_id = hashlib.sha256(raw).digest()
        try:
            verify_inclusion(tx_id, index, size, _path(t.get("path"), "path"), header.tx_root)
        except IntegrityError as exc:
            raise BundleError(
                f"{field}[{i}] ({tx_id.hex()[:16]}) is not in block {height}: {exc}"
            ) from None
        result = _result(t, f"{field}[{i}]", tx_id, index, size, header)
        try:
            stx = decode_transaction(raw, tx_id=tx_id)
            # One reading of the signed body, or none: see `strict_cbor`.
            strict_decode(stx.body)
        except EncodingError as exc:
            raise BundleError(f"{field}[{i}] ({tx_id.hex()[:16]}) {exc}") from None
        out.append(BundleTx(stx, height, index, header.timestamp, result.code, result.reason))
    return out


def _result(
    t: Mapping[str, Any], what: str, tx_id: bytes, index: int, size: int, header: BlockHeader
) -> TxResult:
    """The entry's validation result, proved at `index` of its block's `results_root`."""
    code, reason = t.get("code"), t.get("reason")
    if not isinstance(code, str) or not code or not isinstance(reason, str):
        raise BundleError(f"{what} has no validation result (text `code` and `reason`)")
    result = TxResult(code, reason)
    try:
        verify_inclusion(
            result_leaf(tx_id, result),
            index,
            size,
            _path(t.get("result_path"), f"{what}.result_path"),
            header.results_root,
        )
    except IntegrityError as exc:
        raise BundleError(
            f"{what} ({tx_id.hex()[:16]}): code {code!r} is not its result in block "
            f"{header.height}: {exc}"
        ) from None
    return result


def _genesis(
    txs: Sequence[BundleTx], genesis_hash: Hash, headers: Mapping[int, BlockHeader]
) -> Any:
    if len(txs) < 2:
        raise BundleError("bundle lacks the genesis transaction (its key evidence)")
    genesis = txs[1]
    if 0 not in headers or headers[0].hash() != genesis_hash:
        raise BundleError("block 0 of the bundle is not the genesis named by the checkpoint")
    if (genesis.height, genesis.index, genesis.stx.tx.type) != (0, 0, GENESIS_TYPE):
        raise BundleError("the second transaction must be the genesis transaction")
    return genesis.stx.tx.payload


def verify_bundle(doc: Mapping[str, Any]) -> Proved:
    """What the bundle proves; raise `BundleError` (with the reason) unless it proves it."""
    try:
        return _verify(doc)
    except (CheckpointError, EvidenceError) as exc:
        raise BundleError(str(exc)) from None


def _origin_hash(cp: Checkpoint) -> Hash:
    if not cp.origin.startswith("sharechain/"):
        raise BundleError(f"checkpoint origin {cp.origin} is not a sharechain consortium")
    try:
        genesis_hash = bytes.fromhex(cp.origin.removeprefix("sharechain/"))
    except ValueError:
        genesis_hash = b""
    if len(genesis_hash) != 32:
        raise BundleError(f"checkpoint origin {cp.origin} does not name a genesis hash")
    return genesis_hash


def _verify(doc: Mapping[str, Any]) -> Proved:
    if not isinstance(doc, dict) or doc.get("v") != 1 or doc.get("type") != BUNDLE_TYPE:
        raise BundleError(f"not a proof bundle (expected type {BUNDLE_TYPE}, v 1)")
    note = doc.get("checkpoint")
    if not isinstance(note, str):
        raise BundleError("bundle has no checkpoint")
    try:
        cp = parse_checkpoint(parse_note(note).text)
    except EncodingError as exc:
        raise BundleError(f"checkpoint: {exc}") from None
    genesis_hash = _origin_hash(cp)
    headers = bundle_headers(doc, cp)
    txs = bundle_txs(doc, headers)
    lineage = bundle_txs(doc, headers, "lineage")
    members = members_from_genesis(_genesis(txs, genesis_hash, headers))
    governance = txs[1].stx.tx.payload["governance"] or {}
    subject, evidence = txs[0], txs[2:]
    where = [_at(e) for e in evidence]
    if any(a >= b for a, b in pairwise(where)):
        raise BundleError("key evidence must be in chain order, each once")
    signed = sorted([subject, *lineage], key=_at)
    if len({_at(t) for t in signed}) != len(signed):
        raise BundleError("the lineage lists a transaction twice or the subject itself")
    done = 0
    for t in signed:  # replay the evidence up to each signed transaction, then check it
        upto = done
        while upto < len(evidence) and where[upto] < _at(t):
            upto += 1
        members.replay(evidence[done:upto], cp.size)
        done = upto
        _check_signed(t, members, "the transaction" if t is subject else "a lineage transaction")
    members.replay(evidence[done:], cp.size)
    refuse_removed_signers(note, members)
    verify_checkpoint(note, keys_roster(members.keys(), governance), origin=cp.origin)
    return Proved(cp, subject, tuple(lineage), headers)


def _at(t: BundleTx) -> tuple[int, int]:
    return (t.height, t.index)


def keys_roster(keys: Mapping[str, bytes], governance: Mapping[str, Any]) -> Roster:
    """The checkpoint roster of members with these keys under these governance settings."""
    return roster_of(
        (Organisation(org, ("member",), k, b"") for org, k in keys.items()), governance
    )


def _check_signed(t: BundleTx, members: Members, what: str) -> None:
    """`t`'s sender signed it with its key as of `t`'s position (`members` replayed to it)."""
    stx = t.stx
    if stx.tx.type == GENESIS_TYPE and _at(t) == (0, 0):
        return  # genesis is unsigned: it is the block whose hash is the origin
    org = stx.tx.sender
    record = members.orgs.get(org)
    if record is None:
        raise BundleError(f"sender {org} is not a member the bundle gives evidence for")
    if not record["active"]:
        at = members.removed_at.get(org)
        raise BundleError(
            f"{what} is signed by {org}, removed from the consortium"
            + (f" at height {at}" if at is not None else "")
            + f", before the transaction at height {t.height}"
        )
    key = record["sign_key"]
    if stx.key_id != key_id(key):
        left = members.retired.get(stx.key_id)
        if left is not None and left <= _at(t):
            raise BundleError(
                f"{what} is signed with a key of {org} rotated out at height "
                f"{left[0]}, before the transaction at height {t.height}"
            )
        raise BundleError(f"{what} is not signed by {org}'s key of the time")
    try:
        verify(key, stx.signature, TX_DOMAIN, stx.body)
    except InvalidSignatureError:
        raise BundleError(f"{what}'s signature by {org} does not verify") from None
