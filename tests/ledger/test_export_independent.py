"""An independent verifier of the JSON Lines export, written from docs/format.md.

It uses no sharechain code: cbor2 for the canonical encoding, hashlib, and
`cryptography`'s Ed25519 (not our libsodium path). It recomputes every
transaction id, Merkle root (of the ids and of the results), header hash,
hash link, orderer and transaction signature, `state_delta_hash` and running
state root, tracking organisation records (and so key rotations) from each
block's writes; then it checks the
seal (docs/proofs.md sections 1-3): the founders' signed genesis note and the
quorum checkpoint over exactly the exported blocks, C2SP notes parsed by hand.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from ledger_kit import Kit

from sharechain.contracts import notary
from sharechain.crypto.signing import SigningKey
from sharechain.errors import SharechainError
from sharechain.ledger.checkpoints import (
    CheckpointError,
    block_hashes,
    checkpoint_of,
    cosign,
    origin_for,
    signed_checkpoint,
)
from sharechain.ledger.contract import BlockContext, ContractRegistry, State
from sharechain.ledger.export import export_records
from sharechain.ledger.export import verify_export as sharechain_verify_export
from sharechain.ledger.export_seal import genesis_note, seal_line
from sharechain.ledger.identities import org_from_value, org_key, org_to_value
from sharechain.ledger.transactions import SignedTransaction

TX_DOMAIN = b"sharechain/tx/v1\x00"
BLOCK_DOMAIN = b"sharechain/block/v1\x00"
PRE_SIGNATURE_CODES = {"bad_encoding", "unknown_sender", "sender_removed", "stale_key"}


def _sha(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def _mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return _sha(b"")
    if len(leaves) == 1:
        return _sha(b"\x00" + leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return _sha(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:]))


def _canonical(raw: bytes) -> Any:
    value = cbor2.loads(raw)
    if cbor2.dumps(value, canonical=True) != raw:
        raise ValueError("not canonical")
    return value


def _key_for(sender: str, key_id: bytes, records: list[bytes | None]) -> bytes | None:
    """The sender's public key with this key id, as of block start or as written in the block."""
    for raw in records:
        if raw is not None:
            org = cbor2.loads(raw)
            if org["status"] == "active" and _sha(org["sign_key"]) == key_id:
                return bytes(org["sign_key"])
    return None


def _checkpoint(note: str, roster: dict[str, bytes], quorum: int) -> tuple[str, int, bytes]:
    """(origin, size, root) of a C2SP signed note a quorum of `roster` (org -> key) signed."""
    text, _, sigs = note.partition("\n\n")
    text += "\n"
    origin, size, root = text[:-1].split("\n")[:3]
    names = {f"{o}/{_sha(k).hex()[:16]}": (o, k) for o, k in roster.items()}
    signers = set()
    for line in sigs.splitlines():
        assert line.startswith("\u2014 "), "signature line"
        name, blob = line[2:].split(" ")
        org, key = names[name]  # KeyError: not a member's key
        raw = base64.b64decode(blob, validate=True)
        assert raw[:4] == _sha(name.encode() + b"\n\x01" + key)[:4], "key ID"
        Ed25519PublicKey.from_public_bytes(key).verify(raw[4:], text.encode())
        assert org not in signers, "signed twice"
        signers.add(org)
    assert len(signers) >= quorum, f"{len(signers)} cosigners, quorum {quorum}"
    return origin, int(size), base64.b64decode(root)


def _roster(orgs: list[dict[str, Any]], governance: dict[str, Any]) -> tuple[dict[str, bytes], int]:
    members = {o["id"]: bytes(o["sign_key"]) for o in orgs if o.get("status", "active") == "active"}
    return members, governance.get("checkpoint_quorum") or len(members) // 2 + 1


def _check_seal(
    seal: dict[str, Any], hashes: list[bytes], state: dict[str, bytes], genesis: Any
) -> None:
    assert seal["type"] == "sharechain/export-seal/v1" and seal["v"] == 1, "no seal line"
    origin = "sharechain/" + hashes[0].hex()
    founders = _roster(genesis["organisations"], genesis["governance"])
    assert _checkpoint(seal["genesis"], *founders) == (origin, 1, _mth(hashes[:1]))
    orgs = [cbor2.loads(v) for k, v in state.items() if k.startswith("org/")]
    final = _roster(orgs, cbor2.loads(state.get("config/governance", b"\xa0")))
    assert _checkpoint(seal["checkpoint"], *final) == (origin, len(hashes), _mth(hashes)), "seal"


