"""Proof bundles: one JSON document that shows a transaction is on the chain.

A bundle carries everything an outside verifier needs, and nothing it must
trust but the consortium's genesis hash (which is in the checkpoint's origin):

- `checkpoint`: a quorum checkpoint (C2SP signed note) of the history tree;
- `blocks`: the headers the proofs below point into, each with its audit path
  in the history tree, so the checkpoint covers them; block 0 is always there
  and its hash must be the genesis hash named by the origin;
- `txs`: transaction envelopes, each with its audit path in its block's
  `tx_root`. The first is the *subject*; the others are the evidence of the
  members' keys: the genesis transaction (founders, their keys, governance)
  and every key rotation (`org.rotate-key`) of a founder before the
  checkpoint, in chain order.

The verifier replays the key evidence: it starts from the founders of the
genesis payload and applies each rotation, which must be signed by the key it
replaces and carry the new key's proof of possession. The resulting keys are
the checkpoint's roster (quorum: governance `checkpoint_quorum`, default more
than half), and the subject must be signed by its sender's key as of its own
position in the chain: a key rotated out before it is refused.

What a bundle does not prove: validation codes. A code is committed only in
its block's `state_delta_hash`, with every state write of the block, which a
bundle does not carry; so evidence rotations are judged by their signatures
alone (docs/proofs.md section 4 says what a stolen rotated-out key could do).
Membership changes by vote (admission, removal) are not evidenced: bundle
building refuses them rather than present a smaller roster than the chain's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sharechain.codec import decode, encode
from sharechain.crypto.merkle import Hash, inclusion_proof, verify_inclusion
from sharechain.crypto.signed_note import parse_note
from sharechain.crypto.signing import key_id, verify
from sharechain.errors import (
    EncodingError,
    IntegrityError,
    InvalidSignatureError,
    NotFoundError,
)
from sharechain.ledger.blocks import BlockHeader, decode_block, decode_header
from sharechain.ledger.checkpoints import (
    Checkpoint,
    CheckpointError,
    Roster,
    block_hashes,
    history_inclusion,
    parse_checkpoint,
    roster_of,
    verify_checkpoint,
    verify_history_inclusion,
)
from sharechain.ledger.genesis import GENESIS_TYPE
from sharechain.ledger.identities import Organisation
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import TX_DOMAIN, SignedTransaction, decode_transaction

__all__ = [
    "BUNDLE_TYPE",
    "BundleError",
    "BundleTx",
    "build_bundle",
    "bundle_headers",
    "bundle_txs",
    "evidence_doc",
    "founders_of",
    "keys_roster",
    "load_bundle",
    "replay_rotations",
    "rotation_ids",
    "verify_bundle",
]

BUNDLE_TYPE = "sharechain/proof-bundle/v1"
ROTATE = "org.rotate-key"
ROTATE_DOMAIN = b"sharechain/rotate-key/v1\x00"
"""As `sharechain.contracts.membership` signs it (the ledger may not import contracts)."""
MAX_BUNDLE_BYTES = 1 << 20
MAX_NESTING = 8
"""A bundle is four levels deep (object, list, object, audit path); more is refused."""


class BundleError(IntegrityError):
    """A proof bundle is malformed or does not prove what it claims; the message says why."""


@dataclass(frozen=True, slots=True)
class BundleTx:
    """One transaction of a bundle, with where it sits."""

    stx: SignedTransaction
    """The decoded envelope."""
    height: int
    """Block height."""
    index: int
    """Position in the block."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


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


def bundle_txs(doc: Mapping[str, Any], headers: Mapping[int, BlockHeader]) -> list[BundleTx]:
    """The transactions of `doc["txs"]`, each proved in its block of `headers`."""
    txs = doc.get("txs")
    if not isinstance(txs, list) or not txs:
        raise BundleError("bundle has no transactions")
    out = []
    for i, t in enumerate(txs):
        if not isinstance(t, dict):
            raise BundleError(f"txs[{i}] must be an object")
        raw = _bytes(t.get("envelope"), f"txs[{i}].envelope")
        height, index = _int(t.get("height"), "height"), _int(t.get("index"), "index")
        size = _int(t.get("size"), f"txs[{i}].size")
        header = headers.get(height)
        if header is None:
            raise BundleError(f"txs[{i}] is in block {height}, whose header is not in the bundle")
        tx_id = hashlib.sha256(raw).digest()
        try:
            verify_inclusion(tx_id, index, size, _path(t.get("path"), "path"), header.tx_root)
            stx = decode_transaction(raw, tx_id=tx_id)
        except (IntegrityError, EncodingError) as exc:
            raise BundleError(
                f"txs[{i}] ({tx_id.hex()[:16]}) is not in block {height}: {exc}"
            ) from None
        out.append(BundleTx(stx, height, index))
    return out


