"""`sharechain node`: run an organisation's node, repair its store, ask a node."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sharechain.api.tls import TlsFiles
from sharechain.cli.common import (
    DataDirOpt,
    JsonOpt,
    command_group,
    console,
    emit_json,
    fail,
    handle_errors,
    resolve_data_dir,
)
from sharechain.ledger.store_repack import repack
from sharechain.node.service import NodeConfig, repair_store
from sharechain.ordering import etcd_compact
from sharechain.ordering.etcd_tls import EtcdTLS
from sharechain.sharing.agreement import NodeFile, write_node_file
from sharechain.storage.datadir import DataDir

__all__ = ["node_app", "register"]

node_app = command_group("node", "Run an organisation's node (REST API, ordering, replication).")


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not host:
        fail(f"--listen must be HOST:PORT, e.g. 127.0.0.1:8601, not {value!r}")
    return host, int(port)


def _tls_files(
    cert: Path | None, key: Path | None, ca: Path | None, client_certs: bool
) -> TlsFiles | None:
    """The node's HTTPS files (None: plain HTTP); all three or none, each readable."""
    if not (cert or key or ca):
        if client_certs:
            fail("--tls-client-certs needs --tls-cert, --tls-key and --tls-ca")
        return None
    if not (cert and key and ca):
        fail("--tls-cert, --tls-key and --tls-ca go together: pass all three")
    for flag, path in (("--tls-cert", cert), ("--tls-key", key), ("--tls-ca", ca)):
        if not path.is_file():
            fail(f"{flag} {path}: no such file")
    return TlsFiles(cert, key, ca)