def verify_export(lines: list[str]) -> dict[str, Any]:
    """Check every line; raise (AssertionError or InvalidSignature) at the first failure."""
    *lines, seal_text = lines
    hashes: list[bytes] = []
    genesis: Any = None
    state: dict[str, bytes] = {}
    prev_hash, root = bytes(32), bytes(32)
    seen: set[bytes] = set()
    for n, line in enumerate(lines):
        rec = json.loads(line)
        assert rec["v"] == 1 and rec["height"] == n, f"line {n}: wrong height"
        h = rec["header"]
        header = {
            "height": h["height"],
            "prev_hash": bytes.fromhex(h["prev_hash"]),
            "tx_root": bytes.fromhex(h["tx_root"]),
            "results_root": bytes.fromhex(h["results_root"]),
            "state_delta_hash": bytes.fromhex(h["state_delta_hash"]),
            "timestamp": h["timestamp"],
            "orderer": h["orderer"],
        }
        header_cbor = cbor2.dumps(header, canonical=True)
        assert header_cbor.hex() == rec["header_cbor"], f"block {n}: header_cbor"
        block_hash = _sha(header_cbor)
        assert block_hash.hex() == rec["hash"], f"block {n}: hash"
        assert header["height"] == n and header["prev_hash"] == prev_hash, f"block {n}: link"
        envelopes = [bytes.fromhex(t["envelope"]) for t in rec["txs"]]
        ids = [_sha(e) for e in envelopes]
        assert [i.hex() for i in ids] == [t["id"] for t in rec["txs"]], f"block {n}: tx ids"
        assert _mth(ids) == header["tx_root"], f"block {n}: tx_root"
        results = [
            cbor2.dumps([i, t["code"], t["reason"]], canonical=True)
            for i, t in zip(ids, rec["txs"], strict=True)
        ]
        assert _mth(results) == header["results_root"], f"block {n}: results_root"
        writes = {k: None if v is None else bytes.fromhex(v) for k, v in rec["writes"]}
        assert list(writes) == sorted(writes), f"block {n}: writes not sorted"

        if n == 0:
            assert rec["signature"] == "" and header["orderer"] == "", "genesis is unsigned"
            assert len(envelopes) == 1
            version, body, key_id, sig = _canonical(envelopes[0])
            assert (version, key_id, sig) == (1, b"", b"")
            assert cbor2.loads(body)["type"] == "genesis"
            genesis = cbor2.loads(body)["payload"]
        else:
            orderer = _key_for(
                header["orderer"],
                _sha(cbor2.loads(state[f"org/{header['orderer']}"])["sign_key"]),
                [state.get(f"org/{header['orderer']}")],
            )
            assert orderer is not None, f"block {n}: orderer is not an active organisation"
            Ed25519PublicKey.from_public_bytes(orderer).verify(
                bytes.fromhex(rec["signature"]), BLOCK_DOMAIN + header_cbor
            )
            for tx, raw, tx_id in zip(rec["txs"], envelopes, ids, strict=True):
                code = tx["code"]
                try:
                    version, body, key_id, sig = _canonical(raw)
                    assert version == 1
                    sender = cbor2.loads(body)["sender"]
                except Exception:
                    assert code == "bad_encoding", f"block {n}: undecodable tx marked {code}"
                    continue
                key = f"org/{sender}"
                public = _key_for(sender, key_id, [state.get(key), writes.get(key)])
                if code in PRE_SIGNATURE_CODES:
                    assert code != "unknown_sender" or key not in state
                    assert code != "stale_key" or public is None
                    continue
                assert public is not None, f"block {n}: no current key for {sender}"
                if code == "bad_signature":
                    with pytest.raises(InvalidSignature):
                        Ed25519PublicKey.from_public_bytes(public).verify(sig, TX_DOMAIN + body)
                    continue
                Ed25519PublicKey.from_public_bytes(public).verify(sig, TX_DOMAIN + body)
                assert (code == "replay") == (tx_id in seen), f"block {n}: replay marking"
                seen.add(tx_id)

        delta = _sha(
            cbor2.dumps(
                {
                    "results": [[t["code"], t["reason"]] for t in rec["txs"]],
                    "writes": [[k, writes[k]] for k in sorted(writes)],
                },
                canonical=True,
            )
        )
        assert delta == header["state_delta_hash"], f"block {n}: state_delta_hash"
        root = _sha(root + delta)
        assert root.hex() == rec["state_root"], f"block {n}: state_root"
        for k, v in writes.items():
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v
        prev_hash = block_hash
        hashes.append(block_hash)
    _check_seal(json.loads(seal_text), hashes, state, genesis)
    return {"height": len(lines) - 1, "head": prev_hash, "state_root": root, "state": state}


