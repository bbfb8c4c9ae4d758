"""`sharechain dataset publish | rotate-key` and `sharechain fetch`: the data plane's commands.

Publishing seals a file and registers it; fetching obtains the key under a
grant and opens the payload with every digest checked; rotating moves a dataset
to a new key epoch. `grant revoke` and `dataset purge` (in grant_cmd and
dataset_cmd) also rotate and shred. All of them run through the `Plane`
(`sharechain.sharing.plane`): on the embedded default (one data directory
holds the whole development consortium) or against the nodes with `--node` /
`--network` (the custodians' nodes found as `sharechain.sharing.remote`
says), with the same output. These commands join the `dataset` group
whichever module creates it first (see `_group`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from sharechain.cli.common import (
    AsOrg,
    DataDirOpt,
    JsonOpt,
    KeyOpt,
    NetworkOpt,
    NodeOpt,
    command_group,
    console,
    emit_json,
    err_console,
    shown,
)
from sharechain.cli.dataset_cmd import load_policy
from sharechain.cli.masking_opts import MaskingOpt, masked_policy
from sharechain.cli.target import Target, open_plane
from sharechain.sharing.records import Listing
from sharechain.sharing.records import Progress as Tick

__all__ = ["register"]


def _csv_schema(path: Path) -> tuple[tuple[str, str], ...]:
    """The columns of a CSV file's header line, typed `string` (what requests may name)."""
    if path.suffix.lower() != ".csv":
        return ()
    with path.open("r", encoding="utf-8", errors="replace") as f:
        header = f.readline().strip()
    names = [c.strip() for c in header.split(",") if c.strip()]
    return tuple((n, "string") for n in dict.fromkeys(names))


@contextmanager
def _bar(label: str, total: int, quiet: bool) -> Iterator[Tick | None]:
    if quiet:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=shown(title), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for k, v in rows:
        table.add_row(k, shown(v))
    return table


def publish_cmd(
    file: Annotated[Path, typer.Argument(help="The file to share (a regular file).")],
    as_org: AsOrg,
    title: Annotated[str, typer.Option("--title", help="Short name in the catalogue.")],
    description: Annotated[str, typer.Option("--description", help="Free text.")] = "",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Catalogue tag (repeat).")] = None,
    classification: Annotated[
        str, typer.Option("--classification", help="public, internal, confidential or secret.")
    ] = "internal",
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Policy YAML file (docs/policies.md).")
    ] = None,
    masking: MaskingOpt = None,
    custody: Annotated[
        str, typer.Option("--custody", help="Who holds the key: owner, supervisor or threshold.")
    ] = "owner",
    holder: Annotated[
        list[str] | None,
        typer.Option("--holder", help="Key holder (repeat); default chosen by custody mode."),
    ] = None,
    threshold: Annotated[
        int | None, typer.Option("--threshold", help="Shares needed (threshold custody).")
    ] = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """Seal FILE under a fresh key and register it as a dataset."""
    listing = Listing(
        title=title,
        description=description,
        tags=tuple(tag or ()),
        classification=classification,
        schema=_csv_schema(file),
        policy=load_policy(policy),
        custody=custody,
        holders=None if holder is None else tuple(holder),
        threshold=threshold,
    )
    with (
        open_plane(data_dir, Target(node, network, key), as_org) as chain,
        _bar("sealing", file.stat().st_size, json_out) as tick,
    ):
        if masking is not None:
            mapped = masked_policy(chain, listing.policy, classification, masking)
            listing = dataclasses.replace(listing, policy=mapped)
        pub = chain.publish(as_org, file, listing, tick)
    value = {
        "dataset": pub.dataset,
        "epoch": pub.epoch,
        "custody": pub.custody,
        "holders": list(pub.holders),
        "threshold": pub.threshold,
        "on_chain": pub.inline,
        "size": pub.digests.size,
        "plaintext_sha256": pub.digests.plaintext_sha256.hex(),
        "ciphertext_sha256": pub.digests.ciphertext_sha256.hex(),
        "segment_root": pub.digests.segment_root.hex(),
        "tx_id": pub.tx_id.hex(),
    }
    if json_out:
        emit_json(value)
        return
    console.print(_table(f"published {title}", [(k, str(v)) for k, v in value.items()]))


def rotate_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset id (or unique prefix).")],
    as_org: AsOrg,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """Move a dataset to a new key epoch: re-seal under a fresh key, destroy the old one."""
    with open_plane(data_dir, Target(node, network, key), as_org) as chain:
        ds = chain.resolve("dataset", dataset)
        rot = chain.rotate(as_org, ds, reason="rotation")
    value = {"dataset": ds, "epoch": rot.epoch, "tx_id": rot.tx_id.hex()}
    if json_out:
        emit_json(value | {"old_entries_destroyed": rot.destroyed})
        return
    console.print(f"dataset {ds} is now at key epoch {rot.epoch}; old keys destroyed")


def fetch_cmd(
    grant: Annotated[str, typer.Argument(help="Grant id (or unique prefix).")],
    as_org: AsOrg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the data.")],
    offline: Annotated[
        list[str] | None,
        typer.Option("--offline", help="Treat this organisation's node as down (repeat)."),
    ] = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """Obtain the key under GRANT, decrypt, check every digest, sign the read receipt."""
    with open_plane(data_dir, Target(node, network, key), as_org) as chain:
        gid = chain.resolve("grant", grant)
        ds = chain.dataset(chain.grant(gid).grant.dataset)
        with _bar("fetching", ds.size, json_out) as tick:
            got = chain.fetch(
                as_org,
                gid,
                output,
                offline=frozenset(offline or ()),
                progress=None if tick is None else _plain(tick, ds.size),
            )
    value = {
        "grant": gid,
        "dataset": got.dataset,
        "epoch": got.epoch,
        "path": str(got.path),
        "size": got.digests.size,
        "plaintext_sha256": got.digests.plaintext_sha256.hex(),
        "released_by": [r.custodian for r in got.releases],
        "read_receipt": got.read_tx.hex(),
    }
    if json_out:
        emit_json(value)
        return
    console.print(_table("fetched and verified", [(k, str(v)) for k, v in value.items()]))


def _plain(tick: Tick, size: int) -> Tick:
    """Progress over ciphertext bytes, shown as plaintext bytes (capped at the size)."""
    seen = [0]

    def advance(n: int) -> None:
        step = min(n, size - seen[0])
        seen[0] += n
        if step > 0:
            tick(step)

    return advance


def _group(root: typer.Typer, name: str, help: str) -> typer.Typer:
    """The root's `name` group, created here if no module registered it yet."""
    for info in root.registered_groups:
        group = info.typer_instance
        if group is not None and (info.name or group.info.name) == name:
            return group
    group = command_group(name, help)
    root.add_typer(group, name=name)
    return group


def register(root: typer.Typer) -> None:
    dataset = _group(root, "dataset", "Publish, describe, rotate and purge datasets.")
    dataset.command("publish")(publish_cmd)
    dataset.command("rotate-key")(rotate_cmd)
    root.command("fetch")(fetch_cmd)
