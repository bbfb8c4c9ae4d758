"""Attack 48: a member's own audit trail, with proofs, costs a node a minute of CPU.

Every member may read its organisation's trail with inclusion proofs
(`GET /v1/audit?org=`, up to 10,000 entries), and the trail holds every
transaction it signed. Each entry's two audit paths (to the block's
`tx_root` and `results_root`) hashed the whole block again: 2.6 ms a path in
a block of 2,000 transactions, so 10,000 entries signed into full blocks cost
the node about 50 s of CPU per request, and the query kept every block it
touched in memory. Now each block's two trees are built once and every path
is drawn from them (`merkle.tree_levels`, `path_from_levels`), one block at
a time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sharechain.bench.ledger import notary_transactions, order_blocks
from sharechain.contracts import default_registry, queries
from sharechain.crypto import merkle
from sharechain.ledger.blocks import decode_block
from sharechain.ledger.chain import Ledger
from sharechain.ledger.genesis import genesis_block
from sharechain.ledger.proofs import verify_tx_proof
from sharechain.ledger.store import HistoryEntry, Store

TXS = 2_000


def test_a_trail_of_a_full_block_hashes_each_leaf_once_for_all_its_proofs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys, genesis, raws = notary_transactions(TXS, 1)
    store = Store(tmp_path / "l.db", durable=False)
    ledger = Ledger(store, default_registry())
    ledger.commit(genesis_block(genesis))
    order_blocks(ledger, raws, TXS, keys[0].signing)  # one block of the member's own
    hashed = [0]
    real = merkle.leaf_hash

    def counted(data: bytes) -> bytes:
        hashed[0] += 1
        return real(data)

    # The trail of a key every transaction of the block touched, as `audit` reads it
    # from the history index (what a member's signed transactions make of its trail).
    block = decode_block(store.block_bytes(1) or b"")
    rows = [HistoryEntry(1, i, tx_id) for i, tx_id in enumerate(block.tx_ids)]
    monkeypatch.setattr(merkle, "leaf_hash", counted)
    signed = queries._entries(store, reversed(rows), proofs=True)
    assert [(e.height, e.index) for e in signed] == [(1, i) for i in range(TXS)]
    # Two trees of the block (transactions, results), each leaf hashed once: not twice
    # the whole block for each of the 2,000 entries (8,000,000).
    assert hashed[0] <= 2 * TXS + 2
    head = store.block_meta(1)
    assert head is not None
    for entry in signed:
        assert entry.proof is not None
        verify_tx_proof(entry.proof, head.hash)
    store.close()
