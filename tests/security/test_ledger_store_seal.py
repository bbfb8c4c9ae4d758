"""An embedded store edited outside sharechain is refused when opened, before any read.

Attack: someone who can write the SQLite file (not the keys) edits a row,
for instance a grant or an organisation's key, so that a fetch succeeds that
the chain never granted. Defence: every commit seals the store (HMAC under a
key outside the file, over the head and a digest of the whole state); every
open checks the seal, the newest blocks and the head's signature first.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from sharechain.codec import decode, encode
from sharechain.contracts import notary
from sharechain.errors import ChainError, ConfigError
from sharechain.ledger.seal import RECENT
from sharechain.ledger.verify import verify_ledger
from sharechain.sharing.embedded import Embedded
from sharechain.storage.datadir import OrgSpec, init_consortium

ORGS = (OrgSpec("hospital-a", ("member", "admin")), OrgSpec("regulator", ("supervisor",)))


@pytest.fixture
def consortium(tmp_path: Path) -> Path:
    path = tmp_path / "c"
    init_consortium(path, ORGS, consortium="test")
    with Embedded(path) as emb:
        for i in range(3):
            emb.submit("hospital-a", notary.RECORD, {"digest": hashlib.sha256(b"%d" % i).digest()})
    return path


def _edit(path: Path, sql: str, *args: object) -> None:
    db = sqlite3.connect(path / "ledger.db")
    db.execute(sql, args)
    db.commit()
    db.close()


def test_an_untouched_store_opens(consortium: Path) -> None:
    with Embedded(consortium) as emb:
        assert emb.store.head() is not None


@pytest.mark.parametrize(
    ("sql", "args"),
    [
        ("UPDATE state SET value=? WHERE key LIKE 'notary/%'", (encode({"forged": True}),)),
        ("INSERT INTO state (key, value) VALUES (?, ?)", ("grant/forged", encode({"ok": 1}))),
        ("DELETE FROM state WHERE key LIKE 'notary/%'", ()),
        ("INSERT INTO state_idx (key, value) VALUES (?, ?)", ("idx/grants-by-org/x/y", b"")),
        ("DELETE FROM history_recent WHERE key = (SELECT MIN(key) FROM history_recent)", ()),
        ("DELETE FROM history_recent WHERE height = (SELECT MAX(height) FROM history_recent)", ()),
        ("DELETE FROM txs_recent WHERE height = (SELECT MAX(height) FROM txs_recent)", ()),
        ("UPDATE blocks SET state_root=zeroblob(32) WHERE height=2", ()),
        ("DELETE FROM blocks WHERE height=(SELECT MAX(height) FROM blocks)", ()),
        ("UPDATE meta SET value=zeroblob(40) WHERE name='seal'", ()),
    ],
    ids=[
        "state-row",
        "state-insert",
        "state-delete",
        "index-row",
        "history-delete",
        "history-head",
        "txs-delete",
        "state-root",
        "head-block",
        "seal",
    ],
)
def test_an_edited_store_is_refused_on_open(
    consortium: Path, sql: str, args: tuple[object, ...]
) -> None:
    _edit(consortium, sql, *args)
    with pytest.raises(ChainError, match="sharechain node repair"):
        Embedded(consortium)


def test_an_edited_org_key_is_refused(consortium: Path) -> None:
    with Embedded(consortium) as emb:
        raw = emb.store.get("org/hospital-a")
    assert raw is not None
    record = decode(raw)
    record["sign_key"] = bytes(32)  # the attacker's key, in a well-formed record
    forged = encode(record)
    _edit(consortium, "UPDATE state SET value=? WHERE key='org/hospital-a'", forged)
    with pytest.raises(ChainError, match="world state differs"):
        Embedded(consortium)


def test_a_store_without_seal_is_verified_in_full_then_sealed(consortium: Path) -> None:
    _edit(consortium, "DELETE FROM meta WHERE name='seal'")
    with Embedded(consortium) as emb:
        assert emb.store.meta("seal") is not None
    # ...but a tampered store without its seal fails the full verification.
    _edit(consortium, "DELETE FROM meta WHERE name='seal'")
    _edit(consortium, "UPDATE state SET value=? WHERE key LIKE 'notary/%'", encode({"x": 1}))
    with pytest.raises(ChainError, match="sharechain node repair"):
        Embedded(consortium)


def test_a_rewritten_old_block_within_the_recent_window_is_refused(consortium: Path) -> None:
    assert RECENT >= 2
    _edit(consortium, "UPDATE blocks SET hash=zeroblob(32) WHERE height=1")
    with pytest.raises(ChainError, match="block 1 does not hash"):
        Embedded(consortium)


def test_verification_tools_open_a_tampered_store_read_only(consortium: Path) -> None:
    _edit(consortium, "UPDATE blocks SET hash=zeroblob(32) WHERE height=2")
    with Embedded(consortium, check_store=False) as emb:
        report = verify_ledger(emb.store, emb.registry, genesis_hash=emb.datadir.genesis_hash)
        assert not report.ok and report.bad_height == 2
        with pytest.raises(ConfigError, match="opened without checking"):
            emb.submit("hospital-a", notary.RECORD, {"digest": bytes(32)})
