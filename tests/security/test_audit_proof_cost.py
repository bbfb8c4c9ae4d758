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

Each block an entry sits in is still decoded and its transactions hashed
(about 9 ms for a block of 1.5 MiB), so a trail whose entries are spread
over 10,000 large blocks still cost a minute and a half: a page of a trail
now reads at most 32 MiB of blocks (`queries.AUDIT_BLOCK_BYTES`) and says
where the trail goes on (`next`); the API answers a page per request.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from api_helpers import Consortium, publish_and_grant, serve

from sharechain.api.client import NodeClient
from sharechain.bench.ledger import notary_transactions, order_blocks
from sharechain.contracts import default_registry, queries
from sharechain.crypto import merkle
from sharechain.crypto.signing import SigningKey
from sharechain.ledger.blocks import decode_block
from sharechain.ledger.chain import Ledger
from sharechain.ledger.genesis import genesis_block
from sharechain.ledger.proofs import verify_tx_proof
from sharechain.ledger.store import HistoryEntry, Store
from sharechain.ledger.transactions import sign_transaction

TXS = 2_000


def _refused(key: SigningKey, org: str, n: int) -> bytes:
    """A transaction of a type no contract handles: refused, and filed in `org`'s trail."""
    return sign_transaction(key, "no.such.type", org, {"n": n}, now=lambda: 0.0).raw


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
    signed, more = queries._entries(store, reversed(rows), proofs=True, block_bytes=None)
    assert more is None
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


def test_a_trail_spread_over_many_blocks_is_read_a_bounded_page_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys, genesis, _ = notary_transactions(0, 1)
    org = keys[0].org
    # Refused transactions are filed in their sender's trail (a member fills its own
    # blocks with them): 40 blocks, each in the trail.
    raws = [_refused(keys[0].signing, org, i) for i in range(1_200)]
    store = Store(tmp_path / "l.db", durable=False)
    ledger = Ledger(store, default_registry())
    ledger.commit(genesis_block(genesis))
    order_blocks(ledger, raws, 30, keys[0].signing)
    whole = queries.audit(store, org=org)  # unbounded: the node's own console
    # The genesis block admitted the member: its first entry.
    assert len(whole) == 1_201 and {e.code for e in whole[1:]} == {"unknown_type"}
    sizes = [len(store.block_bytes(h) or b"") for h in range(41)]
    budget = 3 * sizes[1]
    read: list[int] = []
    real = queries._block_view

    def counted(store: Store, height: int) -> object:
        view = real(store, height)
        read.append(view.size)
        return view

    monkeypatch.setattr(queries, "_block_view", counted)
    unbounded = queries.audit_page(store, org=org, block_bytes=None)
    assert len(read) == 41 and unbounded.next is None  # what one request read before
    pages, start = [], (0, 0)
    while True:
        read.clear()
        page = queries.audit_page(store, org=org, start=start, block_bytes=budget)
        pages.append(page)
        # One block past the budget at most (the one that crossed it).
        assert sum(read) <= budget + max(sizes), read
        if page.next is None:
            break
        assert page.next > start  # every page makes progress
        start = page.next
    assert len(pages) >= 10
    assert [e for p in pages for e in p.entries] == whole  # nothing lost, nothing twice
    store.close()


def test_the_api_answers_a_trail_a_page_at_a_time(tmp_path: Path) -> None:
    with serve(Consortium.make(tmp_path), "hospital-a") as running:
        key = running.consortium.keys("hospital-a").signing
        with running.client("hospital-a") as client:
            for i in range(5):  # a block each: positions span heights
                client.submit([_refused(key, "hospital-a", i)])
            _, grant = publish_and_grant(running, tmp_path)
            for trail in ({"org": "hospital-a"}, {"grant": grant}):
                whole = client.get_json("/v1/audit", **trail)
                assert whole["next"] is None and len(whole["entries"]) >= 3
                # A grant's trail merges two keys' histories (its request's, its own).
                for limit in (1, 2, 3):
                    assert _paged(client, trail, limit) == whole["entries"], (trail, limit)


def _paged(client: NodeClient, trail: dict[str, str], limit: int) -> list[object]:
    seen, params = [], {**trail, "limit": limit}
    while True:
        page = client.get_json("/v1/audit", **params)
        assert len(page["entries"]) <= limit
        seen += page["entries"]
        if page["next"] is None:
            return seen
        params |= {"from_height": page["next"]["height"], "from_index": page["next"]["index"]}