@node_app.command("start")
def start(
    org: Annotated[str, typer.Option("--org", help="The organisation this node belongs to.")],
    data_dir: DataDirOpt = None,
    listen: Annotated[str, typer.Option(help="HOST:PORT to serve the API on.")] = (
        "127.0.0.1:8601"
    ),
    ordering: Annotated[str, typer.Option(help="solo or etcd.")] = "solo",
    etcd_endpoints: Annotated[
        str, typer.Option(help="etcd: comma-separated client URLs of the members.")
    ] = "",
    etcd_prefix: Annotated[str, typer.Option(help="etcd: key prefix of the chain.")] = (
        "sharechain/"
    ),
    etcd_ca: Annotated[
        Path | None, typer.Option(help="etcd: CA certificate (PEM) that signed the members'.")
    ] = None,
    etcd_cert: Annotated[
        Path | None, typer.Option(help="etcd: this node's client certificate (PEM).")
    ] = None,
    etcd_key: Annotated[Path | None, typer.Option(help="etcd: its private key (PEM).")] = None,
    etcd_password_file: Annotated[
        Path | None,
        typer.Option(
            help="etcd: file with the password of this node's etcd user (named as its "
            "organisation), when etcd's authentication is on (docs/deploy.md)."
        ),
    ] = None,
    orderer_url: Annotated[
        str | None, typer.Option(help="solo: URL of the ordering node (omit on the orderer).")
    ] = None,
    peer: Annotated[
        list[str] | None, typer.Option("--peer", help="ORG=URL of another node (repeatable).")
    ] = None,
    max_block_txs: Annotated[int, typer.Option(help="Most transactions per block.")] = 2000,
    max_block_bytes: Annotated[int, typer.Option(help="Largest block in bytes.")] = 1_500_000,
    max_wait_ms: Annotated[int, typer.Option(help="Longest wait before cutting a block.")] = 20,
    compaction_interval: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="etcd: seconds between the leader's pruning and sweeping rounds (0: none).",
        ),
    ] = etcd_compact.DEFAULT_INTERVAL,
    compaction_keep: Annotated[
        int,
        typer.Option(
            min=0, help="etcd: blocks kept in etcd below the height every member attested."
        ),
    ] = etcd_compact.DEFAULT_KEEP_BLOCKS,
    defrag_interval: Annotated[
        float,
        typer.Option(
            min=0.0, help="etcd: seconds between the leader's defragmentations of the members."
        ),
    ] = etcd_compact.DEFAULT_DEFRAG_INTERVAL,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Skip re-verifying the store on start.")
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
    # HTTPS: this node's certificate and key, and the consortium's CA (peers are checked
    # against it); --tls-client-certs also requires clients to show one of its certificates.
    tls_cert: Annotated[Path | None, typer.Option(help="HTTPS: certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="HTTPS: its private key (PEM).")] = None,
    tls_ca: Annotated[Path | None, typer.Option(help="HTTPS: the consortium's CA (PEM).")] = None,
    tls_client_certs: Annotated[
        bool, typer.Option("--tls-client-certs", help="HTTPS: require client certificates.")
    ] = False,
    # -- snapshots and joining (issue 19) --
    from_snapshot: Annotated[
        str | None,
        typer.Option(help="Start from a snapshot (FILE, or a peer's URL) its peers vouch for."),
    ] = None,
    join: Annotated[
        str | None,
        typer.Option(help="Join a running network through this member node's URL (admitted orgs)."),
    ] = None,
    genesis_hash: Annotated[
        str | None, typer.Option(help="With --join: the consortium's genesis hash (hex) to expect.")
    ] = None,
) -> None:
    """Start a node: verify its store, join the ordering service, serve the /v1 API.

    With --tls-cert/--tls-key/--tls-ca it serves HTTPS and trusts only that CA's
    certificates at its peers; without them plain HTTP.
    """
    from sharechain.node.server import run_node
    from sharechain.web import mount as mount_console

    host, port = _listen(listen)
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/] serving on {host}, not only on loopback")
    peers = []
    for item in peer or []:
        name, sep, url = item.partition("=")
        if not sep or not url:
            fail(f"--peer must be ORG=URL, not {item!r}")
        peers.append((name, url))
    tls = _tls_files(tls_cert, tls_key, tls_ca, tls_client_certs)
    if tls is not None:
        from sharechain.api.client import trust_ca

        trust_ca(tls.ca)  # joining and snapshots fetch from HTTPS peers before serving
    if join is not None:
        ordering, orderer_url, etcd_endpoints, etcd_prefix = _join(
            resolve_data_dir(data_dir),
            org,
            join,
            genesis_hash,
            peers,
            (ordering, orderer_url, etcd_endpoints, etcd_prefix),
        )
    etcd_tls = None
    if etcd_ca or etcd_cert or etcd_key:
        if not (etcd_ca and etcd_cert and etcd_key):
            fail("--etcd-ca, --etcd-cert and --etcd-key go together: pass all three")
        etcd_tls = EtcdTLS(etcd_ca, etcd_cert, etcd_key, org, etcd_password_file)
    elif etcd_password_file:
        fail("--etcd-password-file goes with --etcd-ca, --etcd-cert and --etcd-key")
    with handle_errors():
        config = NodeConfig(
            data_dir=resolve_data_dir(data_dir),
            org=org,
            ordering=ordering,
            orderer_url=orderer_url,
            etcd_endpoints=tuple(e for e in etcd_endpoints.split(",") if e),
            etcd_prefix=etcd_prefix,
            etcd_tls=etcd_tls,
            peers=tuple(peers),
            max_block_txs=max_block_txs,
            max_block_bytes=max_block_bytes,
            max_wait=max_wait_ms / 1000,
            compaction_interval=compaction_interval,
            compaction_keep=compaction_keep,
            defrag_interval=defrag_interval,
            verify_on_start=not no_verify,
        )
        if from_snapshot is not None:
            _from_snapshot(config, from_snapshot)
        if (config.data_dir / "consortium.json").exists():
            # Lets `sharechain chain verify --data-dir` compare this ledger with the peers.
            url_host = f"[{host}]" if ":" in host else host
            scheme = "http" if tls is None else "https"
            write_node_file(
                config.data_dir, NodeFile(org, f"{scheme}://{url_host}:{port}", tuple(peers))
            )
        run_node(
            config,
            host,
            port,
            log_level=log_level,
            extensions=(mount_console,),
            tls=tls,
            client_certs=tls_client_certs,
        )


