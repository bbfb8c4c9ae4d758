"""Attack 49: a member asks for consistency proofs, and each rehashes the whole chain.

`GET /v1/checkpoint/consistency?old=&new=` (any member; the console's
checkpoints page too) copied every block hash up to `new` and rehashed them
all for the proof and both roots: about 2 s of CPU per request at a million
blocks, 20 s at ten million, in memory as large as the chain's hashes, for a
network that runs for years. The node keeps the history tree's nodes as
blocks arrive (`HistoryTree`), and now draws both roots and the proof from
them: O(log^2 n) hashes, none of them a block's leaf again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from api_helpers import Consortium, serve

from sharechain.crypto import merkle
from sharechain.crypto.merkle import merkle_root, verify_consistency
from sharechain.ledger.transactions import sign_transaction

BLOCKS = 40


def test_a_consistency_proof_rehashes_no_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    consortium = Consortium.make(tmp_path)
    with serve(consortium, "hospital-a") as running:
        key = consortium.keys("hospital-a").signing
        with running.client("hospital-a") as client:
            for i in range(BLOCKS):  # one block each: every submission waits for its receipt
                payload = {"digest": hashlib.sha256(bytes([i])).digest()}
                client.submit([sign_transaction(key, "notary.record", "hospital-a", payload).raw])
            size = running.node.ledger.height + 1
            assert size > BLOCKS
            hashes = [running.node.store.block_meta(h).hash for h in range(size)]  # type: ignore[union-attr]
            client.get_json("/v1/checkpoint/consistency", old=1, new=size)  # the tree grown
            hashed = [0]
            real = merkle.leaf_hash

            def counted(data: bytes) -> bytes:
                hashed[0] += 1
                return real(data)

            monkeypatch.setattr(merkle, "leaf_hash", counted)
            for old in (1, 7, size // 2, size - 1, size):
                body = client.get_json("/v1/checkpoint/consistency", old=old, new=size)
                old_root = bytes.fromhex(body["old_root"])
                new_root = bytes.fromhex(body["new_root"])
                assert old_root == merkle_root(hashes[:old]) and new_root == merkle_root(hashes)
                proof = [bytes.fromhex(p) for p in body["proof"]]
                verify_consistency(old, size, old_root, new_root, proof)
            assert hashed[0] == 0, f"{hashed[0]} block hashes were hashed again as leaves"
