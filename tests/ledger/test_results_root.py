"""`results_root`: the header's Merkle root over the validation results, so a code is provable.

One leaf per transaction, `CBOR([tx_id, code, reason])` (docs/format.md
sections 5 and 6). The orderer computes it, a peer refuses a block whose root
does not match (tests/ledger/test_chain.py), and proof bundles carry each
transaction's result with its audit path: a bundle proves a valid and a
refused transaction's code, and a code changed in the bundle is refused.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_kit import Kit

from sharechain.contracts import default_registry
from sharechain.contracts.bundle_objects import check_object
from sharechain.contracts.membership import PROPOSE
from sharechain.crypto.merkle import EMPTY_ROOT, merkle_root
from sharechain.errors import EncodingError
from sharechain.ledger.blocks import (
    VALID,
    TxResult,
    decode_header,
    result_leaf,
    results_root,
)
from sharechain.ledger.bundles import BundleError, build_bundle, evidence_doc, verify_bundle
from sharechain.ledger.checkpoints import (
    block_hashes,
    checkpoint_of,
    cosign,
    origin_for,
    signed_checkpoint,
)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.sampled_from(["valid", "denied", ""]), st.text())
def test_leaf_is_the_canonical_cbor_of_id_code_reason(tx_id: bytes, code: str, reason: str) -> None:
    expected = cbor2.dumps([tx_id, code, reason], canonical=True)
    assert result_leaf(tx_id, TxResult(code, reason)) == expected
    assert result_leaf(tx_id, VALID) == cbor2.dumps([tx_id, "valid", ""], canonical=True)


def test_root_is_the_merkle_root_of_the_leaves() -> None:
    ids = [hashlib.sha256(bytes([i])).digest() for i in range(5)]
    results = [VALID, TxResult("denied", "no"), VALID, TxResult("replay", "seen"), VALID]
    leaves = [
        cbor2.dumps([i, r.code, r.reason], canonical=True)
        for i, r in zip(ids, results, strict=True)
    ]
    assert results_root(ids, results) == merkle_root(leaves)
    assert results_root([], []) == EMPTY_ROOT
    with pytest.raises(EncodingError, match="one \\[code, reason\\] per transaction"):
        results_root(ids, results[:-1])


def test_a_header_without_results_root_is_refused_by_name(tmp_path: Path) -> None:
    kit = Kit(tmp_path / "l.db")
    old = kit.genesis.header.to_map()
    del old["results_root"]
    with pytest.raises(EncodingError, match="missing results_root"):
        decode_header(old)
    kit.store.close()


# -- proof bundles ---------------------------------------------------------------------


class _Chain(Kit):
    def __init__(self, kit: Kit, **ids: bytes) -> None:
        self.__dict__.update(kit.__dict__)
        self.ids = ids


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[_Chain]:
    """Block 1: a record and the same file recorded again (refused: duplicate);
    block 2: a proposal by a non-admin (refused: denied); block 3: one more record."""
    kit = Kit(tmp_path / "ledger.db", default_registry())
    first = kit.record("hospital-a", b"diploma")
    again = kit.record("hospital-b", b"diploma")
    kit.add([first.raw, again.raw])
    denied = kit.sign("hospital-b", PROPOSE, {"action": "remove", "org": "regulator"})
    kit.add([denied.raw])
    kit.add([kit.record("regulator", b"last").raw])
    yield _Chain(kit, valid=first.id, duplicate=again.id, denied=denied.id)
    kit.store.close()


def _note(kit: Kit) -> str:
    hashes = block_hashes(kit.store)
    cp = checkpoint_of(hashes, origin_for(hashes[0]))
    keys = [
        ("hospital-a", kit.keys["hospital-a"].signing),
        ("regulator", kit.keys["regulator"].signing),
    ]
    return signed_checkpoint(cp, [cosign(cp, o, k) for o, k in keys])


def _bundle(chain: _Chain, name: str) -> dict[str, Any]:
    return build_bundle(chain.store, chain.ids[name], _note(chain))


def test_a_bundle_proves_a_valid_transactions_code(chain: _Chain) -> None:
    doc = _bundle(chain, "valid")
    subject = doc["txs"][0]
    assert (subject["code"], subject["reason"], subject["size"]) == ("valid", "", 2)
    assert len(subject["result_path"]) == 1
    proved = verify_bundle(doc)
    assert (proved.subject.code, proved.subject.reason) == ("valid", "")
    assert "code valid" in check_object(proved, None)


def test_a_bundle_proves_a_refused_transactions_code(chain: _Chain) -> None:
    proved = verify_bundle(_bundle(chain, "duplicate"))
    assert proved.subject.code == "duplicate"
    assert "already recorded by hospital-a" in proved.subject.reason
    assert "code duplicate" in check_object(proved, None)
    # A refused record notarised nothing: the object claim does not follow.
    about = {"kind": "notarised-file", "digest": hashlib.sha256(b"diploma").hexdigest()}
    with pytest.raises(BundleError, match=r"refused by the chain \(duplicate\)"):
        check_object(proved, about)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"code": "valid", "reason": ""}, "code 'valid' is not its result in block 1"),
        ({"reason": "no duplicate"}, "code 'duplicate' is not its result in block 1"),
        ({"code": "denied"}, "code 'denied' is not its result in block 1"),
        ({"code": ""}, "has no validation result"),
        ({"reason": None}, "has no validation result"),
        ({"result_path": []}, "audit path is shorter"),
        ({"result_path": ["A" * 43 + "="]}, "is not its result in block 1"),
        ({"result_path": "x"}, "result_path must be a list"),
    ],
    ids=[
        "marked-valid",
        "other-reason",
        "other-code",
        "empty-code",
        "no-reason",
        "short-path",
        "wrong-path",
        "path-not-list",
    ],
)
def test_a_forged_result_is_refused(chain: _Chain, change: dict[str, Any], reason: str) -> None:
    doc = _bundle(chain, "duplicate")
    forged = copy.deepcopy(doc)
    for k, v in change.items():
        if v is None:
            del forged["txs"][0][k]
        else:
            forged["txs"][0][k] = v
    with pytest.raises(BundleError, match=reason):
        verify_bundle(forged)


def test_a_result_moved_to_another_transaction_is_refused(chain: _Chain) -> None:
    # The valid record's result, path and all, on the duplicate: the leaf binds the id.
    doc = _bundle(chain, "duplicate")
    other = _bundle(chain, "valid")["txs"][0]
    forged = copy.deepcopy(doc)
    forged["txs"][0]["code"], forged["txs"][0]["result_path"] = "valid", other["result_path"]
    forged["txs"][0]["reason"] = ""
    with pytest.raises(BundleError, match="code 'valid' is not its result"):
        verify_bundle(forged)


def test_refused_membership_transactions_are_no_evidence(chain: _Chain) -> None:
    doc = _bundle(chain, "valid")
    assert len(doc["txs"]) == 2  # the refused proposal is not evidence
    extra = evidence_doc(chain.store, [chain.ids["denied"]], block_hashes(chain.store))
    forged = copy.deepcopy(doc)
    forged["blocks"] += extra["blocks"]
    forged["txs"] += extra["txs"]
    with pytest.raises(
        BundleError, match=r"org.propose at height 2: the chain refused it \(denied\)"
    ):
        verify_bundle(forged)


def test_the_header_in_the_bundle_carries_results_root(chain: _Chain) -> None:
    doc = _bundle(chain, "valid")
    header = cbor2.loads(base64.b64decode(doc["blocks"][1]["header"]))
    block = chain.ledger.store.block_meta(1)
    assert block is not None
    assert len(header) == 7 and len(header["results_root"]) == 32
    assert hashlib.sha256(base64.b64decode(doc["blocks"][1]["header"])).digest() == block.hash
