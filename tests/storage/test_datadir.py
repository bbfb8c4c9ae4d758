"""The data directory keeps the founders' signed genesis note, which seals every export."""

from __future__ import annotations

from pathlib import Path

import pytest

from sharechain.errors import ConfigError
from sharechain.ledger.blocks import decode_block
from sharechain.ledger.checkpoints import origin_for, verify_checkpoint
from sharechain.ledger.export_seal import founders_roster
from sharechain.ledger.transactions import decode_transaction
from sharechain.storage.datadir import GENESIS_NOTE, DataDir, OrgSpec, init_consortium

ORGS = (OrgSpec("bank-a", ("member", "admin")), OrgSpec("regulator", ("member", "supervisor")))


def test_init_signs_the_genesis_with_every_founder(tmp_path: Path) -> None:
    dd = init_consortium(tmp_path / "c", ORGS)
    genesis = decode_block(dd.genesis_bytes())
    payload = decode_transaction(genesis.txs[0]).tx.payload
    cp = verify_checkpoint(
        dd.genesis_note(), founders_roster(payload), origin=origin_for(dd.genesis_hash)
    )
    assert cp.size == 1
    note = dd.genesis_note()
    assert note.count("\u2014 bank-a/") == 1 and note.count("\u2014 regulator/") == 1


def test_a_missing_genesis_note_says_where_to_get_it(tmp_path: Path) -> None:
    init_consortium(tmp_path / "c", ORGS)
    (tmp_path / "c" / GENESIS_NOTE).unlink()
    with pytest.raises(ConfigError, match="copy it from the consortium's directory"):
        DataDir.open(tmp_path / "c").genesis_note()
