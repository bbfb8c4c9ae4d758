"""Backups of a data directory taken while a node or a command writes to it.

A backup is one tar file. It holds the ledger database as one consistent
snapshot (SQLite's online backup API, which copies the pages of a single read
transaction, so writers are never stopped and never seen half-way), and every
other file of the data directory as found just after the snapshot: the
consortium file, genesis, the organisation's key files, its vault and inbox,
its blobs. Its last member, ``MANIFEST.json``, names the consortium (the
genesis hash), the snapshot's head (height, block hash, state root) and the
SHA-256 and size of every file. The archive is written next to its final name
and renamed into place, so a crash leaves no partial backup under that name.

Order matters for the key material. The snapshot is taken first, the files
after it: a file added meanwhile belongs to a block after the snapshot's head
(a data key of a dataset registered later) and is kept, because that key
exists nowhere else; a file removed meanwhile was shredded by a purge, or
superseded by a key rotation, after the head, and a restored node replays
those blocks and removes it again. The embedded default takes the data
directory's lock to commit, and so does a backup: there the files are exactly
those of the head (``settled`` in the manifest says whether any block was
committed while the files were copied).

`restore` only ever writes into an empty (or absent) directory. It unpacks
into a staging directory beside it, checks every file against the manifest,
opens the restored ledger, checks that its head is the manifest's and
re-verifies the whole chain (`sharechain.ledger.chain.verify_chain`); only
then is the staging directory renamed into place. A refused restore raises
`RestoreRefusedError` with a reason code and leaves nothing behind.

A backup holds private keys and key material: protect it like the key files.
It also keeps what a later purge destroys on the node (crypto-shredding ends
where copies were made), so keep backups only as long as the consortium's
retention rules allow.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Final

from sharechain.contracts import default_registry
from sharechain.errors import ConfigError
from sharechain.ledger.chain import verify_chain
from sharechain.ledger.store import Head, Store
from sharechain.storage.backup_manifest import (
    FORMAT,
    MANIFEST,
    BackupInfo,
    FileEntry,
    RestoreRefusedError,
    manifest_bytes,
    parse_manifest,
)
from sharechain.storage.datadir import DataDir
from sharechain.storage.diskspace import PROBE_FILE, SPARE_FILE

__all__ = [
    "FORMAT",
    "MANIFEST",
    "BackupInfo",
    "FileEntry",
    "RestoreRefusedError",
    "backup",
    "read_manifest",
    "restore",
]

_CHUNK: Final = 1 << 20
_SKIPPED_NAMES: Final = frozenset({"lock", "shred-pending", MANIFEST, PROBE_FILE, SPARE_FILE})
"""Files that describe a running process, not the data (and the manifest's own name)."""
_SKIPPED_SUFFIXES: Final = ("-wal", "-shm", "-journal", ".tmp", ".part")


def backup(
    data_dir: Path,
    out: Path,
    *,
    now: Callable[[], float] = time.time,
) -> BackupInfo:
    """Write a consistent backup of `data_dir` to the new file `out`; returns its manifest."""
    dd = DataDir.open(data_dir)
    if out.exists():
        raise ConfigError(f"{out} already exists; choose another --out or remove it first")
    if not dd.db_path.exists():
        raise ConfigError(f"{dd.path} holds no ledger ({dd.db_path.name}); nothing to back up")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w") as tar:
            with _data_dir_lock(dd):
                info = _write_members(dd, tar, now)
            _add_bytes(tar, MANIFEST, manifest_bytes(info))
            tar.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return info


@contextlib.contextmanager
def _data_dir_lock(dd: DataDir) -> Iterator[None]:
    """The lock the embedded default commits under: files and snapshot then agree exactly."""
    fd = os.open(dd.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _write_members(dd: DataDir, tar: tarfile.TarFile, now: Callable[[], float]) -> BackupInfo:
    files: list[FileEntry] = []
    with tempfile.TemporaryDirectory(prefix=".backup-", dir=dd.path) as scratch:
        created = int(now() * 1000)
        databases = sorted(p.name for p in dd.path.glob("*.db") if p.is_file())
        heads: dict[str, Head | None] = {}
        for name in databases:
            copy = Path(scratch) / name
            _snapshot(dd.path / name, copy)
            files.append(_add_file(tar, name, copy))
            if name == dd.db_path.name:
                with contextlib.closing(Store(copy)) as store:
                    heads[name] = store.head()
        head = heads.get(dd.db_path.name)
        if head is None:
            raise ConfigError(f"{dd.db_path} holds no block yet; start the node once first")
        for rel in _data_files(dd.path, skip_dir=Path(scratch)):
            if rel.suffix == ".db" and rel.parent == PurePosixPath("."):
                continue
            try:
                files.append(_add_file(tar, rel.as_posix(), dd.path / rel))
            except FileNotFoundError:
                continue  # shredded or superseded after the snapshot: see the docstring
        with contextlib.closing(Store(dd.db_path)) as live:
            live_head = live.head()
    return BackupInfo(
        dd.consortium,
        dd.genesis_hash,
        head,
        created,
        settled=live_head == head,
        organisations=tuple(dd.held_orgs()),
        files=tuple(sorted(files, key=lambda f: f.path)),
    )


def _snapshot(source: Path, dest: Path) -> None:
    """Copy a live SQLite database in one read transaction (writers go on meanwhile)."""
    src = sqlite3.connect(source, timeout=30.0)
    try:
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)  # all pages in one step: a single consistent snapshot
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            dst.close()
    finally:
        src.close()


def _data_files(root: Path, *, skip_dir: Path) -> Iterator[PurePosixPath]:
    """Every regular file under `root` worth keeping, in a stable order."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if here / d != skip_dir and not d.startswith("."))
        for name in sorted(filenames):
            if name in _SKIPPED_NAMES or name.endswith(_SKIPPED_SUFFIXES) or ".quarantined" in name:
                continue
            path = here / name
            if path.is_file() and not path.is_symlink():
                yield PurePosixPath(path.relative_to(root).as_posix())


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> FileEntry:
    with path.open("rb") as f:
        # Files are replaced atomically (vault, config) or never changed (blobs): the
        # open descriptor keeps the content its size was taken from.
        size = os.fstat(f.fileno()).st_size
        hashing = _Hashing(f)
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o600, 0
        tar.addfile(info, hashing)
    return FileEntry(name, hashing.hash.hexdigest(), size)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, 0
    tar.addfile(info, io.BytesIO(data))


class _Hashing(io.RawIOBase):
    """A reader that hashes what passes through it."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        self.hash.update(data)
        return data


def read_manifest(archive: Path) -> BackupInfo:
    """The manifest of a backup file (nothing is unpacked)."""
    with _open_archive(archive) as tar:
        return _manifest_of(tar, archive)


@contextlib.contextmanager
def _open_archive(archive: Path) -> Iterator[tarfile.TarFile]:
    if not archive.is_file():
        raise ConfigError(f"no backup file {archive}")
    try:
        with tarfile.open(archive, mode="r:") as tar:
            yield tar
    except tarfile.TarError as exc:  # also a member cut short while it is read
        raise RestoreRefusedError(
            "bad_archive", f"{archive} is not a sharechain backup (not a tar file: {exc})"
        ) from None


def _manifest_of(tar: tarfile.TarFile, archive: Path) -> BackupInfo:
    try:
        member = tar.getmember(MANIFEST)
    except KeyError:
        raise RestoreRefusedError(
            "bad_archive", f"{archive} is not a sharechain backup (no {MANIFEST})"
        ) from None
    f = tar.extractfile(member)
    if f is None:
        raise RestoreRefusedError("bad_archive", f"{MANIFEST} in {archive} is not a file")
    return parse_manifest(f.read())


def restore(
    archive: Path,
    target: Path,
    *,
    expected_genesis: bytes | None = None,
    verify: bool = True,
) -> BackupInfo:
    """Restore `archive` into the empty or absent directory `target`; returns its manifest.

    `expected_genesis`: the hash of the consortium's block 0, when known; a backup of
    another chain is then refused. `verify=False` checks the head only and skips the
    re-verification of every block.
    """
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise RestoreRefusedError(
            "not_empty",
            f"{target} is not an empty directory; restore into a new or empty one "
            "(nothing was overwritten)",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.restore-", dir=target.parent))
    try:
        with _open_archive(archive) as tar:
            info = _manifest_of(tar, archive)
            if expected_genesis is not None and info.genesis_hash != expected_genesis:
                raise RestoreRefusedError(
                    "other_consortium",
                    f"{archive} is a backup of consortium {info.consortium!r} (genesis "
                    f"{info.genesis_hash.hex()[:16]}...), not of genesis "
                    f"{expected_genesis.hex()[:16]}...",
                )
            _unpack(tar, info, staging)
        _check_restored(staging, info, verify)
        # The restored node (or the next command) shreds what purges after the head
        # left behind: nodes do on every start, the embedded default when it sees this.
        DataDir.open(staging).shred_marker.touch()
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return info


def _safe_path(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or name != path.as_posix():
        raise RestoreRefusedError("bad_archive", f"unsafe path {name!r} in the backup")
    return path


def _unpack(tar: tarfile.TarFile, info: BackupInfo, dest: Path) -> None:
    listed = {f.path: f for f in info.files}
    seen: set[str] = set()
    for member in tar:
        if member.name == MANIFEST:
            continue
        rel = _safe_path(member.name)
        entry = listed.get(member.name)
        if entry is None or not member.isfile() or member.name in seen:
            raise RestoreRefusedError(
                "bad_archive", f"{member.name!r} is in the backup but not in its manifest"
            )
        seen.add(member.name)
        src = tar.extractfile(member)
        if src is None:  # isfile() members always have content
            raise RestoreRefusedError("bad_archive", f"cannot read {member.name!r}")
        path = dest.joinpath(*rel.parts)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        digest, size = hashlib.sha256(), 0
        with src, open(path, "xb") as out:
            os.chmod(path, 0o600)
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != entry.sha256 or size != entry.size:
            raise RestoreRefusedError(
                "digest_mismatch",
                f"{member.name} in the backup does not match its manifest entry "
                f"(sha256 {digest.hexdigest()[:16]}..., {size} bytes; expected "
                f"{entry.sha256[:16]}..., {entry.size} bytes): the backup is damaged",
            )
    missing = sorted(listed.keys() - seen)
    if missing:
        raise RestoreRefusedError(
            "digest_mismatch", f"files in the manifest are missing from the backup: {missing[:5]}"
        )


def _check_restored(staging: Path, info: BackupInfo, verify: bool) -> None:
    try:
        dd = DataDir.open(staging)
    except ConfigError as exc:
        raise RestoreRefusedError(
            "bad_archive", f"the backup holds no data directory: {exc}"
        ) from None
    if dd.genesis_hash != info.genesis_hash:
        raise RestoreRefusedError(
            "other_consortium",
            "the backup's consortium.json names another genesis than its manifest",
        )
    try:
        store = Store(dd.db_path)
    except ConfigError as exc:
        raise RestoreRefusedError(
            "head_mismatch", f"the restored ledger does not open: {exc}"
        ) from None
    with contextlib.closing(store):
        head, first = store.head(), store.block_meta(0)
        if head != info.head or first is None or first.hash != info.genesis_hash:
            raise RestoreRefusedError(
                "head_mismatch",
                f"the restored ledger's head ({_describe(head)}) is not the manifest's "
                f"({_describe(info.head)}), or its block 0 is not the consortium's genesis",
            )
        if verify:
            report = verify_chain(store, default_registry(), genesis_hash=info.genesis_hash)
            if not report.ok or report.height != info.head.height:
                raise RestoreRefusedError(
                    "head_mismatch",
                    f"the restored ledger fails verification at height {report.bad_height}: "
                    f"{report.reason}",
                )


def _describe(head: Head | None) -> str:
    if head is None:
        return "no block"
    return (
        f"height {head.height}, hash {head.hash.hex()[:16]}..., "
        f"root {head.state_root.hex()[:16]}..."
    )
