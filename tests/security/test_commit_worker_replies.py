"""Signature-worker replies stay with the block they were asked for.

The block pipeline (`ledger/pipeline.py`) hands block k+1 to its worker
processes before it settles block k. A caller that stops iterating after
block k used to leave block k+1's replies in the workers' pipes, and the next
stream read them as its own block's statuses. An orderer could then have a
forged signature taken as verified: a block claiming `valid` for it,
re-executed with another block's "verified" statuses, would match. The
replies are now always read, so such a block is refused.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sharechain.codec import encode
from sharechain.contracts import notary
from sharechain.crypto.keyfile import OrgKeys
from sharechain.crypto.merkle import merkle_root
from sharechain.errors import ChainError
from sharechain.ledger.blocks import (
    BlockHeader,
    encode_block,
    make_block,
    results_root,
    sign_header,
)
from sharechain.ledger.chain import Ledger
from sharechain.ledger.contract import BlockContext
from sharechain.ledger.execution import execute_block
from sharechain.ledger.genesis import Genesis, genesis_block
from sharechain.ledger.identities import Organisation
from sharechain.ledger.pipeline import commit_stream, start_workers
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import envelope_parts, sign_transaction

T0 = 1_750_000_000_000
KEYS = OrgKeys.from_secrets("hospital-a", b"\x07" * 32, bytes(range(32)))
GENESIS = genesis_block(
    Genesis(
        "test",
        (
            Organisation(
                "hospital-a", ("member", "admin"), KEYS.signing.public_key, KEYS.encryption_public
            ),
        ),
        {},
        T0,
    )
)


def _ledger(path: Path) -> Ledger:
    ledger = Ledger(Store(path), notary.registry())
    ledger.commit(GENESIS)
    return ledger


def _records(tag: str, n: int) -> list[bytes]:
    return [
        sign_transaction(
            KEYS.signing,
            notary.RECORD,
            "hospital-a",
            {"digest": hashlib.sha256(f"{tag} {i}".encode()).digest()},
            now=lambda: (T0 + 1) / 1000,
            rng=lambda size, i=i: i.to_bytes(size, "big"),
        ).raw
        for i in range(n)
    ]


def _forged(raw: bytes) -> bytes:
    body, key_id, signature = envelope_parts(raw)
    return encode([1, body, key_id, signature[:5] + bytes([signature[5] ^ 1]) + signature[6:]])


def _lying_block(orderer: Ledger, raws: list[bytes], timestamp: int) -> bytes:
    """The next block of `raws`, with results and state as if every signature verified."""
    head = orderer.store.head()
    assert head is not None
    ctx = BlockContext(head.height + 1, timestamp, "hospital-a")
    trusted = [(KEYS.signing.public_key, True)] * len(raws)
    ex = execute_block(orderer.store, orderer.registry, raws, ctx, presigned=trusted)
    ids = [hashlib.sha256(r).digest() for r in raws]
    header = BlockHeader(
        ctx.height,
        head.hash,
        merkle_root(ids),
        results_root(ids, ex.results),
        ex.delta_hash,
        timestamp,
        "hospital-a",
    )
    block = make_block(header, sign_header(header, KEYS.signing), raws, ex.results)
    orderer.commit(block, ex)
    return encode_block(block)


def test_a_forged_signature_is_never_taken_for_verified_after_a_stream_stops(
    tmp_path: Path,
) -> None:
    orderer = _ledger(tmp_path / "orderer.db")
    blocks = []
    for tag in ("a", "b"):
        block, ex = orderer.build_block(
            _records(tag, 300), orderer="hospital-a", key=KEYS.signing, timestamp=T0 + 1000
        )
        orderer.commit(block, ex)
        blocks.append(encode_block(block))
    forged = _records("c", 300)
    forged[3] = _forged(forged[3])
    blocks.append(_lying_block(orderer, forged, T0 + 2000))

    start_workers()
    peer = _ledger(tmp_path / "peer.db")
    stream = commit_stream(peer, blocks[:2])
    next(stream)  # block 1 committed, block 2 already with the workers
    stream.close()
    with pytest.raises(ChainError, match="block 3: transaction 3 re-executes to 'bad_signature'"):
        for _ in commit_stream(peer, blocks[1:]):
            pass
    assert peer.height == 2
    for ledger in (orderer, peer):
        ledger.store.close()
