"""The seal's state digest is the same whether the C extension or Python sums it.

Opening an embedded store recomputes the digest from every state row; the
C extension (`_sha256x.hmac_sum`) does it where it is built, the Python
reference (`_RowMac.python_sum`) elsewhere. Both must give the digest the
format defines, so a store sealed by one opens under the other and stores
sealed before the extension summed it still open.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharechain.crypto import digests
from sharechain.ledger import seal as sealing
from sharechain.ledger.seal import StateSealer, read_seal, reseal, state_digest
from sharechain.ledger.store import Store

KEY = bytes(range(32))
PATHS = ["extension", "python"] if sealing._FAST is not None else ["python"]


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setattr(sealing, "_FAST", None)
    return str(request.param)


def reference_digest(store: Store, key: bytes) -> bytes:
    """The format's definition, written out with the hmac module."""
    mac_key = hmac.digest(key, b"sharechain/state-digest/v1", "sha256")
    total = 0
    for table in ("state", "state_idx"):
        for k, v in store._db.execute(f"SELECT key, value FROM {table}"):
            kb = k.encode()
            message = table.encode() + b"\x00" + len(kb).to_bytes(4, "big") + kb + v
            total += int.from_bytes(hmac.digest(mac_key, message, "sha256"), "little")
    return (total % (1 << 256)).to_bytes(32, "little")


def _fill(store: Store, state: dict[str, bytes], index: dict[str, bytes]) -> None:
    with store._lock:
        store._db.executemany("INSERT INTO state(key, value) VALUES (?, ?)", state.items())
        store._db.executemany("INSERT INTO state_idx VALUES (?, ?)", index.items())


def test_the_extension_sums_where_it_is_built() -> None:
    # A build that lost `hmac_sum` would silently fall back to the 20x slower path.
    if digests.ACCELERATED:
        assert sealing._FAST is not None


def test_a_fixed_store_has_the_digest_the_format_had_before_the_extension(path: str) -> None:
    # Computed with the pure-Python state_digest before `hmac_sum` existed.
    store = Store(":memory:", durable=False)
    _fill(
        store,
        {"dataset/é✓": b"\x00" * 300, "org/a": b"", "grant/x": bytes(range(256)) * 5},
        {"idx/k/ü": b"\x01", "idx/" + "z" * 200: b""},
    )
    want = "ab6f91888c95940753d2f3d366adf10fc982fec00acf955f0fa7981fdaf9e8d8"
    assert state_digest(store, KEY).hex() == want
    assert reference_digest(store, KEY).hex() == want


# No lone surrogates: SQLite cannot store them, nor can the ledger's keys hold them.
_keys = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)
_values = st.binary(max_size=200)


@settings(max_examples=40, deadline=None)
@given(
    state=st.dictionaries(_keys.map(lambda k: "s/" + k), _values, max_size=20),
    index=st.dictionaries(_keys.map(lambda k: "idx/" + k), _values, max_size=20),
    key=st.binary(min_size=32, max_size=32),
)
def test_random_states_digest_alike_on_both_paths_and_by_the_definition(
    state: dict[str, bytes], index: dict[str, bytes], key: bytes
) -> None:
    store = Store(":memory:", durable=False)
    _fill(store, state, index)
    want = reference_digest(store, key)
    assert state_digest(store, key) == want
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sealing, "_FAST", None)
        assert state_digest(store, key) == want
    store.close()


def _commit(store: Store, height: int, writes: dict[str, bytes | None]) -> None:
    tx = hashlib.sha256(b"%d" % height).digest()
    store.commit_block(
        height=height,
        block_hash=hashlib.sha256(tx).digest(),
        state_root=bytes(32),
        timestamp=height,
        data=b"",
        txs=[(tx, 0, "t", "o", "valid")],
        writes=writes,
        history=[(k, 0, tx) for k in writes],
    )


def test_a_seal_moved_on_one_path_recomputes_on_the_other(path: str) -> None:
    store = Store(":memory:", durable=False)
    store.sealer = StateSealer(KEY)  # built under the fixture's path
    _commit(store, 0, {"k/é": b"v", "idx/a/✓": b"\x01", "k/empty": b""})
    _commit(store, 1, {"k/é": b"w" * 500, "idx/a/✓": None, "idx/b": b""})
    seal = read_seal(store, KEY)
    assert seal is not None
    assert seal.state_digest == reference_digest(store, KEY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sealing, "_FAST", None)
        assert state_digest(store, KEY) == seal.state_digest
    assert reseal(store, KEY) == seal
