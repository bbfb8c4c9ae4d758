"""`sharechain node snapshot`: copy out a node's newest state snapshot, or a peer's.

Nodes make snapshots themselves, every `snapshot_blocks` blocks (a data
directory setting; see `sharechain.node.snapshot_maker`), so that every honest
node's snapshot at a height is the same bytes and the members can vouch for
it. This command copies the newest one out of a data directory, or fetches
it from a running node (`--from URL`, signed with `--org`'s key from the data
directory). `node start --from-snapshot FILE|URL` starts a node from one.
"""

from __future__ import annotations

import shutil
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
from sharechain.storage.datadir import DataDir
from sharechain.storage.snapshot import SnapshotInfo, SnapshotRefusedError, read_manifest

__all__ = ["register"]


def _newest(data_dir: Path) -> Path:
    snaps = sorted((data_dir / "snapshots").glob("*.snap"))
    if not snaps:
        fail(
            f"{data_dir} holds no snapshot yet: its node makes one every `snapshot_blocks` "
            "blocks (setting in consortium.json, default 10000)"
        )
    return snaps[-1]


def snapshot_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="The snapshot file to write.")],
    data_dir: DataDirOpt = None,
    source: Annotated[
        str | None,
        typer.Option("--from", help="Fetch from this running node (URL) instead of the data dir."),
    ] = None,
    org: Annotated[
        str | None, typer.Option("--org", help="With --from: the organisation to sign as.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write the newest state snapshot (state, indexes, block headers) to a file."""
    path = resolve_data_dir(data_dir)
    if out.exists():
        fail(f"{out} exists; choose another --out")
    info: SnapshotInfo
    with handle_errors():
        try:
            if source is not None:
                from sharechain.node.snapshots import fetch_snapshot  # loads the node's API

                dd = DataDir.open(path)
                held = dd.held_orgs()
                who = org or (held[0] if len(held) == 1 else None)
                if who is None:
                    fail(f"--from needs --org: {path} holds keys for {', '.join(held) or 'nobody'}")
                info = fetch_snapshot(source, dd.keys(who), out)
            else:
                newest = _newest(path)
                info = read_manifest(newest)
                shutil.copyfile(newest, out)
        except SnapshotRefusedError as exc:
            fail(f"snapshot refused ({exc.reason}): {exc}")
    value = {**info.to_json(), "out": str(out), "bytes": out.stat().st_size}
    if json_out:
        emit_json(value)
        return
    console.print(
        f"snapshot of height {info.height} (content {info.content_hash.hex()[:16]}...), "
        f"{value['bytes']} bytes, written to {out}; start a node from it with "
        "`sharechain node start --from-snapshot FILE --peer ORG=URL ...`"
    )


def register(app: typer.Typer) -> None:
    # `node_app` is already attached to the root by node_cmd (listed before this module).
    del app
    node_app.command("snapshot")(snapshot_cmd)
