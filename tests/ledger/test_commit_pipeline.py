"""The block pipeline (`ledger/pipeline.py`) decides exactly as `Ledger.commit` does.

Its worker processes check each signature against the key the envelope's key
id names, without decoding the body; the main process decides encoding,
sender, current key and replay. Blocks large enough to go to the workers,
mixing every case those checks split (bad signatures, non-canonical bodies,
another organisation's key, an unknown sender, a key rotated in the block
before or in the same block), must commit through the pipeline with the
results and state the orderer computed inline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_kit import T0, Kit

from sharechain.codec import encode
from sharechain.contracts import notary
from sharechain.crypto.signing import SigningKey
from sharechain.errors import ChainError, EncodingError
from sharechain.ledger import pipeline
from sharechain.ledger import validation as v
from sharechain.ledger._sigworker import FAILED, NOT_CHECKED, TICKET, VERIFIED, check
from sharechain.ledger.blocks import Block, encode_block, make_block, sign_header
from sharechain.ledger.chain import verify_chain
from sharechain.ledger.contract import BlockContext, ContractRegistry, State
from sharechain.ledger.identities import org_from_value, org_key, org_to_value
from sharechain.ledger.pipeline import MIN_PIPELINED_TXS, commit_stream, start_workers
from sharechain.ledger.schema import union_query
from sharechain.ledger.transactions import (
    TX_DOMAIN,
    SignedTransaction,
    _checked_fields,
    decode_transaction,
    envelope_parts,
    sign_transaction,
)

ROTATE = "test.rotate_key"
NEW_B = SigningKey.from_seed(b"\x44" * 32)


def _rotate(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    org = org_from_value(state.get(org_key(stx.tx.sender)))
    new = dataclasses.replace(org, sign_key=stx.tx.payload["sign_key"], since=ctx.height)
    state.put(org_key(org.id), org_to_value(new))


def _forged(stx: SignedTransaction) -> bytes:
    """`stx` with one bit of its signature flipped."""
    sig = bytearray(stx.signature)
    sig[5] ^= 1
    return encode([1, stx.body, stx.key_id, bytes(sig)])


def _non_canonical(kit: Kit, org: str) -> bytes:
    """A correctly signed envelope whose body lists its keys out of canonical order."""
    body = cbor2.dumps(
        {
            "payload": {"digest": bytes(32), "note": "unordered"},
            "type": notary.RECORD,
            "sender": org,
            "nonce": bytes(16),
            "created_at": 1_750_000_000_000,
        }
    )
    key = kit.keys[org].signing
    return encode([1, body, key.key_id, key.sign(TX_DOMAIN, body)])


def _filler(kit: Kit, tag: str, n: int) -> list[bytes]:
    orgs = ("hospital-a", "hospital-b", "regulator")
    return [kit.record(orgs[i % 3], f"{tag} {i}".encode(), note=f"{tag} {i}").raw for i in range(n)]


def test_pipeline_matches_the_inline_outcome(tmp_path: Path) -> None:
    registry = notary.registry().merged(ContractRegistry({ROTATE: _rotate}))
    kit = Kit(tmp_path / "orderer.db", registry)
    peer = kit.fresh_ledger(tmp_path / "peer.db")
    old_b = kit.keys["hospital-b"]
    before = kit.record("hospital-b", b"signed before the rotation")
    as_b = kit.sign(
        "hospital-a", notary.RECORD, {"digest": bytes(range(32)), "note": ""}, key="hospital-b"
    )
    stranger = kit.sign("hospital-a", notary.RECORD, {"digest": bytes(32), "note": "x"})
    stranger_raw = stranger.raw.replace(b"hospital-a", b"hospital-z")  # no such sender
    first = [
        kit.record("hospital-a", b"a").raw,
        _forged(kit.record("regulator", b"forged")),
        _non_canonical(kit, "hospital-a"),
        as_b.raw,  # hospital-b's key, sent as hospital-a: stale_key
        stranger_raw,
        b"\x00not an envelope",
        kit.sign("hospital-b", ROTATE, {"sign_key": NEW_B.public_key}).raw,
    ]
    kit.keys["hospital-b"] = dataclasses.replace(old_b, signing=NEW_B)
    first += [
        kit.record("hospital-b", b"new key, same block").raw,  # not in the workers' map
        before.raw,  # the old key, rotated out earlier in this block
        *_filler(kit, "one", MIN_PIPELINED_TXS),
    ]
    second = [
        kit.record("hospital-b", b"new key, next block").raw,
        _forged(kit.record("hospital-b", b"new key, forged")),
        kit.sign("hospital-b", notary.RECORD, {"digest": bytes(31) + b"\x01", "note": ""}).raw,
        *_filler(kit, "two", MIN_PIPELINED_TXS),
    ]
    kit.keys["hospital-b"] = old_b
    stale = kit.record("hospital-b", b"old key, two blocks on").raw
    kit.keys["hospital-b"] = dataclasses.replace(old_b, signing=NEW_B)
    # Dispatched, with the second, before the rotation committed: the workers'
    # map still holds the old key, under which `stale` verifies.
    third = [
        kit.record("hospital-b", b"new key, two blocks on").raw,
        stale,
        *_filler(kit, "three", MIN_PIPELINED_TXS),
    ]
    blocks: list[Block] = [kit.add(first), kit.add(second, orderer="regulator")]
    blocks.append(kit.add(third))
    codes = [[r.code for r in b.results] for b in blocks]
    assert codes[0][:9] == [
        v.VALID,
        v.BAD_SIGNATURE,
        v.BAD_ENCODING,
        v.STALE_KEY,
        v.UNKNOWN_SENDER,
        v.BAD_ENCODING,
        v.VALID,
        v.VALID,
        v.STALE_KEY,
    ]
    assert codes[1][:3] == [v.VALID, v.BAD_SIGNATURE, v.VALID]
    assert codes[2][:2] == [v.VALID, v.STALE_KEY]

    start_workers()
    committed = list(commit_stream(peer, [encode_block(b) for b in blocks]))
    assert [ex.results for _, ex in committed] == [b.results for b in blocks]
    assert peer.head == kit.ledger.head
    assert peer.store.get(org_key("hospital-b")) == kit.store.get(org_key("hospital-b"))
    peer.store.close()
    kit.store.close()


def test_a_stream_stopped_early_leaves_the_workers_in_step(tmp_path: Path) -> None:
    # A caller that stops iterating (or a bad block) leaves the next block dispatched;
    # its replies must be read then, or the next stream would take them for its own
    # block's (here: "verified" for a forged signature, refused against the block).
    kit = Kit(tmp_path / "orderer.db")
    blocks = [
        kit.add([_forged(kit.record("hospital-a", b"forged")), *_filler(kit, "b1", 300)]),
        kit.add(_filler(kit, "b2", 300)),
    ]
    start_workers()
    first = kit.fresh_ledger(tmp_path / "first.db")
    stream = commit_stream(first, [encode_block(b) for b in blocks])
    assert next(stream)[0] == blocks[0]
    stream.close()
    assert first.height == 1
    second = kit.fresh_ledger(tmp_path / "second.db")
    done = list(commit_stream(second, [encode_block(b) for b in blocks]))
    assert [ex.results[0].code for _, ex in done] == [v.BAD_SIGNATURE, v.VALID]
    for store in (first.store, second.store, kit.store):
        store.close()


def test_worker_checks_by_the_envelopes_key_id() -> None:
    a, b = SigningKey.from_seed(b"\x01" * 32), SigningKey.from_seed(b"\x02" * 32)
    body = b"\xa0"
    good = encode([1, body, a.key_id, a.sign(TX_DOMAIN, body)])
    bad = encode([1, body, a.key_id, b.sign(TX_DOMAIN, body)])
    unknown = encode([1, body, b.key_id, b.sign(TX_DOMAIN, body)])
    digest = hashlib.sha256(b"").digest()
    status = check({a.key_id: a.public_key}, [good, bad, unknown, b"\x83\x01", digest])
    assert list(status) == [VERIFIED, FAILED, NOT_CHECKED, NOT_CHECKED, NOT_CHECKED]


# -- decode_transaction's fast path, held to the general one ------------------------


def _reference_decode(raw: bytes) -> tuple[object, ...]:
    """`decode_transaction` as it was before its fast path: decode, re-encode and
    compare, then check each field (the `_checked_fields` path)."""
    body_bytes, key_id, signature = envelope_parts(raw)
    try:
        body = cbor2.loads(body_bytes)
    except Exception as exc:
        raise EncodingError(f"transaction body is not valid CBOR: {exc}") from None
    fields = _checked_fields(body, body_bytes)
    return (*fields, body_bytes, key_id, signature, raw, hashlib.sha256(raw).digest())


def _outcome(decode: Callable[[bytes], tuple[object, ...]], raw: bytes) -> tuple[object, ...]:
    try:
        return ("ok", *decode(raw))
    except EncodingError as exc:
        return ("error", str(exc))


def _fast_decode(raw: bytes) -> tuple[object, ...]:
    s = decode_transaction(raw)
    t = s.tx
    return (t.type, t.sender, t.nonce, t.created_at, t.payload, s.body, s.key_id, s.signature)


_scalars = (
    st.text(max_size=30)
    | st.binary(max_size=40)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.booleans()
    | st.none()
    | st.floats(allow_nan=False)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_field = {  # name: (well-formed, anything)
    "type": (st.sampled_from(["notary.record", "t" * 300, "é"]), _values),
    "sender": (st.text(min_size=1, max_size=40), _values),
    "nonce": (st.binary(min_size=16, max_size=16), _values),
    "created_at": (
        st.sampled_from([0, 23, 24, 255, 256, 2**32, 2**64 - 1]),
        st.sampled_from([2**64, -1, True, 1.0]) | _values,
    ),
    "payload": (st.dictionaries(st.text(max_size=8), _values, max_size=4), _values),
}


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fast_decode_agrees_with_the_general_path(data: st.DataObject) -> None:
    names = data.draw(st.permutations(list(_field)))
    keep = 5 if data.draw(st.integers(0, 3)) else data.draw(st.integers(3, 4))
    odd = st.integers(0, 3).map(lambda n: n == 0)  # one in four
    body = {name: data.draw(_field[name][data.draw(odd)]) for name in names[:keep]}
    if data.draw(odd):
        body["extra"] = 1
    try:
        body_bytes = cbor2.dumps(body, canonical=not data.draw(odd))
    except (cbor2.CBOREncodeError, ValueError, TypeError):
        return
    if data.draw(odd):
        body_bytes += b"\x00"  # trailing bytes
    raw = encode([1, body_bytes, bytes(32), bytes(64)])
    fast, reference = _outcome(_fast_decode, raw), _outcome(_reference_decode, raw)
    assert fast[0] == reference[0] and fast[1:] == reference[1 : len(fast)]


def test_fast_decode_of_real_transactions() -> None:
    key = SigningKey.from_seed(b"\x05" * 32)
    for payload in (
        {"digest": bytes(32), "note": "x" * 300},
        {},
        {"a": [1, {"b": None}], "c": 2.5},
    ):
        stx = sign_transaction(key, "notary.record", "org", payload, now=lambda: 1e9)
        assert _outcome(_fast_decode, stx.raw)[1:] == _outcome(_reference_decode, stx.raw)[1:9]
        assert decode_transaction(stx.raw) == stx


# -- reading ahead and writing many rows a statement change no outcome -----------


def test_get_many_is_get_for_many_keys(tmp_path: Path) -> None:
    kit = Kit(tmp_path / "l.db")
    stx = kit.record("hospital-a", b"present")
    kit.add([stx.raw])
    keys = [
        notary.record_key(hashlib.sha256(b"present").digest()),
        notary.record_key(hashlib.sha256(b"absent").digest()),
        org_key("hospital-b"),
        "idx/none",
        *[f"k{i}" for i in range(1100)],  # several queries
    ]
    many = kit.store.get_many(keys)
    assert many == {k: v for k in keys if (v := kit.store.get(k)) is not None}
    assert len(many) == 2
    kit.store.close()


class _Misleading:
    """`notary.record` naming keys it does not read, and not the one it does."""

    def __call__(self, state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
        notary.registry().handlers[notary.RECORD](state, stx, ctx)

    def reads(self, stx: SignedTransaction) -> tuple[str, ...]:
        return (org_key("hospital-a"), "notary/unrelated", "idx/x")


def test_read_hints_change_no_outcome(tmp_path: Path) -> None:
    def plain(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
        notary.registry().handlers[notary.RECORD](state, stx, ctx)

    kits = [
        Kit(tmp_path / f"{name}.db", ContractRegistry({notary.RECORD: handler}))
        for name, handler in (
            ("hinted", notary.registry().handlers[notary.RECORD]),
            ("plain", plain),
            ("misleading", _Misleading()),
        )
    ]
    for round_ in range(3):  # duplicates of earlier blocks' records, and within a block
        contents = [f"r{round_}-{i}".encode() for i in range(5)] + [b"r0-1", b"r0-1"]
        blocks = [k.add([k.record("hospital-b", c).raw for c in contents]) for k in kits]
        assert blocks[0].results == blocks[1].results == blocks[2].results
        assert blocks[0].header.state_delta_hash == blocks[1].header.state_delta_hash
        assert blocks[0].header.state_delta_hash == blocks[2].header.state_delta_hash
    assert [r.code for r in blocks[0].results][-2:] == ["duplicate", "duplicate"]
    for k in kits:
        k.store.close()


def test_many_rows_a_statement_store_what_one_row_a_statement_did(tmp_path: Path) -> None:
    # More rows than two full INSERT statements of 128 and a rest; replays among
    # them (OR IGNORE keeps the original's index rows), rewritten keys (ON CONFLICT).
    kit = Kit(tmp_path / "l.db")
    first = [kit.record("regulator", f"x{i}".encode()) for i in range(300)]
    kit.add([s.raw for s in first])
    db = kit.store._db
    before = set(db.execute(union_query("txs", "id, height, idx, type, sender, code")))
    endorse = kit.sign("hospital-a", notary.ENDORSE, {"record": first[7].id})
    raws = [*[s.raw for s in first[:130]], kit.record("regulator", b"new").raw, endorse.raw]
    block, ex = kit.ledger.build_block(
        raws, orderer="hospital-a", key=kit.keys["hospital-a"].signing, timestamp=T0 + 10**6
    )
    kit.ledger.commit(block, ex)
    assert [r.code for r in block.results].count(v.REPLAY) == 130
    txs = set(db.execute(union_query("txs", "id, height, idx, type, sender, code")))
    known = {row[0] for row in before}
    assert txs - before == {(i, 2, x, t, s, c) for i, x, t, s, c in ex.tx_rows if i not in known}
    history = set(db.execute(union_query("history", "key, idx, tx_id", "height=2")))
    assert history == set(ex.history) and len(ex.history) == 130 + 2 + 1
    assert all(kit.store.get(k) == value for k, value in ex.writes.items())
    assert verify_chain(kit.store, kit.registry).ok
    kit.store.close()


def test_the_next_block_is_parsed_while_a_commit_waits_for_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kit = Kit(tmp_path / "orderer.db")
    blocks = [kit.add(_filler(kit, f"p{i}", MIN_PIPELINED_TXS)) for i in range(3)]
    parsed_by: list[str] = []
    parse = pipeline._parse

    def recording(block: Block) -> list[SignedTransaction | None]:
        parsed_by.append(threading.current_thread().name)
        return parse(block)

    monkeypatch.setattr(pipeline, "_parse", recording)
    peer = kit.fresh_ledger(tmp_path / "peer.db")
    start_workers()
    done = list(commit_stream(peer, [encode_block(b) for b in blocks]))
    assert [b.height for b, _ in done] == [1, 2, 3] and peer.head == kit.ledger.head
    assert [ex.results for _, ex in done] == [b.results for b in blocks]
    # The first block is parsed in turn, the next two while the one before committed.
    assert parsed_by == ["MainThread", "parse-ahead", "parse-ahead"]
    assert peer.store.on_commit is None
    for store in (peer.store, kit.store):
        store.close()


def _resigned(kit: Kit, block: Block, **header: bytes) -> Block:
    """`block` with header fields replaced, signed again by its orderer: only the
    roots checks can refuse it."""
    h = dataclasses.replace(block.header, **header)
    key = kit.keys[h.orderer].signing
    return make_block(h, sign_header(h, key), block.txs, block.results)


@pytest.mark.parametrize(
    ("field", "refusal"),
    [
        ("tx_root", "block 2: tx_root does not match its transactions"),
        ("results_root", "block 2: results_root does not match its results"),
    ],
)
def test_roots_computed_ahead_refuse_as_inline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str, refusal: str
) -> None:
    # The second block's roots are computed while the first commits (parse-ahead);
    # a wrong one is refused with the inline path's error, and nothing of it is written.
    kit = Kit(tmp_path / "orderer.db")
    good = kit.add(_filler(kit, "r1", MIN_PIPELINED_TXS))
    second = kit.build(_filler(kit, "r2", MIN_PIPELINED_TXS))
    bad = _resigned(kit, second, **{field: hashlib.sha256(b"not the root").digest()})
    ahead: list[tuple[bytes, bytes] | None] = []
    roots = pipeline._roots
    monkeypatch.setattr(pipeline, "_roots", lambda b: ahead.append(roots(b)) or ahead[-1])
    start_workers()
    for pooled in (True, False):
        peer = kit.fresh_ledger(tmp_path / f"peer-{pooled}.db")
        stream = [encode_block(good), encode_block(bad)]
        if pooled:
            with pytest.raises(ChainError, match=refusal):
                list(commit_stream(peer, stream))
        else:
            peer.commit(good)
            with pytest.raises(ChainError, match=refusal):
                peer.commit(bad)
        assert peer.height == 1
        peer.store.close()
    assert len(ahead) == 1 and ahead[0] is not None  # the bad block's, while the first committed
    kit.store.close()


def _recording_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> list[tuple[str, int]]:
    """Record (thread, transactions) of every chunk this process checks itself."""
    here: list[tuple[str, int]] = []
    checking = pipeline.check

    def recording(keys: dict[bytes, bytes], raws: list[bytes]) -> bytes:
        here.append((threading.current_thread().name, len(raws)))
        return checking(keys, raws)

    monkeypatch.setattr(pipeline, "check", recording)
    return here


def _until_stopped(pid: int, timeout: float = 30.0) -> None:
    """Until the kernel has stopped `pid` (state T). A SIGSTOP is only queued: a
    worker the machine has not scheduled yet, woken in its `recv` on the ticket
    socket, takes a ticket queued meanwhile before it stops, and the stream then
    waits for its answer until SIGCONT (a suite on a loaded CI machine hung so)."""
    deadline = time.monotonic() + timeout
    while True:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state in ("T", "t"):
            return
        assert time.monotonic() < deadline, f"signature worker {pid} not stopped: {state}"
        time.sleep(0.005)


@contextlib.contextmanager
def _workers_stopped() -> Iterator[pipeline._Pool]:
    """The running pool, its workers stopped (SIGSTOP) until the block ends: they
    take no ticket meanwhile, as if busy elsewhere or descheduled."""
    start_workers()
    pool = pipeline._pools[0]
    pids = [w.proc.pid for w in pool.workers]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        for pid in pids:
            _until_stopped(pid)
        yield pool
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # a pool shut down meanwhile
                os.kill(pid, signal.SIGCONT)


def test_a_stream_checks_queued_chunks_rather_than_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With every worker stopped (SIGSTOP: busy elsewhere, or descheduled), nothing
    # takes the queued chunks but this process: it checks them all, on the settling
    # thread or during a COMMIT, with the outcome of the inline path, and never
    # waits for a worker that took nothing.
    kit = Kit(tmp_path / "orderer.db")
    blocks = [kit.add(_filler(kit, f"s{i}", MIN_PIPELINED_TXS)) for i in range(2)]
    blocks.append(kit.add([_forged(kit.record("regulator", b"f")), *_filler(kit, "s", 300)]))
    here = _recording_checks(monkeypatch)
    peer = kit.fresh_ledger(tmp_path / "peer.db")
    before = pipeline.waits()
    with _workers_stopped():
        done = list(commit_stream(peer, [encode_block(b) for b in blocks]))
    assert [ex.results for _, ex in done] == [b.results for b in blocks]
    assert done[2][1].results[0].code == v.BAD_SIGNATURE
    assert sum(n for _, n in here) == sum(len(b.txs) for b in blocks)
    assert {name for name, _ in here} <= {"MainThread", "parse-ahead"}
    assert pipeline.waits().for_workers == before.for_workers
    # The workers, running again, serve the next stream in step.
    here.clear()
    again = kit.fresh_ledger(tmp_path / "again.db")
    assert [ex.results for _, ex in commit_stream(again, [encode_block(b) for b in blocks])] == [
        b.results for b in blocks
    ]
    for store in (peer.store, again.store, kit.store):
        store.close()


def test_handing_blocks_over_never_waits_for_a_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three blocks in flight hold more than a worker's pipe (1 MiB): with every
    # worker stopped, writing them would block the stream before it checked a
    # single chunk. A thread per worker writes them, so the stream checks them all.
    kit = Kit(tmp_path / "orderer.db")
    blocks = [kit.add(_filler(kit, f"big{i}", 1_700)) for i in range(3)]
    assert sum(len(encode_block(b)) for b in blocks) > 1 << 20
    here = _recording_checks(monkeypatch)
    peer = kit.fresh_ledger(tmp_path / "peer.db")
    with _workers_stopped():
        done = list(commit_stream(peer, [encode_block(b) for b in blocks]))
    assert [ex.results for _, ex in done] == [b.results for b in blocks]
    assert sum(n for _, n in here) == sum(len(b.txs) for b in blocks)
    for store in (peer.store, kit.store):
        store.close()


def test_the_last_blocks_leave_later_chunks_to_the_workers(tmp_path: Path) -> None:
    # Settling a block when the stream has nothing more to hand out, this process
    # takes only that block's queued chunks: those of the blocks after it are the
    # workers' work while it executes (it would otherwise lengthen the stream's end).
    kit = Kit(tmp_path / "orderer.db")
    blocks = [kit.add(_filler(kit, f"t{i}", MIN_PIPELINED_TXS)) for i in range(2)]
    keys = pipeline._current_keys(kit.ledger)
    pending = [pipeline._Pending(b, encode_block(b), keys=keys) for b in blocks]
    with _workers_stopped() as pool:
        for p in pending:
            pool.dispatch(p)
        first, second = pending
        pool.wait(first, later=False)
        assert first.here > 0 and second.left == -(-len(blocks[1].txs) // 32)
        assert not pool.steal(only=first.seq) and second.seq in pool.flight
        pool.wait(second, later=False)
        assert not pool.flight
    assert bytes(second.status) == check(second.keys, list(blocks[1].txs))
    kit.store.close()


def test_a_reply_for_no_block_in_flight_is_refused() -> None:
    # Replies name the block (its number in the pool) and the chunk they answer: one
    # that answers nothing dispatched stops the stream instead of counting for a block.
    start_workers()
    pool = pipeline._pools[0]
    assert not pool.flight
    with pytest.raises(RuntimeError, match="out of step"):
        pool._answer(10**9, 0, bytes([VERIFIED]))


def test_a_dead_worker_stops_a_stream_and_its_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stream waiting for a reply (here: it takes no chunk itself) from a worker
    # that died raises (the node then validates without the pipeline) instead of
    # waiting for ever, and shuts the pool down: the next stream verifies inline,
    # and `start_workers` starts new workers, which serve streams again.
    kit = Kit(tmp_path / "orderer.db")
    blocks = [kit.add(_filler(kit, f"k{i}", MIN_PIPELINED_TXS)) for i in range(2)]
    stream = [encode_block(b) for b in blocks]
    steal = pipeline._Pool.steal
    monkeypatch.setattr(pipeline._Pool, "steal", lambda self, check_here=True: False)
    pipeline._stop_workers()
    start_workers()
    dead = pipeline._pools[0]
    for worker in dead.workers:
        worker.proc.kill()
        worker.proc.wait()
    peer = kit.fresh_ledger(tmp_path / "peer.db")
    with pytest.raises(pipeline.WorkerError, match="signature worker died"):
        list(commit_stream(peer, stream))
    assert peer.height == 0 and not pipeline._pools
    inline = kit.fresh_ledger(tmp_path / "inline.db")
    assert [ex.results for _, ex in commit_stream(inline, stream)] == [b.results for b in blocks]
    monkeypatch.setattr(pipeline._Pool, "steal", steal)
    start_workers()
    assert pipeline._pools and pipeline._pools[0] is not dead
    here = _recording_checks(monkeypatch)
    with _workers_stopped():  # every chunk goes through the new pool, here
        again = kit.fresh_ledger(tmp_path / "again.db")
        assert [ex.results for _, ex in commit_stream(again, stream)] == [b.results for b in blocks]
    assert sum(n for _, n in here) == sum(len(b.txs) for b in blocks)
    for store in (peer.store, inline.store, again.store, kit.store):
        store.close()


def test_a_stream_ending_early_gives_up_on_chunks_no_worker_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stream that ends early reads the replies to its blocks in flight before the
    # workers serve another stream. Chunks a worker took and never answers (it was
    # stopped, or hangs) must not hold it for ever: past `_DRAIN_SECONDS` the pool
    # is shut down and the stream ends with its own error. Later streams verify
    # inline, and `start_workers` starts workers that serve them again.
    monkeypatch.setattr(pipeline, "_DRAIN_SECONDS", 1.0)
    kit = Kit(tmp_path / "orderer.db")
    block = kit.add(_filler(kit, "e", MIN_PIPELINED_TXS))
    peer = kit.fresh_ledger(tmp_path / "peer.db")
    taken: list[bytes] = []

    def source(pool: pipeline._Pool) -> Iterator[bytes]:
        yield encode_block(block)
        # Asked for the next block, the block before is in flight: its chunks are
        # taken here as a worker takes them, and never answered.
        with contextlib.suppress(BlockingIOError):
            while True:
                taken.append(pool._take.recv(TICKET.size, socket.MSG_DONTWAIT))
        raise OSError("the block source failed")

    start_workers()
    with _workers_stopped() as stuck:
        t0 = time.monotonic()
        with pytest.raises(OSError, match="block source failed"):
            list(commit_stream(peer, source(stuck)))
        ended = time.monotonic() - t0
    n = len(block.txs)
    chunk = max(pipeline._MIN_CHUNK, -(-n // pipeline._CHUNKS))
    assert len(taken) == -(-n // chunk)  # every chunk was held unanswered
    assert ended < 20  # the 1 s drain, then the stopped workers killed after 5 s
    assert stuck not in pipeline._pools and peer.height == 0
    assert [ex.results for _, ex in commit_stream(peer, [encode_block(block)])] == [block.results]
    start_workers()
    again = kit.fresh_ledger(tmp_path / "again.db")
    assert [ex.results for _, ex in commit_stream(again, [encode_block(block)])] == [block.results]
    assert pipeline._pools and pipeline._pools[0] is not stuck
    for store in (peer.store, again.store, kit.store):
        store.close()


def test_a_block_that_does_not_decode_comes_after_those_in_flight(tmp_path: Path) -> None:
    # Two blocks are in flight when the third turns out not to decode: both commit
    # first, so the error is the first bad block's.
    kit = Kit(tmp_path / "orderer.db")
    blocks = [kit.add(_filler(kit, f"d{i}", MIN_PIPELINED_TXS)) for i in range(2)]
    peer = kit.fresh_ledger(tmp_path / "peer.db")
    start_workers()
    done: list[int] = []
    with pytest.raises(EncodingError):
        for block, _ in commit_stream(peer, [*(encode_block(b) for b in blocks), b"\x00junk"]):
            done.append(block.height)
    assert done == [1, 2] and peer.head == kit.ledger.head
    for store in (peer.store, kit.store):
        store.close()


def test_a_source_that_waits_is_read_one_block_ahead(tmp_path: Path) -> None:
    # A live source (an iterator) may block on its next block: the block before
    # commits as soon as that one arrives, not after two more.
    kit = Kit(tmp_path / "orderer.db")
    blocks = [kit.add(_filler(kit, f"w{i}", MIN_PIPELINED_TXS)) for i in range(3)]
    peer = kit.fresh_ledger(tmp_path / "peer.db")
    handed: list[int] = []

    def source() -> Iterator[bytes]:
        for b in blocks:
            handed.append(b.height)
            yield encode_block(b)

    start_workers()
    stream = commit_stream(peer, source())
    assert next(stream)[0].height == 1 and handed == [1, 2]
    assert [b.height for b, _ in stream] == [2, 3] and peer.head == kit.ledger.head
    for store in (peer.store, kit.store):
        store.close()
