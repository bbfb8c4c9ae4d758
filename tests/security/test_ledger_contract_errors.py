"""A transaction whose contract blows up is refused; the block, the builder and the node go on.

Attack: a transaction crafted to make a contract (or a native extension it
calls, such as the CEL evaluator) raise something unexpected: a
`BaseException` subclass like a Rust panic, or a plain bug's exception. If
that escaped the block builder, one transaction would stop the consortium's
ordering. Defence: the ledger records `contract_error` for that transaction
only; the node's loops restart after anything but KeyboardInterrupt/SystemExit.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from sharechain.contracts import default_registry, notary
from sharechain.crypto.keyfile import OrgKeys
from sharechain.ledger.blocks import decode_block
from sharechain.ledger.chain import Ledger
from sharechain.ledger.contract import BlockContext, ContractRegistry, State
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import SignedTransaction, sign_transaction
from sharechain.ledger.validation import CONTRACT_ERROR, VALID
from sharechain.node.service import Node, NodeConfig
from sharechain.sharing.embedded import Embedded
from sharechain.storage.datadir import OrgSpec, init_consortium

ORGS = (OrgSpec("hospital-a", ("member", "admin")), OrgSpec("regulator", ("supervisor",)))


class NativePanic(BaseException):
    """What a Rust extension's panic looks like from Python (pyo3 derives it from BaseException)."""


def _panics(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    state.put("test/half-written", 1)  # must not survive the failure
    kind = stx.tx.payload["kind"]
    if kind == "panic":
        raise NativePanic("evaluator panicked")
    if kind == "bug":
        raise RuntimeError("a bug")
    if kind == "interrupt":
        raise KeyboardInterrupt


def _registry() -> ContractRegistry:
    return default_registry().merged(ContractRegistry({"test.explode": _panics}))


def _tx(keys: OrgKeys, type_: str, payload: dict[str, object]) -> bytes:
    return sign_transaction(keys.signing, type_, keys.org, payload).raw


def _digest() -> bytes:
    return hashlib.sha256(os.urandom(16)).digest()


def test_a_contract_panic_refuses_that_transaction_only(tmp_path: Path) -> None:
    init_consortium(tmp_path / "c", ORGS, consortium="test")
    with Embedded(tmp_path / "c") as emb:
        keys = emb.keys("hospital-a")
        ledger = Ledger(emb.store, _registry())
        raws = [
            _tx(keys, "test.explode", {"kind": "panic"}),
            _tx(keys, "test.explode", {"kind": "bug"}),
            _tx(keys, notary.RECORD, {"digest": _digest()}),
        ]
        block, ex = ledger.build_block(raws, orderer="hospital-a", key=keys.signing, timestamp=1)
        assert [r.code for r in block.results] == [CONTRACT_ERROR, CONTRACT_ERROR, VALID]
        assert "NativePanic: evaluator panicked" in block.results[0].reason
        assert "test/half-written" not in ex.writes
        ledger.commit(block, ex)
        # A peer re-executing the block reaches the same codes.
        peer = Ledger(Store(":memory:", durable=False), _registry())
        for _, data in emb.store.iter_blocks():
            peer.commit(decode_block(data), data=data)
        assert peer.height == ledger.height


def test_keyboard_interrupt_is_not_swallowed(tmp_path: Path) -> None:
    init_consortium(tmp_path / "c", ORGS, consortium="test")
    with Embedded(tmp_path / "c", registry=_registry()) as emb:
        keys = emb.keys("hospital-a")
        before = emb.store.head()
        with pytest.raises(KeyboardInterrupt):
            emb.submit_raw([_tx(keys, "test.explode", {"kind": "interrupt"})], orderer="hospital-a")
        assert emb.store.head() == before


def test_a_node_goes_on_after_a_contract_panic(tmp_path: Path) -> None:
    init_consortium(tmp_path / "c", ORGS, consortium="test")
    node = Node(
        NodeConfig(data_dir=tmp_path / "c", org="hospital-a", max_wait=0.005),
        registry=_registry(),
    )
    node.start()
    try:
        keys = node.keys
        first = node.submit_batch([_tx(keys, "test.explode", {"kind": "panic"})])
        (receipt,) = first.result(timeout=10)
        assert receipt.code == CONTRACT_ERROR
        then = node.submit_batch([_tx(keys, notary.RECORD, {"digest": _digest()})])
        (receipt,) = then.result(timeout=10)
        assert receipt.code == VALID
        assert node.ready
    finally:
        node.stop()


def test_a_node_loop_that_raises_is_started_again(tmp_path: Path) -> None:
    init_consortium(tmp_path / "c", ORGS, consortium="test")
    node = Node(NodeConfig(data_dir=tmp_path / "c", org="hospital-a"), registry=_registry())
    runs: list[float] = []

    def flaky() -> None:
        runs.append(time.monotonic())
        if len(runs) < 3:
            raise NativePanic("boom")
        node.stop_event.wait(5)

    try:
        node.spawn("flaky", flaky)
        deadline = time.monotonic() + 5
        while len(runs) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(runs) == 3
    finally:
        node.stop()
