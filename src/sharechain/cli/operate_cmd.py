"""`sharechain node status` and `sharechain network issue-certs`: an operator's two views.

`node status` asks a node (`--node URL` or `--network FILE`, signed as
`--as ORG`) where it stands: height, head, state root, peers, and the alarms
an operator must act on: a full disk (the node then refuses work; the free
bytes and the threshold are shown) and etcd's space quota (NOSPACE: etcd
refuses every write). It exits 1 while an alarm is raised, so a script or a
monitor can notice.

`network issue-certs ORG` is the step between the consortium admitting an
organisation (`org propose` ... `org vote`) and its node joining
(`node start --join URL`) on a network made by `sharechain network up`: the
network's etcd members require a client certificate from every node (mutual
TLS), and on an HTTPS network its peers check the node's server certificate,
so the new member's certificates are issued from the network's development
CAs. It prints the `node start` command that uses them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from sharechain.cli.common import (
    DataDirOpt,
    JsonOpt,
    KeyOpt,
    NetworkOpt,
    NodeOpt,
    SignerOpt,
    console,
    emit_json,
    fail,
    handle_errors,
)
from sharechain.cli.target import Target, open_plane
from sharechain.errors import SharechainError
from sharechain.ordering.etcd_auth import ROOT

__all__ = ["register", "status_lines"]

NetworkDirOpt = Annotated[Path, typer.Option("--dir", help="Network directory.", show_default=True)]
_NETWORK_DIR = Path(".sharechain-network")


def _bytes(n: int | None) -> str:
    return "unknown" if n is None else f"{n / 2**20:,.1f} MiB ({n:,} bytes)"


def status_lines(st: dict[str, Any]) -> tuple[list[str], list[str]]:
    """A status document as lines to print, and the alarms among them."""
    lines = [
        f"node {st['org']} ({st['ordering']} ordering, {st['role']})",
        f"height {st['height']}, head {st['head_hash'][:16]}, state root {st['state_root'][:16]}",
        f"ready: {'yes' if st['ready'] else 'NO'}; caught up: {'yes' if st['caught_up'] else 'no'}",
    ]
    progress = st.get("catch_up")
    if isinstance(progress, dict):
        eta = progress["eta_seconds"]
        lines.append(
            f"catching up from {progress['source']}: block {progress['height']:,} of"
            f" {progress['target']:,} ({100 * progress['done']:.1f}%),"
            f" {progress['blocks_per_s']:,.0f} blocks/s ({progress['tx_per_s']:,.0f} tx/s),"
            f" {'time left unknown' if eta is None else f'about {eta:,.0f} s left'}"
        )
    alarms: list[str] = []
    for why in ("problem", "halted"):
        if st.get(why):
            alarms.append(f"{why}: {st[why]}")
    disk = st.get("disk")
    if isinstance(disk, dict):
        state = "FULL" if disk["full"] else "ok"
        lines.append(
            f"disk: {state}; free {_bytes(disk['free_bytes'])}, threshold "
            f"{_bytes(disk['reserve_bytes'])} ({disk['path']})"
        )
        if disk["full"]:
            alarms.append(f"disk full: {disk['reason']}")
    etcd = st.get("etcd")
    if isinstance(etcd, dict):
        lines.append(f"etcd quota: {'NOSPACE (writes refused)' if etcd['nospace'] else 'ok'}")
        alarms += [f"etcd: {a}" for a in etcd["alarms"]]
    for org, peer in sorted((st.get("peers") or {}).items()):
        error = f" ({peer['error']})" if peer["error"] else ""
        lines.append(f"peer {org}: height {peer['height']}{error}")
    refused = st.get("refusals") or []
    if refused:  # voided, or halted on (then `halted` is an alarm above)
        lines.append(
            "refused members' blocks (`sharechain node evidence` shows those kept): "
            + ", ".join(f"{r['height']} ({r['block_hash'][:16]})" for r in refused[-4:])
            + (f" and {len(refused) - 4} earlier" if len(refused) > 4 else "")
        )
    return lines, alarms


def node_status(
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
    as_org: SignerOpt = None,
) -> None:
    """Where a running node stands, and its alarms (full disk, etcd quota). Exit 1 on an alarm."""
    with open_plane(data_dir, Target(node, network, key), as_org) as plane:
        if plane.client is None:
            fail("`node status` asks a running node: give --node URL or --network FILE")
        st = plane.client.status()
    lines, alarms = status_lines(st)
    if json_out:
        emit_json(st)
    else:
        for line in lines:
            console.print(line, highlight=False)
        for alarm in alarms:
            console.print(f"[bold red]ALARM[/] {alarm}", highlight=False)
    if alarms:
        raise typer.Exit(1)


def issue_certs(
    org: Annotated[str, typer.Argument(help="The newly admitted organisation.")],
    dir: NetworkDirOpt = _NETWORK_DIR,
    json_out: JsonOpt = False,
) -> None:
    """Issue a newly admitted organisation's etcd client (and HTTPS) certificates.

    From the development CAs of the network in --dir; prints the
    `node start --join` command that uses them.
    """
    from sharechain.api.member_certs import issue_member_certs
    from sharechain.cli.network_cmd import load_network

    base = dir.resolve()
    net = load_network(base)
    with handle_errors():
        certs = issue_member_certs(
            base, org, etcd=net.get("ordering") == "etcd", https=bool(net.get("tls"))
        )
    through = net["nodes"][0]["url"]
    command = [
        "sharechain",
        "node",
        "start",
        "--org",
        org,
        "--data-dir",
        f"<{org}'s data dir, holding keys/{org}.key>",
        "--listen",
        "127.0.0.1:<port>",
        "--join",
        through,
        *certs.start_options(),
    ]
    value = {
        "org": org,
        "etcd": None
        if certs.etcd is None
        else {
            "ca": str(certs.etcd.ca_file),
            "cert": str(certs.etcd.cert_file),
            "key": str(certs.etcd.key_file),
        },
        "https": None
        if certs.https is None
        else {
            "ca": str(certs.https.ca),
            "cert": str(certs.https.cert),
            "key": str(certs.https.key),
        },
        "start": command,
    }
    if json_out:
        emit_json(value)
        return
    if certs.etcd is not None:
        console.print(f"etcd client certificate for {org}: {certs.etcd.cert_file}", highlight=False)
    if certs.https is not None:
        console.print(f"HTTPS certificate for {org}'s node: {certs.https.cert}", highlight=False)
    console.print("copy them (keys mode 0600) to the new member's host and start its node:")
    console.print("  " + " ".join(command), highlight=False, soft_wrap=True)  # copyable


def revoke_etcd(
    org: Annotated[str, typer.Argument(help="The organisation the consortium removed.")],
    dir: NetworkDirOpt = _NETWORK_DIR,
    json_out: JsonOpt = False,
) -> None:
    """Cut a removed organisation's node off from the network's etcd.

    Deletes its etcd user (as etcd's root, from the network in --dir) and its
    password: its node's token stops working at once. The chain's own removal
    (`org remove` ... `org vote`) is what makes its peers refuse it.
    """
    from sharechain.api.member_certs import revoke_member_etcd
    from sharechain.cli.network_cmd import load_network

    base = dir.resolve()
    load_network(base)
    with handle_errors():
        deleted = revoke_member_etcd(base, org)
    if json_out:
        emit_json({"org": org, "user_deleted": deleted})
        return
    said = "deleted its etcd user" if deleted else "it had no etcd user"
    console.print(f"{org}: {said}; its etcd access is revoked for good", highlight=False)


def revoke_removed(
    dir: Annotated[
        Path,
        typer.Option("--dir", help="Network directory (a local network), unless --etcd-endpoints."),
    ] = Path(".sharechain-network"),
    etcd_endpoints: Annotated[
        str,
        typer.Option(help="A deployment: comma-separated client URLs of the etcd members."),
    ] = "",
    etcd_ca: Annotated[Path | None, typer.Option(help="etcd's CA certificate (PEM).")] = None,
    etcd_cert: Annotated[
        Path | None, typer.Option(help="etcd root's client certificate (PEM).")
    ] = None,
    etcd_key: Annotated[Path | None, typer.Option(help="Its private key (PEM).")] = None,
    etcd_password_file: Annotated[
        Path | None, typer.Option(help="File with etcd root's password.")
    ] = None,
    every: Annotated[
        float,
        typer.Option(help="Check again every this many seconds until stopped (0: once)."),
    ] = 0.0,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
    as_org: SignerOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Cut every organisation the chain removed off etcd (its etcd user deleted).

    The chain is read from a node: a local network's own (--dir), or --node URL
    --key FILE beside a deployment, where etcd's root logs in with
    --etcd-ca/--etcd-cert/--etcd-key/--etcd-password-file. With --every N it
    keeps watching (a local network's supervisor does this by itself).
    """
    if every < 0:
        fail("--every takes seconds (0: check once)")
    check = _revoker(dir, etcd_endpoints, (etcd_ca, etcd_cert, etcd_key, etcd_password_file))
    while True:
        try:
            if etcd_endpoints:
                with open_plane(None, Target(node, network, key), as_org) as plane:
                    if plane.client is None:
                        fail("give the node that reads the chain: --node URL --key FILE")
                    revoked = check(plane.client)
            else:
                revoked = check(None)
        except SharechainError as exc:
            if every == 0:
                fail(str(exc))
            console.print(f"[red]not checked[/] ({exc}); again in {every:g} s", highlight=False)
            revoked = []
        if json_out:
            emit_json({"revoked": revoked})
        else:
            for org in revoked:
                console.print(f"{org} was removed: its etcd user is deleted", highlight=False)
            if every == 0 and not revoked:
                console.print("no removed organisation has etcd access", highlight=False)
        if every == 0:
            return
        time.sleep(every)


def _revoker(
    base: Path, endpoints: str, files: tuple[Path | None, ...]
) -> Callable[[Any], list[str]]:
    """What one check does: on a local network (`endpoints` empty) or as etcd's root."""
    from sharechain.api.member_certs import revoke_removed_etcd_asking, revoke_removed_users
    from sharechain.cli.network_cmd import load_network, network_client
    from sharechain.ordering.etcd_tls import EtcdTLS, etcd_http_client

    if not endpoints:
        if any(files):
            fail(
                "--etcd-ca, --etcd-cert, --etcd-key and --etcd-password-file "
                "go with --etcd-endpoints"
            )
        base = base.resolve()
        net = load_network(base)

        def local(_: Any) -> list[str]:
            clients = ((n["org"], partial(network_client, net, n["org"])) for n in net["nodes"])
            return revoke_removed_etcd_asking(base, clients)

        return local
    ca, cert, key, password = files
    if ca is None or cert is None or key is None or password is None:
        fail("--etcd-endpoints needs --etcd-ca, --etcd-cert, --etcd-key and --etcd-password-file")
    root = EtcdTLS(ca, cert, key, ROOT, password)
    urls = [e for e in endpoints.split(",") if e]

    def deployed(client: Any) -> list[str]:
        with etcd_http_client(root, timeout=10.0) as etcd:
            return revoke_removed_users(client, etcd, urls)

    return deployed


def register(app: typer.Typer) -> None:
    # The `node` and `network` groups are attached by node_cmd and network_cmd.
    del app
    from sharechain.cli.network_cmd import network_app
    from sharechain.cli.node_cmd import node_app

    node_app.command("status")(node_status)
    network_app.command("issue-certs")(issue_certs)
    network_app.command("revoke-etcd")(revoke_etcd)
    network_app.command("revoke-removed")(revoke_removed)
