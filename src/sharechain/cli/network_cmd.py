"""`sharechain network`: a local consortium, one node process per organisation.

`up` starts a supervisor process in the background (it owns etcd and the
nodes), waits until every node is ready and prints where things are. Nodes
serve HTTPS with certificates from a development CA made for the network
(`<dir>/tls/ca.crt`, named in the network file, which every client built from
that file trusts); plain HTTP only with `--plain-http`;
`status` asks every node and etcd member; `down` stops it all cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from sharechain.cli.common import JsonOpt, command_group, console, emit_json, fail, handle_errors
from sharechain.errors import SharechainError
from sharechain.node.launcher import NETWORK_FILE
from sharechain.storage.datadir import DataDir

__all__ = ["load_network", "network_client", "register"]

network_app = command_group("network", "A local consortium network: one node per organisation.")

DirOpt = Annotated[Path, typer.Option("--dir", help="Network directory.", show_default=True)]
_DEFAULT_DIR = Path(".sharechain-network")


def load_network(base: Path) -> dict[str, Any]:
    """The network file of `base` (raises a clear error when there is none)."""
    path = base / NETWORK_FILE if base.is_dir() else base
    if not path.exists():
        fail(f"no network in {base} (no {NETWORK_FILE}); start one with `sharechain network up`")
    body: dict[str, Any] = json.loads(path.read_text())
    return body


def network_client(net: dict[str, Any], org: str | None = None) -> Any:
    """A signed client of `org`'s node (default: the first node) from a network file."""
    from sharechain.api.client import BUSY_RETRIES, NodeClient

    nodes = {n["org"]: n for n in net["nodes"]}
    name = org or net["nodes"][0]["org"]
    if name not in nodes:
        fail(f"no organisation {name!r} in the network ({', '.join(nodes)})")
    keys = DataDir.open(Path(net["consortium_dir"])).keys(name)
    ca = (net.get("tls") or {}).get("ca")
    return NodeClient(
        nodes[name]["url"], name, keys.signing, timeout=10.0, ca=ca, busy_retries=BUSY_RETRIES
    )


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


