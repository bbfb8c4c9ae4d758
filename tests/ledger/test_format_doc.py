"""docs/format.md's worked example is what the code produces."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sharechain.contracts import notary
from sharechain.crypto.keyfile import OrgKeys
from sharechain.crypto.merkle import inclusion_proof, merkle_root
from sharechain.ledger.blocks import result_leaf
from sharechain.ledger.chain import Ledger
from sharechain.ledger.genesis import Genesis, genesis_block
from sharechain.ledger.identities import Organisation
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import sign_transaction

DOC = " ".join((Path(__file__).parents[2] / "docs" / "format.md").read_text().split())
DOC_HEX = DOC.replace(" ", "").replace("\n", "")


def test_worked_example_values_appear_in_the_doc() -> None:
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    keys = OrgKeys.from_secrets("hospital-a", seed, bytes(range(32)))
    org = Organisation(
        "hospital-a", ("member", "admin"), keys.signing.public_key, keys.encryption_public
    )
    genesis = genesis_block(Genesis("example", (org,), {}, 1750000000000))
    ledger = Ledger(Store(":memory:"), notary.registry())
    ledger.commit(genesis)
    stx = sign_transaction(
        keys.signing,
        notary.RECORD,
        "hospital-a",
        {"digest": hashlib.sha256(b"hello\n").digest(), "note": "greeting"},
        now=lambda: 1750000000.5,
        rng=lambda n: bytes(range(n)),
    )
    block, ex = ledger.build_block(
        [stx.raw], orderer="hospital-a", key=keys.signing, timestamp=1750000001000
    )
    ledger.commit(block, ex)
    head = ledger.store.head()
    assert head is not None
    ids = [hashlib.sha256(bytes([i])).digest() for i in range(3)]
    for value in (
        keys.sign_key_id,
        genesis.hash(),
        genesis.header.state_delta_hash,
        stx.body,
        stx.signature,
        stx.id,
        block.header.tx_root,
        genesis.header.results_root,
        result_leaf(block.tx_ids[0], block.results[0]),
        block.header.results_root,
        block.header.state_delta_hash,
        head.state_root,
        block.header.encoded(),
        block.hash(),
        block.signature,
        merkle_root(ids),
        inclusion_proof(ids, 2)[0],
    ):
        assert value.hex() in DOC_HEX, value.hex()
    ledger.store.close()
