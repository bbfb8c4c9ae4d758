"""Snapshots between nodes: the routes that serve them, and starting a node from one.

- `GET /v1/snapshots`: the snapshots this node holds, each with its voucher;
- `GET /v1/snapshots/{height}`: one snapshot file.

`start_from_snapshot` is what `sharechain node start --from-snapshot FILE|URL`
runs before the node starts: it loads the snapshot into a new store beside
the node's (`sharechain.storage.snapshot`: consortium, headers, block, rows,
content hash), asks each peer for its vouchers and needs a quorum of the
members to vouch for the snapshot (`sharechain.storage.snapshot_evidence`);
only then does the new store replace the node's, which is moved aside if it
held any block past genesis. The node then syncs forward from its peers.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import FastAPI
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from sharechain.api.client import MAX_PEER_JSON_BYTES, NodeClient
from sharechain.api.node_start import SnapshotList
from sharechain.api.problems import SIGNED_ERRORS
from sharechain.api.serving import Auth
from sharechain.crypto.keyfile import OrgKeys
from sharechain.errors import EncodingError, NotFoundError, SharechainError
from sharechain.ledger.store import Store
from sharechain.node.service import Node
from sharechain.storage.datadir import DataDir
from sharechain.storage.diskspace import DEFAULT_RESERVE
from sharechain.storage.snapshot import (
    SnapshotInfo,
    SnapshotRefusedError,
    load_snapshot,
    read_manifest,
)
from sharechain.storage.snapshot_evidence import Voucher, check_quorum

__all__ = ["Installed", "fetch_snapshot", "register", "start_from_snapshot"]

log = logging.getLogger("sharechain.node")

_TMP_DB = "ledger.db.snapshot-tmp"
_DOWNLOAD = "snapshot-download.part"


def register(app: FastAPI, node: Node) -> None:
    """Add the snapshot routes to `app`."""

    @app.get(
        "/v1/snapshots", tags=["snapshots"], response_model=SnapshotList, responses=SIGNED_ERRORS
    )
    def snapshots(who: Auth) -> dict[str, Any]:
        """The snapshots this node holds, newest first, each with its signed voucher."""
        held = node.snapshots.held()
        return {
            "org": node.org,
            "every": node.snapshots.every,
            "snapshots": [
                {**info.to_json(), "size": path.stat().st_size, "voucher": v.to_json()}
                for info, v, path in held
            ],
        }

    @app.get(
        "/v1/snapshots/{height}",
        tags=["snapshots"],
        response_class=FileResponse,
        responses={
            200: {
                "description": "the snapshot file (`sharechain-snapshot/v1`, docs/operations.md)",
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            },
            **SIGNED_ERRORS,
        },
    )
    def snapshot_file(height: Annotated[int, PathParam(ge=1, le=2**62)], who: Auth) -> Any:
        """One snapshot file (see docs/operations.md for its format)."""
        for info, _, path in node.snapshots.held():
            if info.height == height:
                return FileResponse(path, media_type="application/octet-stream")
        raise NotFoundError(f"this node holds no snapshot at height {height}")


# -- starting from a snapshot -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Installed:
    """A snapshot that was checked and installed."""

    info: SnapshotInfo
    """Its manifest."""
    vouched_by: tuple[str, ...]
    """The members whose vouchers made the quorum."""
    moved_aside: Path | None
    """Where the node's former store went (None: it had none past genesis)."""


def _client(url: str, keys: OrgKeys) -> NodeClient:
    return NodeClient(url, keys.org, keys.signing, timeout=30.0)


def _listing(url: str, keys: OrgKeys) -> list[dict[str, Any]]:
    with _client(url, keys) as client:
        body = client.get_json("/v1/snapshots", cap=MAX_PEER_JSON_BYTES)
    snaps = body.get("snapshots") if isinstance(body, dict) else None
    if not isinstance(snaps, list):
        raise SharechainError(f"{url} sent a malformed snapshot list")
    return [s for s in snaps if isinstance(s, dict)]


def fetch_snapshot(url: str, keys: OrgKeys, out: Path, height: int | None = None) -> SnapshotInfo:
    """Download a peer's newest snapshot (or the one at `height`) to `out`.

    The download is refused, and what came of it deleted, once it passes the
    size the peer listed for it, and refused before it starts when the disk
    under `out` has not that much free beside `DEFAULT_RESERVE` (what a node
    keeps free on its data directory): a lying peer cannot fill the disk."""
    snaps = _listing(url, keys)
    sizes = {
        s["height"]: s.get("size")
        for s in snaps
        if isinstance(s.get("height"), int) and (height is None or s["height"] == height)
    }
    if not sizes:
        raise NotFoundError(
            f"{url} holds no snapshot{'' if height is None else f' at height {height}'}; nodes "
            "make one every `snapshot_blocks` blocks (a data directory setting)"
        )
    chosen = max(sizes)
    size = sizes[chosen]
    if not isinstance(size, int) or size < 0:
        raise SharechainError(f"{url} lists its snapshot at height {chosen} without a size")
    free = shutil.disk_usage(out.parent).free
    if size + DEFAULT_RESERVE > free:
        raise SharechainError(
            f"the snapshot at height {chosen} on {url} is {size} bytes and {out.parent} has "
            f"{free} free ({DEFAULT_RESERVE} kept spare): free some space, or download it "
            "elsewhere first (`sharechain node snapshot --from URL --out FILE`)"
        )
    part = out.with_name(out.name + ".part")
    try:
        with (
            _client(url, keys) as client,
            client.http.stream("GET", f"/v1/snapshots/{chosen}", timeout=300.0) as reply,
        ):
            if reply.status_code != 200:
                reply.read()
                raise SharechainError(
                    f"{url} refused its snapshot: {reply.status_code} {reply.text[:500]}"
                )
            written = 0
            with part.open("wb") as f:
                for chunk in reply.iter_bytes(1 << 20):
                    written += len(chunk)
                    if written > size:
                        raise SharechainError(
                            f"{url} sent more than the {size} bytes it listed for its snapshot "
                            f"at height {chosen}; refused and deleted"
                        )
                    f.write(chunk)
        part.replace(out)
    finally:
        part.unlink(missing_ok=True)
    return read_manifest(out)


