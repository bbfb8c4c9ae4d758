"""World-state views: values shared within a block, carried to the next block.

Values read are decoded once per block and shared, and the ledger carries
what a block read and wrote to the next block (`RecentValues`). Both must be
invisible: the same results and state roots as reading the store every time,
also when another writer advanced the store in between.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from ledger_kit import Kit

from sharechain.codec import encode
from sharechain.contracts import notary
from sharechain.ledger import state
from sharechain.ledger.blocks import decode_block
from sharechain.ledger.chain import Ledger
from sharechain.ledger.contract import BlockContext, ContractRegistry, State
from sharechain.ledger.identities import org_from_value
from sharechain.ledger.state import RecentValues, derived
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import SignedTransaction


def _record(ledger: Ledger, content: bytes) -> dict[str, Any]:
    value = state.StateReader(ledger.store).get(notary.record_key(hashlib.sha256(content).digest()))
    assert value is not None
    return dict(value)


def test_a_second_writer_is_never_shadowed_by_carried_values(kit: Kit, tmp_path: Path) -> None:
    rec = kit.record("hospital-a", b"shared doc")
    kit.add([rec.raw])  # this ledger now carries the record for the next block
    # Another process, its own store on the same file, commits the next block.
    other = Ledger(Store(kit.path), kit.registry)
    endorse_b = kit.sign("hospital-b", notary.ENDORSE, {"record": rec.id})
    block, ex = other.build_block(
        [endorse_b.raw],
        orderer="hospital-b",
        key=kit.keys["hospital-b"].signing,
        timestamp=kit.ledger.head.timestamp + 1 if kit.ledger.head else 0,
    )
    other.commit(block, ex)
    other.store.close()
    # Our ledger's next block must see hospital-b's endorsement, not its old copy.
    block = kit.add([kit.sign("regulator", notary.ENDORSE, {"record": rec.id}).raw])
    assert [r.code for r in block.results] == ["valid"]
    assert [e["org"] for e in _record(kit.ledger, b"shared doc")["endorsements"]] == [
        "hospital-b",
        "regulator",
    ]
    # And a peer replaying from genesis agrees on every state root.
    peer = kit.fresh_ledger(tmp_path / "peer.db")
    for height in range(1, kit.ledger.height + 1):
        raw = kit.store.block_bytes(height)
        assert raw is not None
        peer.commit(decode_block(raw))
    assert peer.head == kit.ledger.head


def test_values_carried_across_blocks_give_the_same_chain(kit: Kit, tmp_path: Path) -> None:
    # Record, then endorse in each following block: every block reads what the
    # previous one wrote. A peer validating them carries values the same way.
    peer = kit.fresh_ledger(tmp_path / "peer.db")
    rec = kit.record("hospital-a", b"doc")
    blocks = [kit.add([rec.raw])]
    for org in ("hospital-b", "regulator"):
        blocks.append(kit.add([kit.sign(org, notary.ENDORSE, {"record": rec.id}).raw]))
    blocks.append(kit.add([kit.sign("hospital-b", notary.ENDORSE, {"record": rec.id}).raw]))
    for block in blocks:
        peer.commit(block)
    assert [r.code for r in blocks[-1].results] == ["duplicate"]
    assert peer.head == kit.ledger.head


def test_recent_values_are_for_the_next_height_only() -> None:
    recent = RecentValues(limit=3)
    assert recent.at(-1) is None
    recent.advance(0, {"a": 1, "b": None})
    assert recent.at(0) == {"a": 1, "b": None}
    assert recent.at(1) is None
    recent.advance(1, {"c": 3, "a": 2})
    assert recent.at(1) == {"b": None, "c": 3, "a": 2}
    recent.advance(2, {"d": 4})  # over the limit: the first inserted key goes
    assert recent.at(2) == {"b": None, "c": 3, "d": 4}
    recent.advance(5, {"e": 5})  # a gap: nothing older is kept
    assert recent.at(5) == {"e": 5}
    recent.clear()
    assert recent.at(5) is None


def _mutating_registry() -> ContractRegistry:
    def bump(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
        value = state.get("counter/x")
        if value is None:
            state.put("counter/x", {"n": [0]})
        else:
            value["n"].append(1)  # in place: forbidden
            state.put("counter/x", dict(value))

    return ContractRegistry({"test.bump": bump})


def test_a_handler_changing_a_read_value_in_place_fails_the_block(tmp_path: Path) -> None:
    kit = Kit(tmp_path / "ledger.db", _mutating_registry())
    kit.add([kit.sign("hospital-a", "test.bump", {}).raw])
    kit.ledger._recent.clear()  # read it back from the store, as a restarted peer would
    with pytest.raises(AssertionError, match="counter/x"):
        kit.add([kit.sign("hospital-a", "test.bump", {}).raw])
    kit.store.close()


def test_derived_parses_once_per_value_object() -> None:
    calls: list[Any] = []

    def parse(value: dict[str, Any]) -> int:
        calls.append(value)
        return len(value)

    a, b = {"x": 1}, {"x": 1}
    assert derived(a, parse) == derived(a, parse) == 1
    assert derived(b, parse) == 1  # an equal but distinct object is parsed again
    assert calls == [a, b]


def test_derived_organisation_is_the_parsed_record(kit: Kit) -> None:
    value = state.StateReader(kit.store).get("org/hospital-a")
    assert derived(value, org_from_value) == org_from_value(value)


class _Rows:
    """A store holding a few encoded rows (what the overlays read through)."""

    def __init__(self, rows: dict[str, Any]) -> None:
        self.rows = {k: encode(v) for k, v in rows.items()}

    def get(self, key: str) -> bytes | None:
        return self.rows.get(key)

    def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        return sorted((k, v) for k, v in self.rows.items() if k.startswith(prefix))


def test_deletes_hide_the_key_in_every_view_and_commit_as_none() -> None:
    block = state.BlockState(_Rows({"a/1": 1, "a/2": 2, "b/1": 3}))
    tx = state.TxState(block)
    tx.delete("a/1")
    tx.put("a/3", 4)
    assert tx.get("a/1") is None and block.get("a/1") == 1  # not committed yet
    assert list(tx.scan("a/")) == [("a/2", 2), ("a/3", 4)]
    with pytest.raises(ValueError):
        tx.put("a/2", None)
    assert tx.commit() == ["a/1", "a/3"]
    assert block.get("a/1") is None
    assert list(block.scan("a/")) == [("a/2", 2), ("a/3", 4)]
    again = state.TxState(block)
    again.put("a/1", 5)  # written again after the delete
    assert again.get("a/1") == 5 and block.get("a/1") is None
    assert block.encoded_writes() == {"a/1": None, "a/3": b"\x04"}
    assert block.after() == {"a/1": None, "a/3": 4}
