"""A state row retyped in the SQLite file is refused when the store is opened.

Attack surface: SQLite stores any type in any column. An editor can turn a
state key into a blob with the same bytes (no lookup by text finds it: the row
is deleted in effect, say a revocation marker) or a value into text or a
number. The seal's digest hashes bytes, so a retyped row with unchanged bytes
would keep the digest. Defence: `state_digest` reads keys only when their type
is text and values only as bytes; any other type refuses the store with the
error naming `node repair`, on the C path and on the Python fallback alike.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sharechain.errors import ChainError
from sharechain.ledger import seal as sealing
from sharechain.ledger.seal import StateSealer, check_sealed, read_seal
from sharechain.ledger.store import Store

KEY = bytes(range(32))


@pytest.fixture(params=["extension", "python"] if sealing._FAST is not None else ["python"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setattr(sealing, "_FAST", None)
    return str(request.param)


def _commit(store: Store, writes: dict[str, bytes | None]) -> None:
    tx = hashlib.sha256(b"0").digest()
    store.commit_block(
        height=0,
        block_hash=hashlib.sha256(tx).digest(),
        state_root=bytes(32),
        timestamp=0,
        data=b"",
        txs=[(tx, 0, "t", "o", "valid")],
        writes=writes,
        history=[(k, 0, tx) for k in writes],
    )


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        ("UPDATE state SET value=CAST('v' AS TEXT) WHERE key='k/1'", "not a text key"),
        ("UPDATE state SET value=42 WHERE key='k/1'", "not a text key"),
        ("UPDATE state SET value=4.5 WHERE key='k/1'", "not a text key"),
        ("UPDATE state_idx SET key=CAST('idx/x' AS BLOB)", "not a text key"),
        ("UPDATE state SET value=X'' WHERE key='k/1'", "world state differs"),
    ],
)
def test_a_row_edited_to_another_type_is_refused_with_the_clear_error(
    path: str, edit: str, error: str, tmp_path: Path
) -> None:
    # SQLite lets an editor store text or a number where bytes were, even with
    # the same bytes ('v' for b'v'): the open refuses the store, it does not
    # crash on the unexpected type nor believe the row.
    store = Store(tmp_path / "l.db")
    store.sealer = StateSealer(KEY)
    _commit(store, {"k/1": b"v", "idx/x": b"\x01"})
    seal = read_seal(store, KEY)
    assert seal is not None
    with store._lock:
        store._db.execute(edit)
    with pytest.raises(ChainError, match=f"does not match its chain: .*{error}.*node repair"):
        check_sealed(store, seal, KEY)
    store.close()
