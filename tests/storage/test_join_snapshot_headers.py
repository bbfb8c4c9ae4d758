"""A snapshot cuts each block's header and signature out of the stored block without
decoding its transactions: the same bytes a full decode gives, whatever the sizes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sharechain.codec import encode
from sharechain.contracts import notary
from sharechain.errors import EncodingError
from sharechain.ledger.blocks import decode_block
from sharechain.sharing.embedded import Embedded
from sharechain.storage.datadir import DataDir, OrgSpec, init_consortium
from sharechain.storage.snapshot import _header_parts, load_snapshot, write_snapshot

ORGS = (OrgSpec("hospital-a", ("member", "admin")), OrgSpec("regulator", ("supervisor",)))


def test_header_parts_match_a_full_decode_and_the_snapshot_loads(tmp_path: Path) -> None:
    init_consortium(tmp_path / "c", ORGS, consortium="test")
    with Embedded(tmp_path / "c") as emb:
        # Blocks of 1, 30 and 300 transactions (array heads of 1, 2 and 3 bytes), and
        # a transaction of 70 kB (a byte-string head of 5 bytes).
        for count in (1, 30, 300):
            raws = [
                emb.sign("hospital-a", notary.RECORD, {"digest": i.to_bytes(32, "big")}).raw
                for i in range(count)
            ]
            emb.submit_raw(raws, orderer="hospital-a")
        big = emb.sign("hospital-a", notary.RECORD, {"digest": bytes(32), "note": "x" * 70_000}).raw
        emb.submit_raw([big], orderer="hospital-a")
        emb.submit("hospital-a", notary.RECORD, {"digest": b"\x01" * 32})
    dd = DataDir.open(tmp_path / "c")
    db = sqlite3.connect(dd.db_path, isolation_level=None)
    blocks = [bytes(d) for (d,) in db.execute("SELECT data FROM blocks ORDER BY height")]
    assert len(blocks) == 6 and max(map(len, blocks)) > 65_536
    for data in blocks:
        block = decode_block(data)
        assert _header_parts(data) == [block.header.encoded(), block.signature]
    # A value of another shape is decoded whole (and still gives the header).
    odd = encode({"header": 1})
    with pytest.raises(EncodingError, match="block must be a map"):
        _header_parts(odd)
    db.execute("BEGIN")
    info = write_snapshot(db, tmp_path / "s.snap", dd.genesis_hash)
    db.execute("ROLLBACK")
    db.close()
    loaded = load_snapshot(tmp_path / "s.snap", tmp_path / "new.db", dd.genesis_bytes())
    assert loaded == info and info.height == 5
