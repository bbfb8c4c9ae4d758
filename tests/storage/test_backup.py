"""Backups taken while the chain grows, restores, and every refusal of a bad restore."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import pytest
from typer.testing import CliRunner

from sharechain.api.client import NodeClient
from sharechain.cli.main import app
from sharechain.errors import ConfigError
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import sign_transaction
from sharechain.node.launcher import node_data_dir
from sharechain.node.server import ServerThread
from sharechain.node.service import Node, NodeConfig
from sharechain.sharing.embedded import Embedded
from sharechain.storage.backup import MANIFEST, RestoreRefusedError, backup, read_manifest, restore
from sharechain.storage.blobs import BlobStore
from sharechain.storage.datadir import DataDir, OrgSpec, init_consortium
from sharechain.storage.vault import Vault

ORGS = (
    OrgSpec("hospital-a", ("member", "admin")),
    OrgSpec("bank-b", ("member", "admin")),
    OrgSpec("regulator", ("member", "supervisor", "admin")),
)
BLOB = b"ciphertext" * 100
runner = CliRunner()


def cli(*args: str | Path, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout if code == 0 else " ".join(result.stderr.split())


def _record(emb: Embedded, n: int) -> None:
    emb.submit("hospital-a", "notary.record", {"digest": hashlib.sha256(b"%d" % n).digest()})


def _head(path: Path) -> tuple[int, bytes, bytes]:
    store = Store(path / "ledger.db")
    try:
        head = store.head()
        assert head is not None
        return head.height, head.hash, head.state_root
    finally:
        store.close()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """An embedded consortium with a few blocks, a blob and a vault entry."""
    d = tmp_path / "data"
    init_consortium(d, ORGS, consortium="test")
    with Embedded(d) as emb:
        for n in range(3):
            _record(emb, n)
        Vault(d, emb.keys("hospital-a")).put("ds-1", 1, "key", b"k" * 32)
    BlobStore(d / "blobs").put_bytes(BLOB)
    return d


@pytest.fixture
def archive(data: Path, tmp_path: Path) -> Path:
    out = tmp_path / "backup.tar"
    backup(data, out)
    return out


def test_backup_while_a_writer_commits_then_restore_verifies(data: Path, tmp_path: Path) -> None:
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        with Embedded(data) as emb:
            n = 100
            while not stop.is_set():
                _record(emb, n)
                written.append(n)
                n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 5:
            time.sleep(0.01)
        out = tmp_path / "backup.tar"
        summary = json.loads(cli("node", "backup", "--out", out, "-d", data, "--json"))
        while len(written) < summary["height"] + 3:  # the writer goes on after the backup
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join()
    info = read_manifest(out)
    assert summary["height"] == info.head.height >= 3 + 5
    assert info.settled  # the embedded writer waits for the data directory's lock
    assert _head(data)[0] > info.head.height
    assert not list(tmp_path.glob(".backup.tar.*"))  # the temporary file was renamed

    restored = tmp_path / "restored"
    done = json.loads(cli("node", "restore", out, "--data-dir", restored, "--json"))
    assert done["height"] == info.head.height
    assert _head(restored) == (info.head.height, info.head.hash, info.head.state_root)
    verified = "".join(cli("chain", "verify", "-d", restored).split())
    assert f"chainintact:{info.head.height + 1}blocks" in verified
    assert info.head.state_root.hex() in verified
    with Embedded(restored) as emb:  # the restored directory works as the original did
        assert Vault(restored, emb.keys("hospital-a")).get("ds-1", 1, "key") == b"k" * 32
        _record(emb, 10_000)
    assert BlobStore(restored / "blobs").read_bytes(hashlib.sha256(BLOB).hexdigest()) == BLOB
    assert {f.path for f in info.files} >= {
        "ledger.db",
        "consortium.json",
        "genesis.cbor",
        "keys/hospital-a.key",
        f"blobs/{hashlib.sha256(BLOB).hexdigest()[:2]}/{hashlib.sha256(BLOB).hexdigest()[2:]}",
    }
    assert not any(f.path.endswith(("-wal", "-shm", "lock")) for f in info.files)


def test_backup_refuses_to_overwrite(data: Path, archive: Path) -> None:
    before = archive.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        backup(data, archive)
    assert archive.read_bytes() == before


def test_a_file_removed_during_the_backup_is_left_out(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sharechain.storage import backup as module

    listed = module._data_files

    def listing_then_shred(root: Path, *, skip_dir: Path) -> Iterator[PurePosixPath]:
        names = list(listed(root, skip_dir=skip_dir))
        vault = [n for n in names if n.parts[0] == "vault"]
        assert vault
        (root / vault[0]).unlink()  # a purge shreds it between listing and copying
        yield from names

    monkeypatch.setattr(module, "_data_files", listing_then_shred)
    info = backup(data, tmp_path / "b.tar")
    assert not any(f.path.startswith("vault/") for f in info.files)
    restore(tmp_path / "b.tar", tmp_path / "restored")
    assert not (tmp_path / "restored" / "vault" / "hospital-a" / "ds-1").exists()


def test_backup_of_a_directory_without_a_ledger(tmp_path: Path) -> None:
    init_consortium(tmp_path / "fresh", ORGS)
    with pytest.raises(ConfigError, match="no ledger"):
        backup(tmp_path / "fresh", tmp_path / "b.tar")
    assert not (tmp_path / "b.tar").exists()


def _rewrite(
    archive: Path,
    dest: Path,
    change: Callable[[str, bytes], bytes | None],
    extra: tuple[tuple[str, bytes], ...] = (),
) -> Path:
    """A copy of `archive` with each member's bytes passed through `change` (None drops it)."""
    with tarfile.open(archive) as src, tarfile.open(dest, "w") as out:
        for member in src:
            f = src.extractfile(member)
            assert f is not None
            data = change(member.name, f.read())
            if data is None:
                continue
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
        for name, data in extra:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return dest


