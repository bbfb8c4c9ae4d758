"""Proof bundles: a transaction, its block, the key evidence and a quorum checkpoint
in one JSON document, verified with nothing else; every tampering refused."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ledger_kit import Kit

from sharechain.contracts import default_registry
from sharechain.contracts.membership import PROPOSE, ROTATE, ROTATE_DOMAIN, rotation_message
from sharechain.crypto.signing import SigningKey
from sharechain.errors import NotFoundError
from sharechain.ledger import bundles
from sharechain.ledger.bundles import BundleError, build_bundle, load_bundle, verify_bundle
from sharechain.ledger.checkpoints import (
    block_hashes,
    checkpoint_of,
    cosign,
    origin_for,
    signed_checkpoint,
)
from sharechain.ledger.transactions import sign_transaction

NEW_B = SigningKey.from_seed(bytes([7]) * 32)


class _Kit(Kit):
    """The kit of the fixture, with the ids of its interesting transactions."""

    def __init__(self, kit: Kit, fresh: bytes, stale: bytes, rot: bytes) -> None:
        self.__dict__.update(kit.__dict__)
        self.fresh_tx, self.stale_tx, self.rot_tx = fresh, stale, rot


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[_Kit]:
    """Genesis; records by hospital-a and hospital-b; hospital-b rotates its key; a record signed
    with hospital-b's new key; one with its old key (refused as stale_key); one more."""
    kit = Kit(tmp_path / "ledger.db", default_registry())
    before = kit.record("hospital-b", b"before rotation")
    kit.add([kit.record("hospital-a", b"first").raw, before.raw])
    enc = bytes(32)
    proof = NEW_B.sign(ROTATE_DOMAIN, rotation_message("hospital-b", NEW_B.public_key, enc))
    rot = kit.sign(
        "hospital-b", ROTATE, {"sign_key": NEW_B.public_key, "enc_key": enc, "proof": proof}
    )
    kit.add([rot.raw])
    fresh = sign_transaction(
        NEW_B,
        "notary.record",
        "hospital-b",
        {"digest": bytes(32), "note": ""},
        now=lambda: 1.0,
        rng=lambda n: bytes(n),
    )
    stale = kit.record("hospital-b", b"old key")
    kit.add([fresh.raw, stale.raw])
    kit.add([kit.record("regulator", b"last").raw])
    yield _Kit(kit, fresh.id, stale.id, rot.id)
    kit.store.close()


def _checkpoint(kit: Kit, *signers: tuple[str, SigningKey]) -> str:
    hashes = block_hashes(kit.store)
    cp = checkpoint_of(hashes, origin_for(hashes[0]))
    return signed_checkpoint(cp, [cosign(cp, o, k) for o, k in signers])


def _quorum(kit: Kit) -> str:
    a, reg = kit.keys["hospital-a"].signing, kit.keys["regulator"].signing
    return _checkpoint(kit, ("hospital-a", a), ("regulator", reg))


def _bundle(kit: Kit, tx: bytes) -> dict[str, Any]:
    return build_bundle(kit.store, tx, _quorum(kit))


def test_a_rotated_member_cosigns_with_its_new_key(chain: _Kit) -> None:
    note = _checkpoint(
        chain, ("hospital-a", chain.keys["hospital-a"].signing), ("hospital-b", NEW_B)
    )
    verify_bundle(build_bundle(chain.store, chain.fresh_tx, note))


def test_bundle_verifies_offline_and_is_small_and_fast(chain: _Kit) -> None:
    doc = _bundle(chain, chain.fresh_tx)
    data = json.dumps(doc, separators=(",", ":")).encode()
    verify_bundle(load_bundle(data))
    assert [t["height"] for t in doc["txs"]] == [3, 0, 2]  # subject, genesis, rotation
    print(f"bundle with one rotation: {len(data)} bytes")
    assert len(data) < 4096, len(data)
    best = min(_timed(doc) for _ in range(20))
    print(f"verified in {best * 1000:.3f} ms (best of 20)")
    assert best < 0.005, best


def _timed(doc: dict[str, Any]) -> float:
    t = time.perf_counter()
    verify_bundle(doc)
    return time.perf_counter() - t


