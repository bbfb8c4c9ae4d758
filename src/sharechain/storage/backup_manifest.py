"""The manifest of a backup: what it holds, and how it is written and read.

A backup (`sharechain.storage.backup`) ends with ``MANIFEST.json``: the
format, the consortium (its name and genesis hash), the ledger's head in the
backup (height, block hash, state root, time), whether the files were copied
while no block was committed (``settled``), the organisations whose keys it
holds, and the SHA-256 and size of every file. A restore trusts nothing in
the archive that the manifest does not list and match.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from sharechain.errors import ConfigError
from sharechain.ledger.store import Head

__all__ = [
    "FORMAT",
    "MANIFEST",
    "BackupInfo",
    "FileEntry",
    "RestoreRefusedError",
    "manifest_bytes",
    "parse_manifest",
]

FORMAT: Final = "sharechain-backup/1"
MANIFEST: Final = "MANIFEST.json"


class RestoreRefusedError(ConfigError):
    """A restore was refused; nothing was written. `reason` says which check failed.

    Reasons: ``not_empty`` (the target holds files), ``bad_archive`` (not a
    sharechain backup, or an unsafe or unlisted member), ``other_consortium``
    (the backup is of another chain), ``digest_mismatch`` (a file differs from
    the manifest), ``head_mismatch`` (the restored ledger's head or its
    verification disagrees with the manifest).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a backup."""

    path: str
    """Its path inside the data directory, with `/` separators."""
    sha256: str
    """SHA-256 of its bytes, 64 hex characters."""
    size: int
    """Its size in bytes."""


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """What a backup holds: its manifest."""

    consortium: str
    """The consortium's name."""
    genesis_hash: bytes
    """Hash of block 0: the consortium's identity."""
    head: Head
    """The ledger's head in the backup."""
    created_at: int
    """When the snapshot was taken (ms since the epoch)."""
    settled: bool
    """True when no block was committed while the files were copied (they match the head)."""
    organisations: tuple[str, ...]
    """The organisations whose key files the backup holds."""
    files: tuple[FileEntry, ...]
    """Every file, sorted by path."""


def manifest_bytes(info: BackupInfo) -> bytes:
    """The manifest of `info` as JSON."""
    body = {
        "format": FORMAT,
        "consortium": info.consortium,
        "genesis_hash": info.genesis_hash.hex(),
        "head": {
            "height": info.head.height,
            "hash": info.head.hash.hex(),
            "state_root": info.head.state_root.hex(),
            "timestamp": info.head.timestamp,
        },
        "created_at": info.created_at,
        "settled": info.settled,
        "organisations": list(info.organisations),
        "files": {f.path: {"sha256": f.sha256, "size": f.size} for f in info.files},
    }
    return json.dumps(body, indent=2, sort_keys=True).encode()


def parse_manifest(data: bytes) -> BackupInfo:
    """Read a manifest; `RestoreRefusedError` (``bad_archive``) if it is not one."""
    try:
        body: Any = json.loads(data)
    except ValueError as exc:
        raise RestoreRefusedError("bad_archive", f"{MANIFEST} is not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise RestoreRefusedError("bad_archive", f"{MANIFEST} is not a JSON object")
    if body.get("format") != FORMAT:
        raise RestoreRefusedError(
            "bad_archive", f"the manifest's format is {body.get('format')!r}, not {FORMAT!r}"
        )
    try:
        head = body["head"]
        return BackupInfo(
            str(body["consortium"]),
            bytes.fromhex(body["genesis_hash"]),
            Head(
                int(head["height"]),
                bytes.fromhex(head["hash"]),
                bytes.fromhex(head["state_root"]),
                int(head["timestamp"]),
            ),
            int(body["created_at"]),
            bool(body["settled"]),
            tuple(str(o) for o in body["organisations"]),
            tuple(
                FileEntry(str(path), str(f["sha256"]), int(f["size"]))
                for path, f in sorted(body["files"].items())
            ),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RestoreRefusedError("bad_archive", f"the manifest is malformed ({exc!r})") from None
