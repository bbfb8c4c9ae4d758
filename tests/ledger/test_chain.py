"""The validation pipeline and `verify_chain`: a negative test for every check.

Blocks are checked by a second peer (`validate_block`), transactions get
validation codes, and `verify_chain` replays a stored chain whose bytes were
tampered with in every place we can reach: a block row, a header, a
transaction, a state row, an index row, and the raw database file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import cbor2
import pytest
from ledger_kit import T0, Kit, org_keys

from sharechain.contracts import notary
from sharechain.crypto.merkle import merkle_root
from sharechain.crypto.signing import SigningKey
from sharechain.errors import ChainError, ConfigError, EncodingError
from sharechain.ledger import validation as v
from sharechain.ledger.blocks import Block, BlockHeader, make_block, results_root, sign_header
from sharechain.ledger.chain import Ledger, next_state_root, verify_chain
from sharechain.ledger.contract import BlockContext, ContractRegistry, State
from sharechain.ledger.identities import org_from_value, org_key, org_to_value
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import SignedTransaction


def _resign(block: Block, header: BlockHeader, signer: str = "hospital-a") -> Block:
    return make_block(
        header, sign_header(header, org_keys(signer).signing), block.txs, block.results
    )


def _codes(block: Block) -> list[str]:
    return [r.code for r in block.results]


# -- blocks a peer receives ------------------------------------------------------


@pytest.fixture
def peer(kit: Kit, tmp_path: Path) -> Ledger:
    return kit.fresh_ledger(tmp_path / "peer.db")


def test_good_blocks_validate_on_a_peer(kit: Kit, peer: Ledger) -> None:
    b1 = kit.add([kit.record("hospital-a", b"one").raw, kit.record("hospital-b", b"two").raw])
    b2 = kit.add([kit.record("regulator", b"three").raw], orderer="regulator")
    for b in (b1, b2):
        peer.commit(b)
    assert peer.head == kit.ledger.head
    assert peer.store.get(notary.record_key(hashlib.sha256(b"three").digest())) is not None


def _header_change(**change: object) -> Callable[[Block], Block]:
    return lambda b: _resign(b, dataclasses.replace(b.header, **change))  # type: ignore[arg-type]


def _flip_sig(b: Block) -> Block:
    return make_block(b.header, bytes([b.signature[0] ^ 1]) + b.signature[1:], b.txs, b.results)


def _extra_tx(b: Block) -> Block:
    return make_block(b.header, b.signature, [*b.txs, b.txs[0]], [*b.results, b.results[0]])


def _flip_tx_byte(b: Block) -> Block:
    raw = bytearray(b.txs[0])
    raw[len(raw) // 2] ^= 0x40
    return make_block(b.header, b.signature, [bytes(raw)], b.results)


def _lie_about_results(b: Block) -> Block:
    return make_block(
        b.header, b.signature, b.txs, [dataclasses.replace(b.results[0], code="valid")]
    )


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (_header_change(prev_hash=b"\x07" * 32), "prev_hash"),
        (_header_change(height=2), "does not follow"),
        (_header_change(timestamp=T0 - 1), "timestamp goes backwards"),
        (_header_change(orderer="nobody"), "not an active organisation"),
        (_header_change(state_delta_hash=b"\x00" * 32), "state_delta_hash"),
        (_header_change(tx_root=merkle_root([b"other"])), "tx_root"),
        (_header_change(results_root=merkle_root([b"other"])), "results_root"),
        (_flip_sig, "orderer signature does not verify"),
        (lambda b: _resign(b, b.header, signer="hospital-b"), "orderer signature does not verify"),
        (_extra_tx, "tx_root"),
        (_flip_tx_byte, "tx_root"),
    ],
    ids=[
        "prev-hash",
        "height-skip",
        "time-backwards",
        "unknown-orderer",
        "delta-hash",
        "tx-root",
        "results-root",
        "forged-orderer-sig",
        "wrong-orderer-key",
        "extra-tx",
        "flipped-tx-byte",
    ],
)
def test_peer_rejects_tampered_block(
    kit: Kit, peer: Ledger, tamper: Callable[[Block], Block], message: str
) -> None:
    good = kit.build([kit.record("hospital-a", b"doc").raw])
    with pytest.raises(ChainError, match=message) as err:
        peer.validate_block(tamper(good))
    assert err.value.height in (1, 2)
    assert peer.height == 0  # nothing committed
    peer.commit(good)  # the untampered block still goes in
    assert peer.height == 1


def test_peer_rejects_lying_validation_codes(kit: Kit, peer: Ledger) -> None:
    bad = kit.record("hospital-a", b"doc", note="x" * (notary.MAX_NOTE + 1))
    block = kit.build([bad.raw])
    assert _codes(block) == ["bad_payload"]
    # A code changed after signing no longer matches the header's results_root.
    with pytest.raises(ChainError, match="block 1: results_root does not match its results"):
        peer.validate_block(_lie_about_results(block))
    # An orderer lying consistently (results, results_root, signature) is caught by
    # re-execution.
    lying = _lie_about_results(block)
    header = dataclasses.replace(
        block.header, results_root=results_root(lying.tx_ids, lying.results)
    )
    with pytest.raises(ChainError, match="re-executes to 'bad_payload', the block says 'valid'"):
        peer.validate_block(_resign(lying, header))
    assert peer.height == 0
    peer.commit(block)
    assert peer.height == 1


def test_reordered_and_missing_blocks(kit: Kit, peer: Ledger) -> None:
    b1 = kit.add([kit.record("hospital-a", b"1").raw])
    b2 = kit.add([kit.record("hospital-a", b"2").raw])
    b3 = kit.add([kit.record("hospital-a", b"3").raw])
    with pytest.raises(ChainError, match="does not follow height 0"):
        peer.validate_block(b2)
    with pytest.raises(ChainError, match="does not follow height 0"):
        peer.validate_block(b3)
    peer.commit(b1)
    with pytest.raises(ChainError, match="does not follow height 1"):
        peer.validate_block(b1)  # replayed block
    peer.commit(b2)
    peer.commit(b3)
    assert peer.head == kit.ledger.head


def test_forged_genesis_is_refused(kit: Kit, tmp_path: Path) -> None:
    other = Ledger(Store(tmp_path / "o.db"), kit.registry)
    g = kit.genesis
    signed = make_block(g.header, b"\x01" * 64, g.txs, g.results)
    lying = make_block(
        dataclasses.replace(g.header, state_delta_hash=bytes(32)), b"", g.txs, g.results
    )
    other_tx = make_block(g.header, b"", [g.txs[0] + b"\x00"], g.results)
    lying_root = make_block(
        dataclasses.replace(g.header, results_root=bytes(32)), b"", g.txs, g.results
    )
    for forged, message in (
        (signed, "no signature"),
        (lying, "state_delta_hash"),
        (lying_root, "results_root"),
        (other_tx, "tx_root"),
    ):
        with pytest.raises(ChainError, match=message):
            other.validate_block(forged)
    with pytest.raises(ChainError, match="before genesis"):
        other.validate_block(kit.build([kit.record("hospital-a", b"x").raw]))
    # Any self-consistent genesis is a valid chain start: what pins the
    # consortium is its hash, which verify_chain checks when given it.
    moved = make_block(
        dataclasses.replace(g.header, timestamp=g.header.timestamp + 1), b"", g.txs, g.results
    )
    other.commit(moved)
    report = verify_chain(other.store, kit.registry, genesis_hash=g.hash())
    assert not report.ok and report.bad_height == 0 and "genesis" in report.reason
    other.store.close()


# -- validation codes of transactions ----------------------------------------------


def _reenvelope(
    stx: SignedTransaction, *, key_id: bytes | None = None, sig: bytes | None = None
) -> bytes:
    return cbor2.dumps(
        [
            1,
            stx.body,
            key_id if key_id is not None else stx.key_id,
            sig if sig is not None else stx.signature,
        ],
        canonical=True,
    )


def test_forged_signature(kit: Kit) -> None:
    stx = kit.record("hospital-a", b"doc")
    forged = _reenvelope(
        stx, sig=bytes([stx.signature[5] ^ 1]).join([stx.signature[:5], stx.signature[6:]])
    )
    block = kit.add([forged])
    assert _codes(block) == [v.BAD_SIGNATURE]
    assert kit.store.get(notary.record_key(hashlib.sha256(b"doc").digest())) is None


def test_wrong_key_signatures(kit: Kit) -> None:
    # Signed by hospital-b's key while claiming to be hospital-a.
    stx = kit.sign("hospital-a", notary.RECORD, {"digest": bytes(32)}, key="hospital-b")
    # ... with b's key id: not a's current key; with a's key id: the signature fails.
    pretending = _reenvelope(stx, key_id=org_keys("hospital-a").sign_key_id)
    block = kit.add([stx.raw, pretending])
    assert _codes(block) == [v.STALE_KEY, v.BAD_SIGNATURE]
    assert kit.store.get(notary.record_key(bytes(32))) is None


def test_unknown_sender_bad_encoding_unknown_type(kit: Kit) -> None:
    outsider = SigningKey.from_seed(b"\x09" * 32)
    from sharechain.ledger.transactions import sign_transaction

    stranger = sign_transaction(outsider, notary.RECORD, "mallory", {"digest": bytes(32)})
    block = kit.add(
        [
            stranger.raw,
            b"\x00not a transaction",
            kit.sign("hospital-a", "no.such.type", {}).raw,
            kit.sign("hospital-a", "genesis", {}).raw,
        ]
    )
    assert _codes(block) == [v.UNKNOWN_SENDER, v.BAD_ENCODING, v.UNKNOWN_TYPE, v.UNKNOWN_TYPE]


def test_replay_within_a_block_and_across_blocks(kit: Kit) -> None:
    stx = kit.record("hospital-a", b"once")
    endorse = kit.sign("hospital-b", notary.ENDORSE, {"record": stx.id})
    b1 = kit.add([stx.raw, stx.raw, endorse.raw])
    assert _codes(b1) == [v.VALID, v.REPLAY, v.VALID]
    b2 = kit.add([stx.raw, endorse.raw])
    assert _codes(b2) == [v.REPLAY, v.REPLAY]
    rec = notary.notary_record(
        cbor2.loads(kit.store.get(notary.record_key(hashlib.sha256(b"once").digest())) or b"")
    )
    assert [e.org for e in rec.endorsements] == ["hospital-b"]  # endorsed once, not twice
    assert verify_chain(kit.store, kit.registry).ok


# A test-only stand-in for key rotation: the ledger's stale_key check is generic
# (it compares the envelope's key id with the `org/<id>` record), and the
# ledger layer must not depend on contracts, so a tiny contract that rewrites
# the record exercises it here. The real rotation (`org.rotate-key`, signed
# with the old key, proving the new one) is tested in tests/contracts.
ROTATE = "test.rotate_key"


def _rotate(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    org = org_from_value(state.get(org_key(stx.tx.sender)))
    new = dataclasses.replace(org, sign_key=stx.tx.payload["sign_key"], since=ctx.height)
    state.put(org_key(org.id), org_to_value(new))


def test_stale_key_after_rotation(tmp_path: Path) -> None:
    registry = notary.registry().merged(ContractRegistry({ROTATE: _rotate}))
    kit = Kit(tmp_path / "l.db", registry)
    old = kit.keys["hospital-a"]
    new = SigningKey.from_seed(b"\x33" * 32)
    signed_before = kit.record("hospital-a", b"late")  # made with the old key, sent later
    b1 = kit.add([kit.sign("hospital-a", ROTATE, {"sign_key": new.public_key}).raw])
    assert _codes(b1) == [v.VALID]
    kit.keys["hospital-a"] = dataclasses.replace(old, signing=new)
    b2 = kit.add([signed_before.raw, kit.record("hospital-a", b"fresh").raw], orderer="hospital-b")
    assert _codes(b2) == [v.STALE_KEY, v.VALID]
    assert "current key" in b2.results[0].reason
    # A block signed by the orderer's old key no longer verifies on a peer.
    peer = kit.fresh_ledger(tmp_path / "peer.db")
    peer.commit(b1)
    peer.commit(b2)
    stale_orderer = _resign(kit.build([]), kit.build([]).header, signer="hospital-a")
    with pytest.raises(ChainError, match="orderer signature"):
        peer.validate_block(stale_orderer)  # org_keys() gives the pre-rotation key
    assert verify_chain(kit.store, registry).ok
    kit.store.close()


# -- verify_chain over a stored, tampered chain -----------------------------------


@pytest.fixture
def stored(kit: Kit) -> Kit:
    """Genesis and five blocks (one with two transactions and an invalid one)."""
    first = kit.record("hospital-a", b"r1")
    kit.add([first.raw])
    kit.add(
        [
            kit.record("hospital-b", b"r2").raw,
            kit.sign("regulator", notary.ENDORSE, {"record": first.id}).raw,
        ]
    )
    kit.add([kit.record("regulator", b"r3").raw, b"junk"], orderer="regulator")
    kit.add([kit.record("hospital-a", b"r4").raw])
    kit.add([kit.record("hospital-b", b"r5").raw], orderer="hospital-b")
    return kit


def _sql(kit: Kit, query: str, *args: object) -> None:
    db = sqlite3.connect(kit.path, isolation_level=None)
    db.execute(query, args)
    db.close()


def _block_data(kit: Kit, height: int) -> bytes:
    data = kit.store.block_bytes(height)
    assert data is not None
    return data


def _report(kit: Kit, **kw: object):  # type: ignore[no-untyped-def]  # VerifyReport
    return verify_chain(kit.store, kit.registry, **kw)  # type: ignore[arg-type]


def test_intact_chain_verifies(stored: Kit) -> None:
    r = _report(stored, genesis_hash=stored.genesis.hash())
    assert r.ok and r.height == 5 and r.transactions == 8 and r.bad_height is None
    head = stored.store.head()
    assert head is not None and r.state_root == head.state_root
    # The running state root, recomputed by hand.
    root = bytes(32)
    for h in range(6):
        from sharechain.ledger.blocks import decode_block

        root = next_state_root(root, decode_block(_block_data(stored, h)).header.state_delta_hash)
    assert root == head.state_root


def test_flipped_byte_in_a_transaction(stored: Kit) -> None:
    data = _block_data(stored, 3)
    from sharechain.ledger.blocks import decode_block

    tx = decode_block(data).txs[0]
    i = data.find(tx) + len(tx) - 10  # inside the signature
    _sql(
        stored,
        "UPDATE blocks SET data=? WHERE height=3",
        data[:i] + bytes([data[i] ^ 1]) + data[i + 1 :],
    )
    r = _report(stored)
    assert not r.ok and r.bad_height == 3 and r.height == 2
    assert "tx_root" in r.reason


def test_flipped_byte_in_a_header(stored: Kit) -> None:
    data = _block_data(stored, 4)
    from sharechain.ledger.blocks import decode_block

    header = decode_block(data).header
    i = data.find(header.state_delta_hash) + 3
    _sql(
        stored,
        "UPDATE blocks SET data=? WHERE height=4",
        data[:i] + bytes([data[i] ^ 1]) + data[i + 1 :],
    )
    r = _report(stored)
    assert not r.ok and r.bad_height == 4 and "orderer signature" in r.reason


def test_block_that_no_longer_decodes(stored: Kit) -> None:
    _sql(stored, "UPDATE blocks SET data=? WHERE height=2", b"\xa1garbage")
    r = _report(stored)
    assert not r.ok and r.bad_height == 2 and r.height == 1
    assert "does not decode" in r.reason


def test_stored_block_hash_column(stored: Kit) -> None:
    _sql(stored, "UPDATE blocks SET hash=? WHERE height=2", b"\x00" * 32)
    r = _report(stored)
    assert not r.ok and r.bad_height == 2 and "stored hash or state root" in r.reason


@pytest.mark.parametrize(
    ("query", "what"),
    [
        ("UPDATE state SET value=X'f5' WHERE key='config/consortium'", "world state"),
        (
            "DELETE FROM state WHERE id = (SELECT MIN(id) FROM state WHERE key LIKE 'notary/%')",
            "world state",
        ),
        ("INSERT INTO state (key, value) VALUES ('notary/forged', X'f6')", "world state"),
        ("UPDATE txs_recent SET code='valid' WHERE code='bad_encoding'", "transaction index"),
        ("DELETE FROM history_recent WHERE height=3", "history index"),
        ("INSERT INTO state_idx (key, value) VALUES ('idx/forged/a/b', X'f6')", "index keys"),
    ],
    ids=["state-value", "state-delete", "state-insert", "tx-code", "history", "index-keys"],
)
def test_tampered_state_and_index_rows(stored: Kit, query: str, what: str) -> None:
    before = _report(stored)
    assert before.ok
    _sql(stored, query)
    r = _report(stored)
    assert not r.ok and what in r.reason


def test_reordered_blocks(stored: Kit) -> None:
    b2, b3 = _block_data(stored, 2), _block_data(stored, 3)
    _sql(stored, "UPDATE blocks SET data=? WHERE height=2", b3)
    _sql(stored, "UPDATE blocks SET data=? WHERE height=3", b2)
    r = _report(stored)
    assert not r.ok and r.bad_height == 2 and r.height == 1


@pytest.mark.parametrize(("missing", "bad"), [(2, 2), (1, 1), (5, 5)])
def test_missing_blocks(stored: Kit, missing: int, bad: int) -> None:
    _sql(stored, "DELETE FROM blocks WHERE height=?", missing)
    r = _report(stored)
    assert not r.ok and r.bad_height == bad
    if missing < 5:
        assert "missing" in r.reason
    else:  # the tail block is gone but its writes are still in the state
        assert "differs" in r.reason


def test_wrong_genesis(stored: Kit) -> None:
    r = _report(stored, genesis_hash=b"\x01" * 32)
    assert not r.ok and r.bad_height == 0 and "genesis" in r.reason


def _raw_flip(path: Path, position: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[position] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_raw_byte_flipped_inside_a_block_in_the_database_file(stored: Kit) -> None:
    header = stored.store.block_meta(3)
    assert header is not None
    data = _block_data(stored, 3)
    stored.store.close()  # checkpoints the WAL into the main file
    path = stored.path
    assert not Path(str(path) + "-wal").exists()
    pos = path.read_bytes().find(data)
    assert pos > 0
    _raw_flip(path, pos + len(data) // 2)
    stored.store = Store(path)
    r = _report(stored)
    assert not r.ok and r.bad_height == 3


def test_random_raw_flips_never_crash(stored: Kit, tmp_path: Path) -> None:
    stored.store.close()
    pristine = stored.path.read_bytes()
    rng = random.Random(6962)
    outcomes = {"refused to open": 0, "reported": 0, "harmless": 0}
    # Most flips land in free space inside pages (harmless), so enough trials
    # that some hit data whatever the file's layout.
    for trial in range(80):
        path = tmp_path / f"flip{trial}.db"
        raw = bytearray(pristine)
        raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(raw))
        try:
            store = Store(path)
        except ConfigError as exc:
            assert str(path) in str(exc)
            outcomes["refused to open"] += 1
            continue
        try:
            r = verify_chain(store, stored.registry)  # must return a report, never raise
        except ConfigError:
            outcomes["refused to open"] += 1
            continue
        finally:
            store.close()
        if r.ok:
            outcomes["harmless"] += 1  # the flipped byte sat in free space
        else:
            # A first bad height, or (page-level damage) a reason naming the file damage.
            assert r.bad_height is not None or "damaged" in r.reason
            outcomes["reported"] += 1
    assert outcomes["reported"] + outcomes["refused to open"] > 0


def test_a_forged_block_cannot_be_committed_by_a_second_process(stored: Kit) -> None:
    # Two writers racing for the same height: the store refuses the loser.
    block = stored.build([stored.record("hospital-a", b"race").raw])
    stored.ledger.commit(block)
    with pytest.raises(ChainError, match=r"does not follow|does not extend"):
        stored.ledger.commit(block)
    with pytest.raises(EncodingError):
        from sharechain.ledger.blocks import decode_block

        decode_block(b"\x00")
