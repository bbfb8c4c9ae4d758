"""Transaction inclusion proofs from the store, checked by an independent RFC 9162 verifier."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import cbor2
import pytest
from ledger_kit import Kit

from sharechain.errors import IntegrityError, NotFoundError
from sharechain.ledger.proofs import prove_tx, verify_tx_proof


def _root(leaf: bytes, index: int, size: int, path_hex: list[str]) -> bytes:
    """RFC 9162 section 2.1.3.2, written from the text; raises AssertionError on failure."""
    fn, sn = index, size - 1
    assert 0 <= fn <= sn
    r = hashlib.sha256(b"\x00" + leaf).digest()
    for p_hex in path_hex:
        p = bytes.fromhex(p_hex)
        assert sn != 0
        if fn % 2 == 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    assert sn == 0
    return r


def rfc9162_verify(proof: dict[str, Any]) -> None:
    """The inclusion of the tx id under `tx_root` and of `CBOR([tx_id, code, reason])`
    under `results_root`, and the header hash, from docs/format.md alone."""
    index, size = proof["leaf_index"], proof["tree_size"]
    tx_id = bytes.fromhex(proof["tx_id"])
    r = _root(tx_id, index, size, proof["audit_path"])
    assert r.hex() == proof["tx_root"] == proof["header"]["tx_root"]
    leaf = cbor2.dumps([tx_id, proof["code"], proof["reason"]], canonical=True)
    assert _root(leaf, index, size, proof["result_path"]).hex() == proof["header"]["results_root"]
    h = proof["header"]
    header = {
        "height": h["height"],
        "prev_hash": bytes.fromhex(h["prev_hash"]),
        "tx_root": bytes.fromhex(h["tx_root"]),
        "results_root": bytes.fromhex(h["results_root"]),
        "state_delta_hash": bytes.fromhex(h["state_delta_hash"]),
        "timestamp": h["timestamp"],
        "orderer": h["orderer"],
    }
    assert hashlib.sha256(cbor2.dumps(header, canonical=True)).hexdigest() == proof["header_hash"]


@pytest.fixture
def seven(kit: Kit) -> tuple[Kit, list[bytes]]:
    txs = [kit.record("hospital-a", b"doc%d" % i) for i in range(7)]
    kit.add([t.raw for t in txs])
    return kit, [t.id for t in txs]


def test_every_transaction_proves(seven: tuple[Kit, list[bytes]]) -> None:
    kit, ids = seven
    meta = kit.store.block_meta(1)
    assert meta is not None
    for i, tx_id in enumerate(ids):
        proof = prove_tx(kit.store, tx_id)
        assert (proof.height, proof.leaf_index, proof.tree_size, proof.code) == (1, i, 7, "valid")
        verify_tx_proof(proof, meta.hash)
        as_json = json.loads(json.dumps(proof.to_json()))
        assert {
            "tx_id",
            "height",
            "leaf_index",
            "tree_size",
            "audit_path",
            "tx_root",
            "code",
            "reason",
            "result_path",
            "header",
            "header_hash",
        } <= set(as_json)
        assert as_json["header_hash"] == meta.hash.hex()
        rfc9162_verify(as_json)


def test_genesis_transaction_proves(kit: Kit) -> None:
    genesis_tx = kit.genesis.tx_ids[0]
    proof = prove_tx(kit.store, genesis_tx)
    assert proof.height == 0 and proof.tree_size == 1 and proof.audit_path == ()
    verify_tx_proof(proof, kit.genesis.hash())
    rfc9162_verify(proof.to_json())


def test_altered_proofs_fail(seven: tuple[Kit, list[bytes]]) -> None:
    kit, ids = seven
    proof = prove_tx(kit.store, ids[3])
    meta = kit.store.block_meta(1)
    assert meta is not None
    path = list(proof.audit_path)
    path[1] = bytes([path[1][0] ^ 1]) + path[1][1:]
    altered = [
        dataclasses.replace(proof, tx_id=ids[4]),
        dataclasses.replace(proof, leaf_index=2),
        dataclasses.replace(proof, audit_path=tuple(path)),
        dataclasses.replace(proof, audit_path=proof.audit_path[:-1]),
        dataclasses.replace(proof, header=dataclasses.replace(proof.header, tx_root=bytes(32))),
        dataclasses.replace(proof, code="denied"),
        dataclasses.replace(proof, reason="forged"),
        dataclasses.replace(proof, result_path=proof.audit_path),
        dataclasses.replace(
            proof, header=dataclasses.replace(proof.header, results_root=bytes(32))
        ),
    ]
    for bad in altered:
        with pytest.raises(IntegrityError):
            verify_tx_proof(bad, meta.hash)
        with pytest.raises(AssertionError):
            rfc9162_verify(bad.to_json())
    # A consistent proof against a header that is not the trusted one.
    other = dataclasses.replace(proof, header=dataclasses.replace(proof.header, timestamp=1))
    verify_tx_proof(other)  # self-consistent...
    with pytest.raises(IntegrityError, match="trusted"):
        verify_tx_proof(other, meta.hash)  # ...but not this chain's block


def test_a_refused_transaction_proves_its_code(kit: Kit) -> None:
    bad = kit.record("hospital-a", b"doc", note="x" * 5000)
    good = kit.record("hospital-a", b"doc2")
    kit.add([good.raw, bad.raw])
    proof = prove_tx(kit.store, bad.id)
    assert proof.code == "bad_payload" and proof.reason
    verify_tx_proof(proof)
    rfc9162_verify(proof.to_json())
    with pytest.raises(IntegrityError, match="validation code 'valid' is not the block's result"):
        verify_tx_proof(dataclasses.replace(proof, code="valid", reason=""))


def test_unknown_transaction(kit: Kit) -> None:
    with pytest.raises(NotFoundError, match="not on this chain"):
        prove_tx(kit.store, b"\x42" * 32)