@network_app.command("up")
def up(
    orgs: Annotated[int, typer.Option(help="Number of organisations (the last supervises).")] = 4,
    ordering: Annotated[str, typer.Option(help="solo or etcd.")] = "solo",
    dir: DirOpt = _DEFAULT_DIR,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for readiness.")] = 120.0,
    plain_http: Annotated[
        bool,
        typer.Option(
            "--plain-http", help="Serve plain HTTP instead of HTTPS (a new network only)."
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Generate keys, genesis and a development CA (first time), start etcd and the nodes.

    Waits until every node is ready. Nodes serve HTTPS with the CA's certificates
    unless `--plain-http`; a network started before keeps its scheme.
    """
    base = dir.resolve()
    if (base / NETWORK_FILE).exists():
        net = load_network(base)
        if _alive(net.get("supervisor_pid")) and net.get("state") == "up":
            fail(f"the network in {base} is already up; `sharechain network down --dir {dir}`")
    base.mkdir(parents=True, exist_ok=True)
    (base / "logs").mkdir(exist_ok=True)
    started = time.time()
    with (base / "logs" / "supervisor.log").open("ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sharechain.node.supervisor",
                str(base),
                "--orgs",
                str(orgs),
                "--ordering",
                ordering,
                *(["--plain-http"] if plain_http else []),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        path = base / NETWORK_FILE
        if path.exists() and path.stat().st_mtime >= started - 1:
            net = json.loads(path.read_text())
            if net.get("state") == "up" and net.get("supervisor_pid") == proc.pid:
                break
            if net.get("state") == "failed":
                fail(f"the network did not start: {net.get('error')}; logs in {base / 'logs'}")
        if code is not None:
            fail(f"the network supervisor exited ({code}); see {base / 'logs' / 'supervisor.log'}")
        if time.monotonic() > deadline:
            proc.send_signal(signal.SIGTERM)
            fail(f"the network was not ready within {timeout:.0f}s; logs in {base / 'logs'}")
        time.sleep(0.2)
    # The supervisor outlives this command on purpose (`network down` stops it).
    proc.returncode = 0  # forget the child without a "still running" warning
    if json_out:
        emit_json(net)
        return
    _print_nodes(net)
    console.print(f"network file: {base / NETWORK_FILE}")


def _print_nodes(net: dict[str, Any]) -> None:
    table = Table(title=f"network ({net['ordering']} ordering) in {net['dir']}")
    for col in ("organisation", "url", "pid", "log"):
        table.add_column(col)
    for n in net["nodes"]:
        table.add_row(n["org"], n["url"], str(n["pid"]), n["log"])
    console.print(table)
    if net.get("etcd_endpoints"):
        console.print("etcd: " + ", ".join(net["etcd_endpoints"]))
    if net.get("tls"):
        console.print(f"HTTPS; the nodes' CA: {net['tls']['ca']}")
    else:
        console.print("[yellow]plain HTTP[/] (started with --plain-http)")


@network_app.command("status")
def status(dir: DirOpt = _DEFAULT_DIR, json_out: JsonOpt = False) -> None:
    """Heights, readiness, peers and attestation agreement of every node; etcd health."""
    net = load_network(dir)
    rows = []
    for n in net["nodes"]:
        row: dict[str, Any] = {"org": n["org"], "url": n["url"]}
        client = network_client(net, n["org"])
        try:
            st = client.status()
            att = client.attestation_status()
            row.update(
                height=st["height"],
                ready=st["ready"],
                head=st["head_hash"][:16],
                state_root=st["state_root"][:16],
                attestations="ok" if att["ok"] else "CONFLICT",
                halted=st["halted"],
                problem=st["problem"],
                data_plane=_data_plane(st.get("data_plane")),
            )
        except (SharechainError, OSError, httpx.TransportError) as exc:
            row.update(height=None, ready=False, error=f"{type(exc).__name__}: {exc}"[:200])
        finally:
            client.close()
        rows.append(row)
    etcd_rows: list[dict[str, Any]] = []
    if net.get("etcd_endpoints"):
        from sharechain.ordering.etcd_log import EtcdLog
        from sharechain.ordering.etcd_tls import EtcdTLS

        files = net.get("etcd_tls")
        tls = (
            None
            if not files
            else EtcdTLS(
                Path(files["ca"]),
                Path(files["cert"]),
                Path(files["key"]),
                files.get("user", ""),
                Path(files["password_file"]) if files.get("password_file") else None,
            )
        )
        with EtcdLog(net["etcd_endpoints"], timeout=2.0, tls=tls) as etcd:
            for s in etcd.status():
                etcd_rows.append(
                    {
                        "endpoint": s.endpoint,
                        "reachable": s.reachable,
                        "leader": s.is_leader,
                        "raft_index": s.raft_index,
                        "error": s.error,
                    }
                )
    if json_out:
        emit_json({"state": net["state"], "nodes": rows, "etcd": etcd_rows})
        return
    table = Table(
        title=f"network {net.get('dir', dir)} ({net.get('ordering', '?')}, {net['state']})"
    )
    columns = ("organisation", "height", "ready", "head", "state root", "attestations", "blobs")
    for col in columns:
        table.add_column(col)
    for r in rows:
        dp = r.get("data_plane") or {}
        table.add_row(
            r["org"],
            str(r.get("height")),
            "yes" if r.get("ready") else "NO",
            r.get("head", ""),
            r.get("state_root", ""),
            r.get("attestations", r.get("error", "")),
            (
                f"{dp['fetching']} fetching, {dp['failed']} failed, {dp['fetched']} fetched, "
                f"{dp['shredded']} shredded"
                if dp
                else ""
            ),
        )
    console.print(table)
    for e in etcd_rows:
        health = "leader" if e["leader"] else ("up" if e["reachable"] else f"DOWN {e['error']}")
        console.print(f"etcd {e['endpoint']}: {health}")
    down = [f"{r['org']} ({r['url']})" for r in rows if "error" in r]
    if down:  # the table says how; the exit code lets a script notice
        fail(f"{len(down)} of {len(rows)} nodes did not answer: {', '.join(down)}", code=1)


def _data_plane(body: Any) -> dict[str, int] | None:
    """The node's own data-plane upkeep in brief (None from a node that has none)."""
    if not isinstance(body, dict):
        return None
    fetch = body.get("blob_fetch", {})
    return {
        "fetching": int(fetch.get("queued", 0)) + int(fetch.get("fetching", 0)),
        "failed": int(fetch.get("failed", 0)),
        "fetched": int(fetch.get("done", 0)),
        "shredded": len(body.get("shredded", [])),
    }


@network_app.command("down")
def down(
    dir: DirOpt = _DEFAULT_DIR,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a clean stop.")] = 60.0,
) -> None:
    """Stop every node (they finish their blocks), then etcd; keeps all data."""
    net = load_network(dir)
    pid = net.get("supervisor_pid")
    if not isinstance(pid, int) or not _alive(pid):
        console.print(f"the network in {dir} is not running")
        return
    with handle_errors():
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            fail(f"the network supervisor (pid {pid}) did not stop within {timeout:.0f}s")
        time.sleep(0.2)
    console.print(f"network in {dir} stopped; data kept (start again with `network up`)")


def register(app: typer.Typer) -> None:
    app.add_typer(network_app)