def _manifest_edit(edit: Callable[[dict[str, object]], None]) -> Callable[[str, bytes], bytes]:
    def change(name: str, data: bytes) -> bytes:
        if name != MANIFEST:
            return data
        body = json.loads(data)
        edit(body)
        return json.dumps(body).encode()

    return change


def _refused(archive: Path, target: Path, reason: str, **options: object) -> str:
    with pytest.raises(RestoreRefusedError) as caught:
        restore(archive, target, **options)  # type: ignore[arg-type]
    assert caught.value.reason == reason
    assert not target.exists() or not any(target.iterdir()) or target.name == "busy"
    assert not list(target.parent.glob(f".{target.name}.restore-*"))  # staging removed
    return str(caught.value)


def test_restore_refuses_a_non_empty_target(archive: Path, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "ledger.db").write_bytes(b"precious")
    assert "not an empty directory" in _refused(archive, busy, "not_empty")
    assert (busy / "ledger.db").read_bytes() == b"precious"
    assert sorted(p.name for p in busy.iterdir()) == ["ledger.db"]
    message = cli("node", "restore", archive, "--data-dir", busy, code=2)
    assert "restore refused (not_empty)" in message


def test_restore_refuses_another_consortium(data: Path, archive: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    init_consortium(other, ORGS, consortium="other")
    message = _refused(
        archive,
        tmp_path / "t",
        "other_consortium",
        expected_genesis=DataDir.open(other).genesis_hash,
    )
    assert "consortium 'test'" in message
    genesis = DataDir.open(data).genesis_hash.hex()
    cli("node", "restore", archive, "-d", tmp_path / "ok", "--genesis-hash", genesis)
    assert (tmp_path / "ok" / "ledger.db").exists()
    # consortium.json of another chain inside the archive, the manifest unchanged
    swapped = _rewrite(
        archive,
        tmp_path / "swapped.tar",
        lambda name, b: (
            (other / "consortium.json").read_bytes() if name == "consortium.json" else b
        ),
    )
    _refused(swapped, tmp_path / "t2", "digest_mismatch")


def test_restore_refuses_a_tampered_file(archive: Path, tmp_path: Path) -> None:
    def flip(name: str, data: bytes) -> bytes:
        if name.startswith("blobs/"):
            return data[:-1] + bytes([data[-1] ^ 1])
        return data

    message = _refused(
        _rewrite(archive, tmp_path / "bad.tar", flip), tmp_path / "t", "digest_mismatch"
    )
    assert "blobs/" in message and "damaged" in message


def test_restore_refuses_missing_and_unlisted_files(archive: Path, tmp_path: Path) -> None:
    dropped = _rewrite(
        archive, tmp_path / "dropped.tar", lambda n, b: None if n.startswith("keys/") else b
    )
    assert "missing" in _refused(dropped, tmp_path / "t1", "digest_mismatch")
    extra = _rewrite(archive, tmp_path / "extra.tar", lambda n, b: b, (("keys/evil.key", b"x"),))
    assert "not in its manifest" in _refused(extra, tmp_path / "t2", "bad_archive")
    unsafe = _rewrite(archive, tmp_path / "unsafe.tar", lambda n, b: b, (("../escape", b"x"),))
    assert "unsafe path" in _refused(unsafe, tmp_path / "t3", "bad_archive")
    assert not (tmp_path / "escape").exists()


def test_restore_refuses_what_is_not_a_backup(tmp_path: Path, archive: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar file" * 100)
    assert "not a sharechain backup" in _refused(junk, tmp_path / "t1", "bad_archive")
    bare = _rewrite(archive, tmp_path / "bare.tar", lambda n, b: None if n == MANIFEST else b)
    assert f"no {MANIFEST}" in _refused(bare, tmp_path / "t2", "bad_archive")
    future = _rewrite(archive, tmp_path / "f.tar", _manifest_edit(lambda m: m.update(format="x/9")))
    assert "format" in _refused(future, tmp_path / "t3", "bad_archive")
    with pytest.raises(ConfigError, match="no backup file"):
        restore(tmp_path / "absent.tar", tmp_path / "t4")


def test_restore_refuses_a_head_that_is_not_the_manifests(archive: Path, tmp_path: Path) -> None:
    def older(m: dict[str, object]) -> None:
        head = m["head"]
        assert isinstance(head, dict)
        head["height"] = int(head["height"]) - 1

    message = _refused(
        _rewrite(archive, tmp_path / "h.tar", _manifest_edit(older)),
        tmp_path / "t",
        "head_mismatch",
    )
    assert "is not the manifest's" in message


def test_restore_refuses_a_ledger_that_fails_verification(data: Path, tmp_path: Path) -> None:
    # A row changed in the live ledger is copied faithfully (digests match); the
    # restore's re-verification catches it.
    db = sqlite3.connect(data / "ledger.db")
    db.execute("UPDATE state SET value = x'00' WHERE rowid = (SELECT min(rowid) FROM state)")
    db.commit()
    db.close()
    out = tmp_path / "b.tar"
    backup(data, out)
    assert "fails verification" in _refused(out, tmp_path / "t", "head_mismatch")
    restore(out, tmp_path / "unchecked", verify=False)  # the head alone still matches
    assert _head(tmp_path / "unchecked") == _head(data)


# -- a running node: backed up, left behind, restored, caught up -------------------------


def _node(data_dir: Path, org: str, **options: object) -> tuple[Node, ServerThread]:
    node = Node(NodeConfig(data_dir=data_dir, org=org, **options))  # type: ignore[arg-type]
    node.start()
    return node, ServerThread(node).start()


def _stop(running: tuple[Node, ServerThread]) -> None:
    running[1].stop()
    running[0].stop()


def _wait(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_node_restored_from_an_old_backup_catches_up(tmp_path: Path) -> None:
    source = tmp_path / "consortium"
    init_consortium(source, ORGS, consortium="test")
    dirs = {o.id: node_data_dir(source, tmp_path / "nodes" / o.id, o.id) for o in ORGS[:2]}
    key = DataDir.open(source).keys("hospital-a").signing

    def records(first: int, n: int) -> list[bytes]:
        return [
            sign_transaction(
                key, "notary.record", "hospital-a", {"digest": (first + i).to_bytes(32, "big")}
            ).raw
            for i in range(n)
        ]

    orderer = _node(dirs["hospital-a"], "hospital-a", max_wait=0.005)
    follower_dir = dirs["bank-b"]
    follower = _node(
        follower_dir, "bank-b", orderer_url=orderer[1].url, peers=(("hospital-a", orderer[1].url),)
    )
    try:
        with NodeClient(orderer[1].url, "hospital-a", key, timeout=20.0) as client:
            for i in range(5):
                client.submit(records(i * 20, 20))
            out = tmp_path / "bank-b.tar"
            info = backup(follower_dir, out)  # while the follower runs and follows
            for i in range(5, 10):
                client.submit(records(i * 20, 20))
        _stop(follower)
        target = tmp_path / "restored"
        restore(out, target)
        follower = _node(
            target, "bank-b", orderer_url=orderer[1].url, peers=(("hospital-a", orderer[1].url),)
        )
        head = orderer[0].store.head()
        assert head is not None and head.height > info.head.height
        _wait(lambda: follower[0].store.head() == orderer[0].store.head())
        restored = follower[0].store.head()
        assert restored is not None and restored.state_root == head.state_root
    finally:
        _stop(follower)
        _stop(orderer)