def gather_vouchers(
    peers: Sequence[tuple[str, str]], keys: OrgKeys, height: int
) -> tuple[list[Voucher], dict[str, str]]:
    """Each peer's vouchers for `height`, asked of the peer itself; and which peers failed."""
    found: list[Voucher] = []
    failed: dict[str, str] = {}
    for org, url in peers:
        try:
            for item in _listing(url, keys):
                if item.get("height") == height:
                    found.append(Voucher.from_json(item.get("voucher")))
        except (httpx.HTTPError, SharechainError) as exc:
            failed[org] = str(exc)[:200]
    return found, failed


def start_from_snapshot(
    data_dir: Path,
    org: str,
    source: str,
    peers: Sequence[tuple[str, str]],
) -> Installed:
    """Check the snapshot `source` (a file, or a peer's URL) and install it as the node's store.

    Raises `SnapshotRefusedError` with the reason if any check fails; the
    node's store is then untouched.
    """
    dd = DataDir.open(data_dir)
    keys = dd.keys(org)
    tmp = dd.path / _TMP_DB
    for leftover in dd.path.glob(_TMP_DB + "*"):
        leftover.unlink()
    if source.startswith(("http://", "https://")):
        path = dd.path / _DOWNLOAD
        try:
            fetch_snapshot(source, keys, path)
        except (httpx.HTTPError, SharechainError) as exc:
            path.unlink(missing_ok=True)
            lagging = ""
            if "not an active organisation" in str(exc):
                lagging = (
                    f"; that node has not committed {org}'s admission yet (it follows the "
                    "chain a little behind), or the consortium removed it: try again in a "
                    "moment, or fetch from another member's node"
                )
            raise SnapshotRefusedError(
                "fetch", f"cannot fetch a snapshot from {source}: {exc}{lagging}"
            ) from None
    else:
        path = Path(source)
    if not peers:
        raise SnapshotRefusedError(
            "evidence", "a snapshot needs its peers' vouchers: give the node its --peer ORG=URL"
        )
    try:
        info = load_snapshot(path, tmp, dd.genesis_bytes())
        current = _current_height(dd)
        if current is not None and current >= info.height:
            raise SnapshotRefusedError(
                "store",
                f"this node's store is at height {current}, not behind the snapshot's "
                f"{info.height}: start the node without --from-snapshot",
            )
        vouchers, failed = gather_vouchers(peers, keys, info.height)
        loaded = Store(tmp)
        try:
            try:
                agreed = check_quorum(loaded, info, vouchers)
            except SnapshotRefusedError as exc:
                if failed:
                    detail = "; ".join(f"{o}: {why}" for o, why in sorted(failed.items()))
                    raise SnapshotRefusedError(
                        exc.reason, f"{exc} (unreachable: {detail})"
                    ) from None
                raise
        finally:
            loaded.close()
        moved = _install(dd, tmp, current)
    except BaseException:
        for leftover in dd.path.glob(_TMP_DB + "*"):
            leftover.unlink()
        raise
    finally:
        if path.name == _DOWNLOAD:
            path.unlink(missing_ok=True)
    log.info("started from the snapshot at height %d, vouched for by %s", info.height, agreed)
    return Installed(info, tuple(agreed), moved)


def _current_height(dd: DataDir) -> int | None:
    if not dd.db_path.exists():
        return None
    store = Store(dd.db_path)
    try:
        head = store.head()
    finally:
        store.close()
    return None if head is None else head.height


def _install(dd: DataDir, tmp: Path, current: int | None) -> Path | None:
    """Put the checked store in place; the former one is moved aside if it held blocks."""
    moved = None
    if current is not None and current > 0:
        moved = dd.path / f"ledger.db.before-snapshot-{int(time.time())}"
        os.replace(dd.db_path, moved)
    for suffix in ("", "-wal", "-shm"):
        Path(str(dd.db_path) + suffix).unlink(missing_ok=True)
    os.replace(tmp, dd.db_path)
    return moved


def check_source(source: str) -> None:
    """Refuse a `--from-snapshot` value that is neither a URL nor an existing file."""
    if not source.startswith(("http://", "https://")) and not Path(source).is_file():
        raise EncodingError(
            f"--from-snapshot must be a snapshot file or a peer's URL, not {source!r}"
        )
