"""Per-organisation vaults and inboxes: wrapped at rest, bound to their slot, destroyable."""

from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path

import pytest

from sharechain.crypto.keyfile import OrgKeys
from sharechain.errors import DecryptionError, NotFoundError
from sharechain.storage.vault import Inbox, Vault, watch

DS = "ab" * 32


@pytest.fixture
def keys() -> tuple[OrgKeys, OrgKeys]:
    return OrgKeys.generate("hospital-a"), OrgKeys.generate("regulator")


def test_a_secret_round_trips_and_the_file_alone_reveals_nothing(
    tmp_path: Path, keys: tuple[OrgKeys, OrgKeys]
) -> None:
    secret = bytes(range(32))
    v = Vault(tmp_path, keys[0])
    v.put(DS, 1, "key", secret)
    assert v.get(DS, 1, "key") == secret
    (path,) = (tmp_path / "vault" / "hospital-a").rglob("*.key")
    assert secret not in path.read_bytes()
    assert path.stat().st_mode & 0o077 == 0
    assert v.entries() == [(DS, 1, "key")]


def test_an_entry_moved_to_another_slot_or_organisation_does_not_open(
    tmp_path: Path, keys: tuple[OrgKeys, OrgKeys]
) -> None:
    mine, other = Vault(tmp_path, keys[0]), Vault(tmp_path, keys[1])
    mine.put(DS, 1, "key", b"k" * 32)
    src = tmp_path / "vault" / "hospital-a" / DS / "000000000001.key"
    moved = tmp_path / "vault" / "hospital-a" / DS / "000000000002.key"
    shutil.copy(src, moved)
    with pytest.raises(DecryptionError):
        mine.get(DS, 2, "key")
    (tmp_path / "vault" / "regulator" / DS).mkdir(parents=True)
    shutil.copy(src, tmp_path / "vault" / "regulator" / DS / "000000000001.key")
    with pytest.raises(DecryptionError):
        other.get(DS, 1, "key")


def test_destroy_removes_one_epoch_or_all_and_missing_entries_say_why(
    tmp_path: Path, keys: tuple[OrgKeys, OrgKeys]
) -> None:
    v = Vault(tmp_path, keys[0])
    v.put(DS, 1, "key", b"a" * 32)
    v.put(DS, 2, "key", b"b" * 32)
    v.put(DS, 2, "share", b"c" * 67)
    assert v.destroy(DS, 1) == 1
    assert not v.has(DS, 1, "key") and v.has(DS, 2, "key")
    assert v.destroy(DS) == 2
    assert v.entries() == []
    with pytest.raises(NotFoundError, match="purge or rotation"):
        v.get(DS, 2, "key")


def test_watch_records_each_access_by_organisation_without_the_secret(
    tmp_path: Path, keys: tuple[OrgKeys, OrgKeys]
) -> None:
    secret = b"s" * 32
    with watch() as seen:
        v = Vault(tmp_path, keys[1])
        v.put(DS, 3, "share", secret)
        v.get(DS, 3, "share")
        Inbox(tmp_path, "insurer").deliver(DS, 3, "g" * 64, "s1", "regulator", b"wrapped")
    assert [(a.org, a.operation, a.kind) for a in seen] == [
        ("regulator", "put", "share"),
        ("regulator", "get", "share"),
        ("insurer", "deliver", "wrapped"),
    ]
    assert seen[0].material_sha256 == hashlib.sha256(secret).digest()
    with watch() as later:
        pass
    assert later == []


def test_inbox_collects_what_was_delivered_and_clears(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path, "insurer")
    inbox.deliver(DS, 1, "g" * 64, "s1", "hospital-a", b"w1")
    assert inbox.collect(DS, 1, "g" * 64, "s1", "hospital-a") == b"w1"
    assert inbox.datasets() == [DS]
    inbox.clear(DS)
    with pytest.raises(NotFoundError, match="no key release from hospital-a"):
        inbox.collect(DS, 1, "g" * 64, "s1", "hospital-a")


def test_entries_read_while_datasets_are_destroyed_never_fail(
    tmp_path: Path, keys: tuple[OrgKeys, OrgKeys]
) -> None:
    # A node's commit hook and an owner's request shred at once: a directory scan that
    # met a dataset directory the other had just removed raised FileNotFoundError (500).
    v = Vault(tmp_path, keys[0])
    datasets = [f"{i:064x}" for i in range(150)]
    for ds in datasets:
        for epoch in (1, 2):
            v.put(ds, epoch, "key", bytes(32))
    failures: list[BaseException] = []
    destroyed: list[int] = []

    def read() -> None:
        try:
            while len(destroyed) < 2 * len(datasets) and v.entries():
                pass
        except OSError as exc:
            failures.append(exc)

    def destroy() -> None:
        destroyed.extend(v.destroy(ds) for ds in datasets)

    threads = [threading.Thread(target=read), *(threading.Thread(target=destroy) for _ in "ab")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    assert sum(destroyed) == 2 * len(datasets)  # each entry counted by one of the two
    assert v.entries() == []