def _join(
    data_dir: Path,
    org: str,
    url: str,
    genesis_hash: str | None,
    peers: list[tuple[str, str]],
    given: tuple[str, str | None, str, str],
) -> tuple[str, str | None, str, str]:
    """Fetch the consortium's configuration through `url`; the ordering settings to use."""
    from sharechain.node.joining import join_network

    expected = None
    if genesis_hash is not None:
        try:
            expected = bytes.fromhex(genesis_hash)
        except ValueError:
            fail(f"--genesis-hash must be hex, not {genesis_hash!r}")
    data_dir.mkdir(parents=True, exist_ok=True)
    with handle_errors():
        joined = join_network(data_dir, org, url, genesis_hash=expected)
    known = {name for name, _ in peers}
    peers += [(name, u) for name, u in joined.peers if name not in known]
    ordering, orderer_url, endpoints, prefix = given
    if ordering == "solo" and joined.ordering == "etcd" and not endpoints:
        ordering, endpoints, prefix = "etcd", ",".join(joined.etcd_endpoints), joined.etcd_prefix
    if ordering == "solo" and orderer_url is None:
        orderer_url = joined.orderer_url
    console.print(
        f"joined {joined.consortium} ({joined.genesis_hash.hex()[:16]}...) through {url}; "
        f"peers: {', '.join(name for name, _ in peers)}"
    )
    return ordering, orderer_url, endpoints, prefix


def _from_snapshot(config: NodeConfig, source: str) -> None:
    from sharechain.node.snapshots import check_source, start_from_snapshot
    from sharechain.storage.snapshot import SnapshotRefusedError

    check_source(source)
    try:
        done = start_from_snapshot(config.data_dir, config.org, source, config.peers)
    except SnapshotRefusedError as exc:
        fail(f"snapshot refused ({exc.reason}): {exc}; nothing was changed")
    console.print(
        f"started from the snapshot at height {done.info.height}, vouched for by "
        f"{', '.join(done.vouched_by)}; syncing forward from the peers"
    )


@node_app.command("repair")
def repair(data_dir: DataDirOpt = None, json_out: JsonOpt = False) -> None:
    """Move a node's (tampered) ledger aside; its next start re-syncs from its peers."""
    path: Path = resolve_data_dir(data_dir)
    with handle_errors():
        moved = repair_store(path)
    if json_out:
        emit_json({"moved_to": None if moved is None else str(moved)})
    elif moved is None:
        console.print(f"no ledger in {path}; nothing to repair")
    else:
        console.print(f"ledger moved to {moved}; start the node again to re-sync it from its peers")


@node_app.command("repack")
def repack_cmd(data_dir: DataDirOpt = None, json_out: JsonOpt = False) -> None:
    """Rewrite a stopped node's ledger with 4 KiB pages (older stores have 16 KiB ones)."""
    path: Path = resolve_data_dir(data_dir)
    with handle_errors():
        db = DataDir.open(path).db_path
        if not json_out:
            console.print(f"repacking {db} (the node must be stopped) ...")
        done = repack(db)
    if json_out:
        emit_json(
            {
                "database": str(db),
                "page_size_before": done.page_size_before,
                "page_size": done.page_size,
                "bytes_before": done.bytes_before,
                "bytes_after": done.bytes_after,
            }
        )
    elif not done.changed:
        console.print(f"{db} already has {done.page_size}-byte pages; nothing to do")
    else:
        console.print(
            f"{db}: {done.page_size_before}-byte pages -> {done.page_size}; "
            f"{done.bytes_before >> 20} MiB -> {done.bytes_after >> 20} MiB"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(node_app)


if __name__ == "__main__":  # `python -m sharechain.cli.node_cmd start ...` (the launcher)
    node_app(prog_name="sharechain node")
