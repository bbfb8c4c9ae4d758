"""Which blocks a node catching up may commit: the chain its peers' attestations vouch for.

`node.vouching` walks back from a block a peer attests through the blocks on
offer; the walk counts only if no peer signed another hash at a height it
crosses (unless more than half of the peers signed the walk's). Here with a
real orderer's chain and attestations signed with the members' real keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from node_helpers import Consortium, Running
from test_replication import _records

from sharechain.ledger.attestations import sign_attestation
from sharechain.ledger.blocks import decode_block
from sharechain.node.service import Node, NodeConfig
from sharechain.node.vouching import VouchedChain, candidates

PEERS = (("hospital-a", "http://127.0.0.1:9"), ("regulator", "http://127.0.0.1:9"))


@pytest.fixture
def catching_up(consortium: Consortium) -> Iterator[Node]:
    """bank-b's node at genesis, polling hospital-a and regulator, running no loops."""
    config = NodeConfig(
        data_dir=consortium.node_dir("bank-b"), org="bank-b", verify_on_start=False, peers=PEERS
    )
    node = Node(config)
    try:
        yield node
    finally:
        node.stop()


def _chain(orderer: Running, blocks: int) -> dict[int, bytes]:
    for tag in range(blocks):
        orderer.node.submit_batch(_records(orderer.consortium, "hospital-a", 2, tag=tag)).result(20)
    return {h: orderer.node.store.block_bytes(h) or b"" for h in range(1, blocks + 1)}


def _attest(node: Node, consortium: Consortium, org: str, height: int, block: bytes) -> None:
    """`org` signs that it committed `block` at `height` (with an arbitrary state root)."""
    head = node.store.head()
    assert head is not None
    meta = dataclasses.replace(head, height=height, hash=block)
    att = sign_attestation(org, consortium.keys(org).signing, meta)
    node.book.receive(att, node.public_key(org))


def _reader(blocks: dict[int, bytes]):  # type: ignore[no-untyped-def]
    return lambda lo, hi: [(h, blocks[h]) for h in range(lo, hi + 1) if h in blocks]


def test_one_peer_ahead_vouches_where_no_other_contradicts(
    orderer: Running, catching_up: Node, consortium: Consortium
) -> None:
    blocks = _chain(orderer, 4)
    # hospital-a committed all four; regulator lags at genesis (it attests nothing above).
    _attest(catching_up, consortium, "hospital-a", 4, decode_block(blocks[4]).hash())
    chain = VouchedChain("the etcd log", "etcd")
    assert chain.extend(catching_up, _reader(blocks)) is None
    assert chain.top == 4
    for h, data in blocks.items():
        assert chain.expected(h) == decode_block(data).hash()
    assert chain.unvouched(1, list(blocks.values())) is None


def test_a_contrary_attestation_holds_a_lone_voucher_back(
    orderer: Running, catching_up: Node, consortium: Consortium
) -> None:
    blocks = _chain(orderer, 4)
    _attest(catching_up, consortium, "hospital-a", 4, decode_block(blocks[4]).hash())
    _attest(catching_up, consortium, "regulator", 2, bytes(32))  # another block 2
    chain = VouchedChain("the etcd log", "etcd")
    why = chain.extend(catching_up, _reader(blocks))
    assert why is not None and "regulator attests another block 2" in why
    assert chain.top == -1 and catching_up.halted is None


def test_a_block_in_place_of_the_vouched_one_is_found_and_taken_from_elsewhere(
    orderer: Running, catching_up: Node, consortium: Consortium
) -> None:
    blocks = _chain(orderer, 4)
    for org in ("hospital-a", "regulator"):  # both peers: more than half
        _attest(catching_up, consortium, org, 4, decode_block(blocks[4]).hash())
    offered = dict(blocks)
    offered[2] = blocks[3]  # not block 2 at all
    taken: list[int] = []

    def elsewhere(height: int, want: bytes) -> bytes | None:
        taken.append(height)
        return blocks[height]

    chain = VouchedChain("the etcd log", "etcd")
    assert chain.extend(catching_up, _reader(offered), elsewhere) is None
    assert chain.top == 4 and taken == [2] and chain.found == {2: blocks[2]}
    assert chain.unvouched(1, [offered[h] for h in range(1, 5)]) == 2
    refused = catching_up.metrics.registry.get_sample_value(
        "sharechain_unvouched_blocks_total", {"source": "etcd"}
    )
    assert refused == 1
    # Without anywhere else to take it from, the walk fails and names the source.
    why = VouchedChain("peer x", "peer").extend(catching_up, _reader(offered))
    assert why is not None and why.startswith("peer x offers no block 2")


def test_candidates_put_what_more_than_half_signed_first(
    orderer: Running, catching_up: Node, consortium: Consortium
) -> None:
    blocks = _chain(orderer, 3)
    hashes = {h: decode_block(d).hash() for h, d in blocks.items()}
    _attest(catching_up, consortium, "hospital-a", 2, hashes[2])
    _attest(catching_up, consortium, "regulator", 2, hashes[2])
    _attest(catching_up, consortium, "hospital-a", 3, hashes[3])
    found, attested = candidates(catching_up)
    assert [(v.height, v.signers) for v in found] == [
        (2, ("hospital-a", "regulator")),
        (3, ("hospital-a",)),
    ]
    assert attested["hospital-a"] == {2: hashes[2], 3: hashes[3]}