def _founders(genesis: BundleTx, genesis_hash: Hash, headers: Mapping[int, BlockHeader]) -> Any:
    if 0 not in headers or headers[0].hash() != genesis_hash:
        raise BundleError("block 0 of the bundle is not the genesis named by the checkpoint")
    if (genesis.height, genesis.index, genesis.stx.tx.type) != (0, 0, GENESIS_TYPE):
        raise BundleError("the second transaction must be the genesis transaction")
    return genesis.stx.tx.payload


def replay_rotations(
    keys: dict[str, bytes],
    evidence: Sequence[BundleTx],
    until: int,
    after: tuple[int, int] = (0, 0),
) -> dict[bytes, tuple[int, int]]:
    """Apply the rotations below height `until` and past position `after` to `keys`;
    return where each old key (by key id) was rotated out."""
    retired: dict[bytes, tuple[int, int]] = {}
    last = after
    for t in evidence:
        stx = t.stx
        where = f"rotation at height {t.height}"
        if (t.height, t.index) <= last:
            raise BundleError("key evidence must be in chain order, each once")
        last = (t.height, t.index)
        if stx.tx.type != ROTATE or t.height >= until:
            raise BundleError(f"{where}: evidence must be key rotations the checkpoint covers")
        org, p = stx.tx.sender, stx.tx.payload
        current = keys.get(org)
        if current is None or stx.key_id != key_id(current):
            raise BundleError(f"{where}: not signed by {org}'s key of the time")
        new_key, enc_key, pop = p.get("sign_key"), p.get("enc_key"), p.get("proof")
        try:
            verify(current, stx.signature, TX_DOMAIN, stx.body)
            if not isinstance(new_key, bytes) or not isinstance(enc_key, bytes):
                raise InvalidSignatureError("rotation payload lacks its keys")
            pop_msg = encode([org, new_key, enc_key])
            verify(new_key, pop if isinstance(pop, bytes) else b"", ROTATE_DOMAIN, pop_msg)
        except InvalidSignatureError as exc:
            raise BundleError(f"{where}: {org}'s rotation does not verify: {exc}") from None
        retired[key_id(current)] = (t.height, t.index)
        keys[org] = new_key
    return retired


def verify_bundle(doc: Mapping[str, Any]) -> None:
    """Raise `BundleError` (with the reason) unless the bundle proves its subject."""
    try:
        _verify(doc)
    except CheckpointError as exc:
        raise BundleError(str(exc)) from None


def _verify(doc: Mapping[str, Any]) -> None:
    if not isinstance(doc, dict) or doc.get("v") != 1 or doc.get("type") != BUNDLE_TYPE:
        raise BundleError(f"not a proof bundle (expected type {BUNDLE_TYPE}, v 1)")
    note = doc.get("checkpoint")
    if not isinstance(note, str):
        raise BundleError("bundle has no checkpoint")
    try:
        cp = parse_checkpoint(parse_note(note).text)
    except EncodingError as exc:
        raise BundleError(f"checkpoint: {exc}") from None
    if not cp.origin.startswith("sharechain/"):
        raise BundleError(f"checkpoint origin {cp.origin} is not a sharechain consortium")
    try:
        genesis_hash = bytes.fromhex(cp.origin.removeprefix("sharechain/"))
    except ValueError:
        genesis_hash = b""
    if len(genesis_hash) != 32:
        raise BundleError(f"checkpoint origin {cp.origin} does not name a genesis hash")
    headers = bundle_headers(doc, cp)
    txs = bundle_txs(doc, headers)
    if len(txs) < 2:
        raise BundleError("bundle lacks the genesis transaction (its key evidence)")
    subject, genesis, evidence = txs[0], txs[1], txs[2:]
    founders, governance = founders_of(_founders(genesis, genesis_hash, headers))
    keys = dict(founders)
    retired = replay_rotations(keys, evidence, cp.size)
    roster = keys_roster(keys, governance)
    verify_checkpoint(note, roster, origin=cp.origin)
    _check_subject(subject, founders, evidence, retired)


def founders_of(payload: Any) -> tuple[dict[str, bytes], Mapping[str, Any]]:
    """The founders' signing keys and the governance settings of a genesis payload."""
    try:
        founders = {o["id"]: o["sign_key"] for o in payload["organisations"]}
        governance = payload["governance"] or {}
    except (KeyError, TypeError):
        raise BundleError("genesis payload lacks its organisations or governance") from None
    if not all(isinstance(o, str) and isinstance(k, bytes) for o, k in founders.items()):
        raise BundleError("genesis organisations need a text id and a signing key each")
    if not isinstance(governance, Mapping):
        raise BundleError("genesis governance must be a map")
    return founders, governance


def keys_roster(keys: Mapping[str, bytes], governance: Mapping[str, Any]) -> Roster:
    """The checkpoint roster of members with these keys under these governance settings."""
    return roster_of(
        (Organisation(org, ("member",), k, b"") for org, k in keys.items()), governance
    )


