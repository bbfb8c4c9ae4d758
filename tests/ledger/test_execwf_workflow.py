"""The regulated workflow's execution after the per-transaction CPU cuts (issue 19).

A later transaction of a block must see what an earlier one of the same block
wrote (the request it approves, the grant it uses), through every layer of
`TxState` over `BlockState` over the values kept from the last block; and a
peer re-executing the block must reproduce the orderer's results and
`state_delta_hash` byte for byte (`Kit.fresh_ledger(...).commit` checks both).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import cbor2
import pytest
from ledger_kit import Kit

from sharechain.contracts import _fields as f
from sharechain.contracts import access, datasets, default_registry, grants
from sharechain.contracts.ids import KINDS, derive_id
from sharechain.ledger.blocks import Block, TxResult, delta_hash
from sharechain.ledger.contract import Reject
from sharechain.ledger.state import BlockState, TxState, derived
from sharechain.ledger.store import Store

PLAIN, CIPHER = hashlib.sha256(b"plain").digest(), hashlib.sha256(b"cipher").digest()


@pytest.fixture
def wf(tmp_path: Path) -> Iterator[Kit]:
    k = Kit(tmp_path / "orderer.db", default_registry())
    yield k
    k.store.close()


def _dataset(kit: Kit) -> tuple[str, Block]:
    stx = kit.sign(
        "hospital-a",
        datasets.REGISTER,
        {
            "title": "cohort",
            "tags": ["t"],
            "plaintext_digest": PLAIN,
            "ciphertext_digest": CIPHER,
            "size": 1 << 20,
        },
    )
    block = kit.add([stx.raw])
    assert block.results[0].code == "valid", block.results[0]
    return derive_id("dataset", stx.id), block


def _asking(ds: str) -> dict[str, object]:
    return {"dataset": ds, "purpose": "care", "duration": 10**7}


def test_a_whole_workflow_in_one_block_sees_its_own_writes(wf: Kit, tmp_path: Path) -> None:
    ds, registered = _dataset(wf)
    req = wf.sign("hospital-b", access.REQUEST, _asking(ds))
    rid = derive_id("request", req.id)
    owner = wf.sign("hospital-a", access.APPROVE, {"request": rid})
    again = wf.sign("hospital-a", access.APPROVE, {"request": rid})
    supervisor = wf.sign("regulator", access.APPROVE, {"request": rid})
    gid = derive_id("grant", supervisor.id)
    late = wf.sign("regulator", access.APPROVE, {"request": rid})
    early_read = wf.sign("hospital-b", grants.READ, {"grant": gid, "digest": PLAIN})
    release = {"grant": gid, "to": "hospital-b", "epoch": 1, "wrapped_key_digest": CIPHER}
    key = wf.sign("hospital-a", grants.KEY_RELEASE, release)
    read = wf.sign("hospital-b", grants.READ, {"grant": gid, "digest": CIPHER})
    txs = [req, owner, again, supervisor, late, early_read, key, read]
    block = wf.build([t.raw for t in txs])

    assert [(r.code, r.reason) for r in block.results] == [
        ("valid", ""),
        ("valid", ""),
        ("duplicate", f"hospital-a has already approved request {rid}"),
        ("valid", ""),
        ("bad_state", f"request {rid} is already granted"),
        ("no_key", f"no key was released under grant {gid} yet"),
        ("valid", ""),
        ("valid", ""),
    ]
    # A second peer re-executes the block from the previous block's state.
    peer = wf.fresh_ledger(tmp_path / "peer.db")
    peer.commit(registered)
    peer.commit(block)
    wf.ledger.commit(block)
    assert peer.store.head() == wf.ledger.store.head()
    request = cbor2.loads(peer.store.get(f"request/{rid}"))
    grant = cbor2.loads(peer.store.get(f"grant/{gid}"))
    assert (request["status"], request["grant"], request["inbox"]) == ("granted", gid, [])
    assert [a["org"] for a in request["approvals"]] == ["hospital-a", "regulator"]
    assert (grant["uses"], grant["reads"]) == (1, 1)
    assert peer.store.get(f"idx/inbox/hospital-a/{rid}") is None


def test_a_supervisor_cannot_approve_twice_in_one_block(wf: Kit) -> None:
    ds, _ = _dataset(wf)
    req = wf.sign("hospital-b", access.REQUEST, _asking(ds))
    rid = derive_id("request", req.id)
    first = wf.sign("regulator", access.APPROVE, {"request": rid})
    second = wf.sign("regulator", access.APPROVE, {"request": rid})
    block = wf.add([req.raw, first.raw, second.raw])
    assert [(r.code, r.reason) for r in block.results][2] == (
        "duplicate",
        f"regulator has already approved request {rid}",
    )


def test_requested_columns_are_still_checked(wf: Kit) -> None:
    ds, _ = _dataset(wf)
    bad = wf.sign(
        "hospital-b",
        access.REQUEST,
        {"dataset": ds, "purpose": "care", "duration": 10**7, "fields": ["age"]},
    )
    block = wf.add([bad.raw])
    assert (block.results[0].code, block.results[0].reason) == (
        "bad_payload",
        f"dataset {ds} has no column(s) age",
    )


@pytest.mark.parametrize(
    ("value", "expected"), [(None, ()), ([], ()), ((), ()), (["a", "b"], ("a", "b"))]
)
def test_texts_empty_and_absent(value: object, expected: tuple[str, ...]) -> None:
    payload = {} if value is None else {"fields": value}
    assert f.texts(payload, "fields") == expected


@pytest.mark.parametrize("value", ["", {}, [""], [1], "ab", b"", ["x"] * 257])
def test_texts_still_refuses(value: object) -> None:
    with pytest.raises(Reject) as err:
        f.texts({"fields": value}, "fields")
    assert err.value.reason == "fields must be a list of at most 256 non-empty texts"


def test_derive_id_is_its_formula() -> None:
    tx = hashlib.sha256(b"tx").digest()
    for kind in (*KINDS, "computation", "other"):
        for n in (0, 1, 12):
            want = hashlib.sha256(f"{kind}\x00{n}\x00".encode() + tx).hexdigest()
            assert derive_id(kind, tx, n) == want
            assert derive_id(kind, tx) == derive_id(kind, tx, 0)


@pytest.mark.parametrize("size", [0, 23, 24, 255, 256, 65535, 65536])
def test_delta_hash_value_heads(size: int) -> None:
    writes = {"a": b"\x07" * size, "b": None, "c" * 300: b"\x01"}
    results = [TxResult("valid", ""), TxResult("denied", "no")]
    expected = cbor2.dumps(
        {
            "results": [["valid", ""], ["denied", "no"]],
            "writes": [[k, writes[k]] for k in sorted(writes)],
        },
        canonical=True,
    )
    assert delta_hash(results, writes) == hashlib.sha256(expected).digest()
    assert delta_hash(results, dict(sorted(writes.items())), in_key_order=True) == (
        hashlib.sha256(expected).digest()
    )


def test_tx_state_reads_through_every_layer(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    try:
        block = BlockState(store, {"recent/k": {"v": 1}, "gone/k": None})
        first = TxState(block)
        assert first.get("recent/k") == {"v": 1}
        assert first.get("gone/k") is None
        assert first.get("absent/k") is None  # from the (empty) store
        first.put("new/k", {"v": 2})
        first.delete("recent/k")
        other = TxState(block)  # the first has not committed: its writes are its own
        assert other.get("new/k") is None
        assert other.get("recent/k") == {"v": 1}
        first.commit()
        later = TxState(block)
        assert later.get("new/k") == {"v": 2}
        assert later.get("recent/k") is None
        later.put("new/k", {"v": 3})
        assert later.get("new/k") == {"v": 3}
        assert block.get("new/k") == {"v": 2}
    finally:
        store.close()


def test_derived_keeps_each_parse_apart() -> None:
    value = {"roles": ["member"]}

    def first(v: object) -> str:
        return "first"

    def second(v: object) -> str:
        return "second"

    assert derived(value, first) == "first"
    assert derived(value, second) == "second"
    assert derived(value, first) == "first"
    twin = {"roles": ["member"]}  # equal, another object: parsed on its own
    assert derived(twin, len) == 1
    assert derived(value, len) == 1


def test_a_transaction_twice_in_a_block_or_again_later_is_a_replay(wf: Kit) -> None:
    ds, _ = _dataset(wf)
    req = wf.sign("hospital-b", access.REQUEST, _asking(ds))
    block = wf.add([req.raw, req.raw])
    assert [r.code for r in block.results] == ["valid", "replay"]
    again = wf.add([req.raw])
    assert (again.results[0].code, again.results[0].reason) == (
        "replay",
        f"transaction {req.id.hex()} is already on the chain",
    )
