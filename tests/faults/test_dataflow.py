"""The plaintext scan behind ``no_plaintext_at_non_grantee``: it finds a copy of a
plaintext, or a piece of 63 bytes of one, wherever it lies (a longer file, a
SQLite page, at any offset), skips the files allowed to hold it, and finds nothing
in the sealed form."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sharechain.crypto.keyfile import OrgKeys
from sharechain.crypto.stream import encrypt_stream
from sharechain.faults.dataflow import PLAINTEXT_BYTES, key_found, plaintext_found
from sharechain.storage.vault import Vault


def test_the_scan_finds_copies_and_only_copies(tmp_path: Path) -> None:
    plaintext = os.urandom(PLAINTEXT_BYTES)
    source = tmp_path / "owner" / "source"
    source.parent.mkdir()
    source.write_bytes(plaintext)
    # A copy in the middle of a longer file, a piece of one inside a SQLite page.
    (tmp_path / "node-a").mkdir()
    (tmp_path / "node-a" / "log").write_bytes(os.urandom(1000) + plaintext + os.urandom(1000))
    with sqlite3.connect(tmp_path / "node-a" / "ledger.db") as db:
        db.execute("CREATE TABLE t (v BLOB)")
        db.execute("INSERT INTO t VALUES (?)", (plaintext[20_000:21_100],))
    db.close()
    # What may lie anywhere: unrelated bytes, an empty file, the sealed payload.
    (tmp_path / "node-b").mkdir()
    (tmp_path / "node-b" / "other").write_bytes(os.urandom(PLAINTEXT_BYTES))
    (tmp_path / "node-b" / "empty").write_bytes(b"")
    sealed = tmp_path / "node-b" / "blob"
    with source.open("rb") as src, sealed.open("wb") as dst:
        encrypt_stream(os.urandom(32), src, dst, epoch=1)

    # The shortest piece found wherever it starts: 63 bytes at each offset of a window.
    pieces = tmp_path / "node-c"
    pieces.mkdir()
    for shift in range(32):
        (pieces / f"piece-{shift:02}").write_bytes(
            os.urandom(100 + shift) + plaintext[777 : 777 + 63] + os.urandom(50)
        )
    found = plaintext_found(tmp_path, [os.urandom(64), plaintext], [source])
    assert found == [
        tmp_path / "node-a" / "ledger.db",
        tmp_path / "node-a" / "log",
        *sorted(pieces.iterdir()),
    ]
    assert source in plaintext_found(tmp_path, [plaintext], [])  # skipped only when allowed


def test_the_key_scan_finds_a_data_key_in_the_clear_and_not_in_a_vault(tmp_path: Path) -> None:
    key, other = os.urandom(32), os.urandom(32)
    owner = OrgKeys.generate("hospital-a")
    Vault(tmp_path / "node", owner).put("ds-1", 1, "key", key)  # kept wrapped
    (tmp_path / "client").mkdir()
    (tmp_path / "client" / "cache").write_bytes(os.urandom(100) + key + os.urandom(100))
    (tmp_path / "client" / "elsewhere").write_bytes(other[:16])  # half a key: no
    assert key_found(tmp_path, [key, other]) == [tmp_path / "client" / "cache"]
    assert Vault(tmp_path / "node", owner).get("ds-1", 1, "key") == key
    assert key_found(tmp_path, []) == []