def _check_subject(
    subject: BundleTx,
    founders: Mapping[str, bytes],
    evidence: Sequence[BundleTx],
    retired: Mapping[bytes, tuple[int, int]],
) -> None:
    """The subject's sender signed it with its key as of the subject's position."""
    stx = subject.stx
    if stx.tx.type == GENESIS_TYPE and (subject.height, subject.index) == (0, 0):
        return  # genesis is unsigned: it is the block whose hash is the origin
    org = stx.tx.sender
    key = founders.get(org)
    if key is None:
        raise BundleError(f"sender {org} is not a member the bundle gives evidence for")
    for t in evidence:  # the key of `org` just before the subject
        if t.stx.tx.sender == org and (t.height, t.index) < (subject.height, subject.index):
            key = t.stx.tx.payload["sign_key"]
    if stx.key_id != key_id(key):
        left = retired.get(stx.key_id)
        if left is not None and left <= (subject.height, subject.index):
            raise BundleError(
                f"the transaction is signed with a key of {org} rotated out at height "
                f"{left[0]}, before the transaction at height {subject.height}"
            )
        raise BundleError(f"the transaction is not signed by {org}'s key of the time")
    try:
        verify(key, stx.signature, TX_DOMAIN, stx.body)
    except InvalidSignatureError:
        raise BundleError(f"the transaction's signature by {org} does not verify") from None


def _tx_entry(store: Store, tx_id: bytes) -> dict[str, Any]:
    loc = store.tx_location(tx_id)
    data = store.block_bytes(loc.height) if loc is not None else None
    if loc is None or data is None:
        raise NotFoundError(f"transaction {tx_id.hex()} is not on this chain")
    block = decode_block(data, check_canonical=False)
    return {
        "envelope": _b64(block.txs[loc.index]),
        "height": loc.height,
        "index": loc.index,
        "size": len(block.tx_ids),
        "path": [_b64(p) for p in inclusion_proof(block.tx_ids, loc.index)],
    }


def build_bundle(store: Store, tx_id: bytes, checkpoint_note: str) -> dict[str, Any]:
    """The bundle proving `tx_id` under `checkpoint_note` (a quorum checkpoint of this chain)."""
    cp = parse_checkpoint(parse_note(checkpoint_note).text)
    hashes = block_hashes(store, cp.size)
    genesis = decode_block(store.block_bytes(0) or b"", check_canonical=False)
    founders = [o["id"] for o in decode_transaction(genesis.txs[0]).tx.payload["organisations"]]
    if sorted(k.removeprefix("org/") for k, _ in store.scan("org/")) != sorted(founders):
        raise BundleError(
            "membership changed by vote since genesis; bundles cover founding members "
            "and their key rotations only (admission and removal evidence is not built yet)"
        )
    ids = [tx_id, genesis.tx_ids[0], *rotation_ids(store, founders, cp.size)]
    return {"v": 1, "type": BUNDLE_TYPE, "checkpoint": checkpoint_note} | evidence_doc(
        store, ids, hashes
    )


def rotation_ids(
    store: Store, orgs: Sequence[str], size: int, after: tuple[int, int] = (0, 0)
) -> list[bytes]:
    """The valid key rotations of `orgs` past position `after` and below height `size`,
    in chain order."""
    found = []
    for org in orgs:
        for e in store.history(f"org/{org}"):
            loc = store.tx_location(e.tx_id)
            past = after < (e.height, e.index) and e.height < size
            if past and loc and loc.type == ROTATE and loc.code == "valid":
                found.append((e.height, e.index, e.tx_id))
    return [t for _, _, t in sorted(found)]


def evidence_doc(store: Store, tx_ids: Sequence[bytes], hashes: Sequence[Hash]) -> dict[str, Any]:
    """`{"blocks", "txs"}` of a bundle: the transactions `tx_ids` (in this order) with
    their inclusion proofs, under the history tree over `hashes`."""
    txs = [_tx_entry(store, t) for t in tx_ids]
    blocks = []
    for h in sorted({t["height"] for t in txs}):
        if h >= len(hashes):
            raise NotFoundError(f"the checkpoint covers {len(hashes)} blocks, not block {h}")
        header = decode_block(store.block_bytes(h) or b"", check_canonical=False).header
        path = history_inclusion(hashes, h)
        blocks.append({"header": _b64(header.encoded()), "path": [_b64(p) for p in path]})
    return {"blocks": blocks, "txs": txs}


def load_bundle(data: bytes) -> dict[str, Any]:
    """Parse a bundle file, refusing what is not a JSON object of a sane size."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"bundle is larger than {MAX_BUNDLE_BYTES} bytes")
    if _nesting(data) > MAX_NESTING:
        # Checked before parsing: deep nesting would exhaust the parser's recursion
        # limit, which depends on the caller's stack (contracts must be deterministic).
        raise BundleError(f"bundle nests arrays or objects deeper than {MAX_NESTING}")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"bundle is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BundleError("bundle must be a JSON object")
    return doc


def _nesting(data: bytes) -> int:
    """Deepest nesting of JSON arrays and objects in `data` (strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest
