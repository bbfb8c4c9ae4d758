"""`sharechain node backup | restore`: a consistent backup of a running node's data directory.

Both commands join the `node` group of `sharechain.cli.node_cmd`; the work is in
`sharechain.storage.backup` (what a backup holds, and every check a restore makes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sharechain.cli.common import (
    DataDirOpt,
    JsonOpt,
    console,
    emit_json,
    fail,
    handle_errors,
    resolve_data_dir,
)
from sharechain.cli.node_cmd import node_app
from sharechain.storage.backup import BackupInfo, RestoreRefusedError, backup, restore

__all__ = ["register"]


def _summary(info: BackupInfo) -> dict[str, object]:
    return {
        "consortium": info.consortium,
        "genesis_hash": info.genesis_hash.hex(),
        "height": info.head.height,
        "head_hash": info.head.hash.hex(),
        "state_root": info.head.state_root.hex(),
        "settled": info.settled,
        "organisations": list(info.organisations),
        "files": len(info.files),
        "bytes": sum(f.size for f in info.files),
    }


def backup_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="The backup file to create (tar).")],
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Back up a data directory while its node runs: ledger snapshot, keys, vault, blobs."""
    with handle_errors():
        info = backup(resolve_data_dir(data_dir), out)
    value = _summary(info) | {"out": str(out)}
    if json_out:
        emit_json(value)
        return
    console.print(
        f"backed up height {info.head.height} (state root {info.head.state_root.hex()[:16]}...), "
        f"{value['files']} files, {value['bytes']} bytes to {out}"
    )
    console.print("[yellow]the backup holds private keys: store it as you store key files[/]")


def restore_cmd(
    archive: Annotated[Path, typer.Argument(help="A backup file made by `node backup`.")],
    data_dir: Annotated[
        Path, typer.Option("--data-dir", "-d", help="An empty (or new) directory to restore into.")
    ],
    genesis_hash: Annotated[
        str | None,
        typer.Option(help="Refuse a backup of another consortium: the genesis hash (hex)."),
    ] = None,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Check the head only, not every block.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Restore a backup into an empty directory, check it, then start the node on it."""
    expected = None
    if genesis_hash is not None:
        try:
            expected = bytes.fromhex(genesis_hash)
        except ValueError:
            fail(f"--genesis-hash must be hex, not {genesis_hash!r}")
    with handle_errors():
        try:
            info = restore(archive, data_dir, expected_genesis=expected, verify=not no_verify)
        except RestoreRefusedError as exc:
            fail(f"restore refused ({exc.reason}): {exc}")
    value = _summary(info) | {"data_dir": str(data_dir)}
    if json_out:
        emit_json(value)
        return
    console.print(
        f"restored height {info.head.height} of {info.consortium} into {data_dir}; "
        "start the node on it to catch up from its peers"
    )


def register(app: typer.Typer) -> None:
    # `node_app` is already attached to the root by node_cmd (listed before this module).
    del app
    node_app.command("backup")(backup_cmd)
    node_app.command("restore")(restore_cmd)