def test_founder_transaction_and_genesis_itself(chain: _Kit) -> None:
    first = chain.store.history("notary/" + hashlib.sha256(b"first").hexdigest())
    verify_bundle(_bundle(chain, first[0].tx_id))
    verify_bundle(_bundle(chain, chain.genesis.tx_ids[0]))
    verify_bundle(_bundle(chain, chain.rot_tx))


def test_old_key_is_good_for_transactions_before_the_rotation(chain: _Kit) -> None:
    digest = hashlib.sha256(b"before rotation").hexdigest()
    (entry,) = chain.store.history(f"notary/{digest}")
    doc = _bundle(chain, entry.tx_id)
    verify_bundle(doc)
    assert [t["height"] for t in doc["txs"]] == [1, 0, 2]


def test_key_rotated_out_before_the_height_is_refused(chain: _Kit) -> None:
    doc = _bundle(chain, chain.stale_tx)
    with pytest.raises(BundleError, match=r"rotated out at height 2, before .* height 3"):
        verify_bundle(doc)


def _refused(doc: dict[str, Any], reason: str) -> None:
    with pytest.raises(BundleError, match=reason):
        verify_bundle(doc)


def test_truncated_bundles_are_refused(chain: _Kit) -> None:
    doc = _bundle(chain, chain.fresh_tx)
    data = json.dumps(doc).encode()
    with pytest.raises(BundleError, match="not JSON"):
        load_bundle(data[: len(data) // 2])
    without_rotation = copy.deepcopy(doc)
    del without_rotation["txs"][2]
    _refused(without_rotation, "not signed by hospital-b's key of the time")
    only_subject = copy.deepcopy(doc)
    del only_subject["txs"][1:]
    _refused(only_subject, "lacks the genesis")
    no_genesis_block = copy.deepcopy(doc)
    del no_genesis_block["blocks"][0]
    _refused(no_genesis_block, "header is not in the bundle")
    short_path = copy.deepcopy(doc)
    short_path["txs"][0]["path"] = short_path["txs"][0]["path"][:-1]
    _refused(short_path, "is not in block 3")
    no_cp = copy.deepcopy(doc)
    del no_cp["checkpoint"]
    _refused(no_cp, "no checkpoint")


def test_reordered_bundles_are_refused(chain: _Kit) -> None:
    doc = _bundle(chain, chain.fresh_tx)
    swapped = copy.deepcopy(doc)
    swapped["txs"][0], swapped["txs"][1] = swapped["txs"][1], swapped["txs"][0]
    _refused(swapped, "must be the genesis transaction")
    twice = copy.deepcopy(doc)
    twice["txs"].append(twice["txs"][2])
    _refused(twice, "chain order")
    moved = copy.deepcopy(doc)
    moved["txs"][0]["index"] = 1
    _refused(moved, "is not in block 3")
    dup = copy.deepcopy(doc)
    dup["blocks"].append(dup["blocks"][0])
    _refused(dup, "listed twice")


def test_resigned_bundles_are_refused(chain: _Kit) -> None:
    doc = _bundle(chain, chain.fresh_tx)
    outsider = SigningKey.from_seed(bytes([9]) * 32)
    resigned = dict(doc, checkpoint=_checkpoint(chain, ("hospital-a", outsider), ("x", outsider)))
    _refused(resigned, "unknown key hospital-a/")
    lone = dict(doc, checkpoint=_checkpoint(chain, ("regulator", chain.keys["regulator"].signing)))
    _refused(lone, "1 cosigners, the quorum is 2")
    # hospital-b's old key is no longer a member's key at the checkpoint.
    old_b = dict(
        doc,
        checkpoint=_checkpoint(
            chain,
            ("hospital-a", chain.keys["hospital-a"].signing),
            ("hospital-b", chain.keys["hospital-b"].signing),
        ),
    )
    _refused(old_b, "unknown key hospital-b/")
    forged = copy.deepcopy(doc)
    env = bytearray(base64.b64decode(forged["txs"][0]["envelope"]))
    env[-1] ^= 1
    forged["txs"][0]["envelope"] = base64.b64encode(env).decode()
    _refused(forged, "is not in block 3")


def test_tampered_headers_and_origin_are_refused(chain: _Kit) -> None:
    doc = _bundle(chain, chain.fresh_tx)
    bad = copy.deepcopy(doc)
    bad["blocks"][1]["path"][0] = "A" * 43 + "="
    _refused(bad, "not in the checkpoint's tree")
    other = copy.deepcopy(doc)
    other["v"] = 2
    _refused(other, "not a proof bundle")
    hexless = copy.deepcopy(doc)
    hexless["txs"][0]["envelope"] = "zz!"
    _refused(hexless, "must be base64")


def test_building_needs_a_checkpoint_covering_the_block(chain: _Kit) -> None:
    hashes = block_hashes(chain.store, 2)
    cp = checkpoint_of(hashes, origin_for(hashes[0]))
    note = signed_checkpoint(cp, [cosign(cp, "hospital-a", chain.keys["hospital-a"].signing)])
    with pytest.raises(NotFoundError, match="covers 2 blocks"):
        build_bundle(chain.store, chain.fresh_tx, note)
    with pytest.raises(NotFoundError):
        build_bundle(chain.store, bytes(32), note)
    assert bundles.BUNDLE_TYPE in json.dumps(_bundle(chain, chain.rot_tx))


def _admit_bank_c(chain: _Kit, key: SigningKey) -> None:
    admit = chain.sign(
        "hospital-a",
        PROPOSE,
        {
            "action": "admit",
            "org": "bank-c",
            "roles": ["member"],
            "sign_key": key.public_key,
            "enc_key": bytes(32),
        },
    )
    chain.add([admit.raw])  # hospital-a is the only admin: its proposal passes at once
    assert chain.store.get("org/bank-c") is not None


def test_bundles_follow_admission_and_removal_by_vote(chain: _Kit) -> None:
    newcomer = SigningKey.from_seed(bytes([5]) * 32)
    _admit_bank_c(chain, newcomer)
    by_c = sign_transaction(
        newcomer, "notary.record", "bank-c", {"digest": bytes(range(32)), "note": ""}
    )
    chain.add([by_c.raw])
    a, reg = chain.keys["hospital-a"].signing, chain.keys["regulator"].signing
    with_c = _checkpoint(chain, ("hospital-a", a), ("bank-c", newcomer), ("regulator", reg))
    doc = build_bundle(chain.store, by_c.id, with_c)
    assert [t["height"] for t in doc["txs"]] == [6, 0, 2, 5]  # subject, genesis, rot, admit
    verify_bundle(doc)
    without = copy.deepcopy(doc)
    del without["txs"][3]
    _refused(without, "sender bank-c is not a member")
    remove = chain.sign("hospital-a", PROPOSE, {"action": "remove", "org": "bank-c"})
    chain.add([remove.raw])
    late = sign_transaction(
        newcomer, "notary.record", "bank-c", {"digest": bytes(32), "note": "late"}
    )
    chain.add([late.raw])
    assert chain.store.tx_location(late.id).code == "sender_removed"  # type: ignore[union-attr]
    after = _checkpoint(chain, ("hospital-a", a), ("regulator", reg))
    verify_bundle(build_bundle(chain.store, by_c.id, after))  # signed while a member
    _refused(build_bundle(chain.store, late.id, after), "removed from the consortium at height 7")
    by_removed = _checkpoint(chain, ("hospital-a", a), ("bank-c", newcomer))
    _refused(
        build_bundle(chain.store, by_c.id, by_removed),
        "cosigned by bank-c, removed from the consortium by vote at height 7",
    )


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))
    yield path


def test_any_field_replaced_by_junk_is_refused_with_a_reason(chain: _Kit) -> None:
    doc = _bundle(chain, chain.fresh_tx)
    tried = 0
    for path in _leaves(doc):
        for junk in (None, -1, "x", [], {}, 2**70):
            bad = copy.deepcopy(doc)
            target = bad
            for p in path[:-1]:
                target = target[p]
            if not path or target[path[-1]] == junk:
                continue
            target[path[-1]] = junk
            tried += 1
            with pytest.raises(BundleError):
                verify_bundle(bad)
    assert tried > 100