# -- a chain worth exporting ---------------------------------------------------------

ROTATE = "test.rotate_key"


def _rotate(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    # Test-only stand-in for membership key rotation (see test_chain.py).
    org = org_from_value(state.get(org_key(stx.tx.sender)))
    state.put(org_key(org.id), org_to_value(dataclasses.replace(org, sign_key=stx.tx.payload["k"])))


@pytest.fixture
def exported(tmp_path: Path) -> tuple[Kit, list[str]]:
    kit = Kit(tmp_path / "l.db", notary.registry().merged(ContractRegistry({ROTATE: _rotate})))
    founders = genesis_note(kit.genesis.hash(), {o: k.signing for o, k in kit.keys.items()})
    first = kit.record("hospital-a", b"first", note="degree certificate")
    kit.add([first.raw])
    forged = cbor2.dumps([1, first.body, first.key_id, bytes(64)], canonical=True)
    kit.add(
        [
            kit.record("hospital-b", b"second").raw,
            kit.sign("regulator", notary.ENDORSE, {"record": first.id}).raw,
            first.raw,  # replay
            forged,  # bad signature
            b"\xffjunk",  # bad encoding
            kit.record("hospital-a", b"first").raw,  # duplicate file: contract code
        ],
        orderer="regulator",
    )
    new = SigningKey.from_seed(b"\x44" * 32)
    old_signed = kit.record("hospital-b", b"old key")
    kit.add([kit.sign("hospital-b", ROTATE, {"k": new.public_key}).raw], orderer="hospital-b")
    kit.keys["hospital-b"] = dataclasses.replace(kit.keys["hospital-b"], signing=new)
    kit.add([old_signed.raw, kit.record("hospital-b", b"new key").raw], orderer="hospital-b")
    signers = {o: k.signing for o, k in kit.keys.items()}
    records = export_records(
        kit.store, kit.registry, seal=lambda s: seal_line(s, signers, founders)
    )
    lines = [json.dumps(r) for r in records]
    return kit, lines


def test_independent_verifier_accepts_the_export(exported: tuple[Kit, list[str]]) -> None:
    kit, lines = exported
    result = verify_export(lines)
    head = kit.store.head()
    assert head is not None
    assert result["height"] == head.height == 4
    assert result["head"] == head.hash and result["state_root"] == head.state_root
    # The replayed state equals the node's world state, key for key.
    assert result["state"] == dict(kit.store.scan(""))
    codes = [t["code"] for t in json.loads(lines[2])["txs"]]
    assert codes == ["valid", "valid", "replay", "bad_signature", "bad_encoding", "duplicate"]
    assert [t["code"] for t in json.loads(lines[4])["txs"]] == ["stale_key", "valid"]


def _edit(n: int, change: Callable[[dict[str, Any]], None]) -> Callable[[list[str]], list[str]]:
    def apply(lines: list[str]) -> list[str]:
        rec = json.loads(lines[n])
        change(rec)
        return [*lines[:n], json.dumps(rec), *lines[n + 1 :]]

    return apply


def _flip_hex(s: str, at: int = 10) -> str:
    return s[:at] + ("0" if s[at] != "0" else "1") + s[at + 1 :]


def _set(path: tuple[Any, ...], fn: Callable[[Any], Any]) -> Callable[[dict[str, Any]], None]:
    def change(rec: dict[str, Any]) -> None:
        obj = rec
        for p in path[:-1]:
            obj = obj[p]
        obj[path[-1]] = fn(obj[path[-1]])

    return change


@pytest.mark.parametrize(
    "tamper",
    [
        _edit(1, _set(("txs", 0, "envelope"), lambda e: _flip_hex(e, len(e) - 6))),
        _edit(2, _set(("header", "timestamp"), lambda t: t + 1)),
        _edit(2, _set(("signature",), _flip_hex)),
        _edit(3, _set(("writes", 0, 1), _flip_hex)),
        _edit(2, _set(("txs", 1, "code"), lambda c: "denied")),
        _edit(2, _set(("txs", 3, "code"), lambda c: "valid")),
        _edit(2, _set(("txs", 1, "reason"), lambda r: r + "!")),
        _edit(2, _set(("header", "results_root"), _flip_hex)),
        _edit(1, _set(("state_root",), _flip_hex)),
        lambda lines: [lines[0], lines[2], lines[1], *lines[3:]],
        lambda lines: [lines[0], *lines[2:]],
    ],
    ids=[
        "tx-byte",
        "header-field",
        "orderer-sig",
        "write-value",
        "result-code",
        "forged-marked-valid",
        "result-reason",
        "results-root",
        "state-root",
        "reordered",
        "missing",
    ],
)
def test_independent_verifier_rejects_tampering(
    exported: tuple[Kit, list[str]], tamper: Callable[[list[str]], list[str]]
) -> None:
    kit, lines = exported
    with pytest.raises((AssertionError, InvalidSignature, ValueError)):
        verify_export(tamper(lines))
    with pytest.raises(SharechainError):
        sharechain_verify_export(tamper(lines), kit.registry)


def test_sharechain_verifier_accepts_the_export(exported: tuple[Kit, list[str]]) -> None:
    kit, lines = exported
    summary = sharechain_verify_export(lines, kit.registry)
    head = kit.store.head()
    assert head is not None
    assert (summary.blocks, summary.head, summary.state_root) == (5, head.hash, head.state_root)


@pytest.mark.parametrize(
    ("cut", "reason"),
    [
        (lambda lines: [*lines[:-2], lines[-1]], "covers 5 blocks, the export holds 4"),
        (lambda lines: lines[:-1], "seal line"),
        (lambda lines: [*lines[:-1], lines[-1], lines[-1]], "not an export block line"),
    ],
    ids=["cut-at-a-block-boundary", "no-seal", "seal-twice"],
)
def test_exports_cut_short_or_unsealed_fail(
    exported: tuple[Kit, list[str]], cut: Callable[[list[str]], list[str]], reason: str
) -> None:
    kit, lines = exported
    with pytest.raises((AssertionError, KeyError, ValueError)):
        verify_export(cut(lines))
    with pytest.raises(SharechainError, match=reason):
        sharechain_verify_export(cut(lines), kit.registry)


def test_blocks_appended_and_sealed_by_one_member_fail(exported: tuple[Kit, list[str]]) -> None:
    kit, lines = exported
    kit.add([kit.record("hospital-a", b"appended").raw])  # a block on hospital-a's copy only
    hashes = block_hashes(kit.store)
    cp = checkpoint_of(hashes, origin_for(hashes[0]))
    alone = signed_checkpoint(cp, [cosign(cp, "hospital-a", kit.keys["hospital-a"].signing)])
    extended = [json.dumps(r) for r in export_records(kit.store, kit.registry, seal=lambda s: {})]
    seal = dict(json.loads(lines[-1]), checkpoint=alone)
    forged = [*extended[:-1], json.dumps(seal)]
    with pytest.raises(AssertionError, match="1 cosigners, quorum 2"):
        verify_export(forged)
    with pytest.raises(CheckpointError, match="quorum is 2"):
        sharechain_verify_export(forged, kit.registry)
    # The genuine seal no longer fits the longer file.
    with pytest.raises(AssertionError, match="seal"):
        verify_export([*extended[:-1], lines[-1]])


def test_consistently_rewritten_header_breaks_the_signature(
    exported: tuple[Kit, list[str]],
) -> None:
    _, lines = exported
    rec = json.loads(lines[3])
    rec["header"]["timestamp"] += 1
    header = {
        k: bytes.fromhex(v)
        if k in ("prev_hash", "tx_root", "results_root", "state_delta_hash")
        else v
        for k, v in rec["header"].items()
    }
    rec["header_cbor"] = cbor2.dumps(header, canonical=True).hex()
    rec["hash"] = _sha(bytes.fromhex(rec["header_cbor"])).hex()
    with pytest.raises(InvalidSignature):
        verify_export([*lines[:3], json.dumps(rec), *lines[4:]])
