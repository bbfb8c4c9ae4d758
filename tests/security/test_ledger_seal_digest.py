"""The seal's state digest moves with each block, in the block's transaction, and stays exact.

Attack surface: a digest updated incrementally (subtract the replaced row's
keyed hash, add the new one) could drift from the rows it stands for (a
missed write, a crash between the block and its seal), and a drifted digest
would either refuse a sound store or vouch for an edited one. Defences: the
digest after any sequence of commits equals one recomputed from every row;
the seal commits with the block or not at all; `verify_ledger` recomputes it.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharechain.codec import encode
from sharechain.contracts import notary
from sharechain.errors import ChainError
from sharechain.ledger import seal as sealing
from sharechain.ledger.seal import StateSealer, read_seal, reseal, seal_key, state_digest
from sharechain.ledger.store import Store
from sharechain.ledger.verify import verify_ledger
from sharechain.sharing import embedded
from sharechain.sharing.embedded import Embedded
from sharechain.storage.datadir import OrgSpec, init_consortium

ORGS = (OrgSpec("hospital-a", ("member", "admin")), OrgSpec("regulator", ("supervisor",)))
KEY = bytes(range(32))

_keys = st.sampled_from([f"k/{i}" for i in range(6)] + [f"idx/x/{i}" for i in range(6)])
_blocks = st.lists(
    st.dictionaries(_keys, st.none() | st.binary(max_size=8), max_size=6), max_size=12
)


def _commit(store: Store, height: int, writes: dict[str, bytes | None]) -> None:
    tx = hashlib.sha256(b"%d" % height).digest()
    store.commit_block(
        height=height,
        block_hash=hashlib.sha256(tx).digest(),
        state_root=bytes(32),
        timestamp=height,
        data=b"",
        txs=[(tx, 0, "t", "o", "valid"), (tx, 1, "t", "o", "replay")],
        writes=writes,
        history=[(k, 0, tx) for k in writes],
    )


@settings(max_examples=60, deadline=None)
@given(blocks=_blocks)
def test_the_digest_after_random_commits_equals_a_recomputation(
    blocks: list[dict[str, bytes | None]],
) -> None:
    store = Store(":memory:", durable=False)
    store.sealer = StateSealer(KEY)
    for height, writes in enumerate(blocks):
        _commit(store, height, writes)
    if blocks:
        seal = read_seal(store, KEY)
        assert seal is not None and seal.height == len(blocks) - 1
        assert seal.state_digest == state_digest(store, KEY)
        assert (seal.tx_rows, seal.history_rows) == sealing._counts(store)
        assert seal == reseal(store, KEY)  # the same seal, recomputed from scratch
    store.close()


def test_the_digest_depends_on_the_key_and_on_which_table_holds_a_row(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.db")
    store.sealer = StateSealer(KEY)
    _commit(store, 0, {"k/1": b"v"})
    digest = state_digest(store, KEY)
    assert state_digest(store, bytes(32)) != digest
    with store._lock:  # the same row moved to the index table (a read would miss it)
        store._db.execute("INSERT INTO state_idx VALUES ('k/1', X'76')")
        store._db.execute("DELETE FROM state WHERE key='k/1'")
    assert state_digest(store, KEY) != digest


def test_a_seal_not_naming_the_parent_refuses_the_block(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.db")
    store.sealer = StateSealer(KEY)
    _commit(store, 0, {"k/1": b"v"})
    store.sealer = None
    _commit(store, 1, {"k/2": b"w"})  # a writer without a sealer (a node) leaves it behind
    store.sealer = StateSealer(KEY)
    with pytest.raises(ChainError, match="does not name the block before"):
        _commit(store, 2, {"k/3": b"x"})
    assert store.head().height == 1 and store.get("k/3") is None  # type: ignore[union-attr]
    reseal(store, KEY)
    _commit(store, 2, {"k/3": b"x"})
    assert store.get("k/3") == b"x"
    store.set_meta("seal", encode([b"", b""]))
    with pytest.raises(ChainError, match="seal is malformed"):
        _commit(store, 3, {"k/4": b"y"})
    assert store.head().height == 2 and store.get("k/4") is None  # type: ignore[union-attr]


@pytest.fixture
def consortium(tmp_path: Path) -> Path:
    path = tmp_path / "c"
    init_consortium(path, ORGS, consortium="test")
    with Embedded(path) as emb:
        for i in range(3):
            emb.submit("hospital-a", notary.RECORD, {"digest": hashlib.sha256(b"%d" % i).digest()})
    return path


def _forge_digest(path: Path) -> None:
    """A seal with a valid tag over a wrong digest: what a drifted update would leave."""
    store = Store(path / "ledger.db")
    key = seal_key(store)
    assert key is not None
    seal = read_seal(store, key)
    assert seal is not None
    wrong = sealing.Seal(
        seal.height, seal.head_hash, seal.state_root, bytes(32), seal.tx_rows, seal.history_rows
    )
    sealing._write(store, wrong, key)
    store.close()


def test_chain_verify_reports_a_drifted_digest(consortium: Path) -> None:
    with Embedded(consortium, check_store=False) as emb:
        assert verify_ledger(emb.store, emb.registry).ok
    _forge_digest(consortium)
    with Embedded(consortium, check_store=False) as emb:
        report = verify_ledger(emb.store, emb.registry)
    assert not report.ok and "seal drifted" in report.reason
    with pytest.raises(ChainError, match="world state differs"):
        Embedded(consortium)


def test_a_first_version_seal_is_verified_in_full_then_resealed(consortium: Path) -> None:
    store = Store(consortium / "ledger.db")
    key = seal_key(store)
    assert key is not None
    body = encode([3, bytes(32), bytes(32), bytes(32), 4, 9])
    tag = sealing.hmac.new(key, b"sharechain/store-seal/v1" + body, hashlib.sha256).digest()
    store.set_meta("seal", encode([body, tag]))
    store.close()
    with Embedded(consortium) as emb:
        seal = read_seal(emb.store, key)
        assert seal is not None and seal.state_digest == state_digest(emb.store, key)


CHILD = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from sharechain.contracts.notary import RECORD
    from sharechain.ledger import seal
    from sharechain.sharing.embedded import Embedded

    def die(*args):  # the block's rows are written; its seal is not
        os.kill(os.getpid(), 9)

    emb = Embedded(Path(sys.argv[1]))
    seal._write = die
    emb.submit("hospital-a", RECORD, {"digest": os.urandom(32)})
    """
)


def test_a_process_killed_between_a_blocks_writes_and_its_seal_leaves_a_sealed_store(
    consortium: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = Store(consortium / "ledger.db").head()
    child = subprocess.run([sys.executable, "-c", CHILD, str(consortium)], timeout=60)
    assert child.returncode == -9
    # Opening must find the seal and the head in step: no full verification.
    monkeypatch.setattr(embedded, "verify_ledger", None)
    with Embedded(consortium) as emb:
        assert emb.store.head() == before
        key = seal_key(emb.store)
        assert key is not None
        seal = read_seal(emb.store, key)
        assert seal is not None and seal.state_digest == state_digest(emb.store, key)
        receipt = emb.submit("hospital-a", notary.RECORD, {"digest": bytes(32)})
        assert receipt.height == before.height + 1  # type: ignore[union-attr]


def test_chain_verify_reports_a_damaged_seal_key_instead_of_raising(consortium: Path) -> None:
    (consortium / "ledger.seal-key").write_bytes(b"short")
    with Embedded(consortium, check_store=False) as emb:
        report = verify_ledger(emb.store, emb.registry)
    assert not report.ok and "is damaged (not 32 bytes)" in report.reason
