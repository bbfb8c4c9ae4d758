"""`make demo NETWORK=etcd`: the sharing story over HTTP on a local network.

The same story as the embedded demo (`sharechain.demo`), but each
organisation runs its own node process with its own ledger, blob store and
vault, three etcd members order the blocks, and every step goes through the
REST API with signed requests (`sharechain.sharing.remote`):

hospital-a publishes under threshold custody (its node keeps the sealed blob
and copies it to the share holders' nodes); the insurer asks; the regulator
and hospital-a approve; hospital-b, a share holder without a grant, is
refused by the custodians' nodes and the refusal is on the chain;
hospital-a's node is stopped, and the insurer still fetches: hospital-b's and
the regulator's nodes each check the grant on their own chain and release a
share, and the blob comes from a holder's node by byte ranges; hospital-a's
node comes back and revokes, which moves the dataset to a new key epoch on
every node; the insurer is refused; the regulator reads the audit trail with
proofs; the network stops and every node's ledger is re-verified from
genesis, all with the same state root.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sharechain.api.client import NodeClient
from sharechain.contracts import default_registry
from sharechain.contracts._fields import derive_id
from sharechain.crypto.keyfile import OrgKeys
from sharechain.crypto.merkle import verify_inclusion
from sharechain.demo import ORGS, POLICY, _kv, _say, synthetic_patients
from sharechain.errors import IntegrityError, SharechainError
from sharechain.ledger.chain import verify_chain
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import sign_transaction
from sharechain.node.launcher import NETWORK_FILE, LocalNetwork, node_data_dir
from sharechain.ordering.etcd_process import free_ports
from sharechain.sharing.remote import fetch_remote, publish_remote, revoke_remote
from sharechain.storage.datadir import DataDir, init_consortium

__all__ = ["NetStory", "create_network", "run_network_story"]

OWNER = "hospital-a"


@dataclass
class NetStory:
    """What the network story has done so far."""

    net: LocalNetwork
    """The running network."""
    work: Path
    """Where files are written."""
    console: Console
    """Where the narration goes."""
    dataset: str = ""
    grant: str = ""
    outcomes: dict[str, str] = field(default_factory=dict)
    """Step name to outcome (`ok`, `refused: ...`), for tests and the summary."""
    released_by: tuple[str, ...] = ()
    """Custodians whose nodes released a share for the fetch."""
    state_roots: dict[str, str] = field(default_factory=dict)
    """Each node's state root at the end."""
    refusal_codes: dict[str, str] = field(default_factory=dict)
    """Step name to the chain's code of the refusal."""

    def keys(self, org: str) -> OrgKeys:
        return self.net.keys(org)

    def clients(self, as_org: str) -> dict[str, NodeClient]:
        """Clients of every node, signed as `as_org` (close them with `close`)."""
        key = self.keys(as_org).signing
        return {n.org: NodeClient(n.url, as_org, key, timeout=30.0) for n in self.net.nodes}

    def submit(self, org: str, type: str, payload: dict[str, Any]) -> bytes:
        stx = sign_transaction(self.keys(org).signing, type, org, payload)
        with self.net.client(org) as c:
            return c.submit_checked(stx.raw).tx_id


def _close(clients: dict[str, NodeClient]) -> None:
    for c in clients.values():
        c.close()


def create_network(base: Path, node_options: tuple[str, ...] = ()) -> LocalNetwork:
    """Lay out the demo's four organisations as a local etcd network in `base`."""
    base.mkdir(parents=True, exist_ok=True)
    init_consortium(base / "consortium", ORGS, consortium="health-data-network")
    ports = free_ports(len(ORGS))
    nodes = [
        {
            "org": spec.id,
            "port": port,
            "data_dir": str(node_data_dir(base / "consortium", base / "nodes" / spec.id, spec.id)),
            "log": str(base / "logs" / f"{spec.id}.log"),
        }
        for spec, port in zip(ORGS, ports, strict=True)
    ]
    layout = {"version": 1, "state": "created", "ordering": "etcd", "nodes": nodes}
    (base / NETWORK_FILE).write_text(json.dumps({**layout, "etcd_base_port": None}))
    return LocalNetwork(base, node_options=node_options)


def _wait_same_head(story: NetStory, timeout: float = 30.0) -> dict[str, tuple[int, str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        heads = {}
        for n in story.net.nodes:
            with story.net.client(n.org) as c:
                st = c.status()
            heads[n.org] = (int(st["height"]), str(st["head_hash"]), str(st["state_root"]))
        if len(set(heads.values())) == 1 or time.monotonic() > deadline:
            return heads
        time.sleep(0.1)


def step_consortium(story: NetStory) -> None:
    table = Table(
        title="the network: one node per organisation, 3 etcd members", title_justify="left"
    )
    for col in ("organisation", "roles", "node"):
        table.add_column(col)
    with story.net.client("regulator") as c:
        orgs = c.get_json("/v1/organisations")["organisations"]
    urls = {n.org: n.url for n in story.net.nodes}
    for o in orgs:
        table.add_row(o["id"], ", ".join(o["roles"]), urls.get(o["id"], ""))
    story.console.print(table)
    assert story.net.etcd is not None
    story.console.print(f"etcd members: {', '.join(story.net.etcd.endpoints)}", highlight=False)
    story.outcomes["consortium"] = "ok"


def step_publish(story: NetStory, rows: int) -> None:
    src = story.work / "patients-2025.csv"
    synthetic_patients(src, rows)
    _say(
        story,
        "1. hospital-a publishes patient records through its node",
        f"{rows:,} synthetic records ({src.stat().st_size:,} bytes) sealed on hospital-a's side; "
        "the key is split 2-of-2: each share goes, wrapped to its holder, to hospital-b's and "
        "the regulator's nodes; the sealed blob goes to hospital-a's node and is copied to theirs.",
    )
    clients = story.clients(OWNER)
    try:
        pub = publish_remote(
            clients[OWNER],
            story.keys(OWNER),
            src,
            peers=clients,
            title="Patient records 2025",
            description="Diagnoses and lab results, synthetic",
            tags=("patients", "lab"),
            classification="confidential",
            schema=tuple((c, "string") for c in src.read_text().split("\n", 1)[0].split(",")),
            policy=POLICY,
            custody="threshold",
            holders=("hospital-b", "regulator"),
            threshold=2,
            inline_limit=0,
        )
    finally:
        _close(clients)
    story.dataset = pub.dataset
    story.console.print(
        _kv(
            "dataset registered",
            [
                ("dataset", pub.dataset),
                ("size", f"{pub.digests.size:,} bytes in {pub.digests.segment_count} segment(s)"),
                ("ciphertext sha256", pub.digests.ciphertext_sha256.hex()),
                ("custody", f"{pub.custody}: {pub.threshold} of {', '.join(pub.holders)}"),
                ("blob on the nodes of", ", ".join((OWNER, *pub.holders))),
            ],
        )
    )
    story.outcomes["publish"] = "ok"


def step_request_and_approve(story: NetStory) -> None:
    _say(story, "2. the insurer asks; 3. the regulator and hospital-a approve", "")
    body = {
        "dataset": story.dataset,
        "purpose": "actuarial-research",
        "duration": 30 * 86_400_000,
        "justification": "pricing of chronic-disease cover",
    }
    rid = derive_id("request", story.submit("insurer", "access.request", body))
    story.submit("regulator", "access.approve", {"request": rid})
    story.grant = derive_id("grant", story.submit(OWNER, "access.approve", {"request": rid}))
    _wait_same_head(story)
    with story.net.client("insurer") as c:
        g = c.get_json(f"/v1/grants/{story.grant}")["grant"]
    story.console.print(
        _kv(
            "grant issued (read from the insurer's own node)",
            [
                ("grant", story.grant),
                ("status", g["status"]),
                ("approvals", ", ".join(g["grant"]["approvals"])),
                ("max key releases", str(g["grant"]["max_uses"])),
            ],
        )
    )
    story.outcomes["request"] = story.outcomes["approve"] = "ok"


def _attempt(story: NetStory, name: str, org: str, out: Path) -> None:
    clients = story.clients(org)
    try:
        fetch_remote(clients, story.keys(org), story.grant, out, dataset=story.dataset)
    except SharechainError as exc:
        story.outcomes[name] = f"refused: {exc}"
        story.refusal_codes[name] = str(getattr(exc, "code", ""))
        story.console.print(f"[bold red]refused[/]: {exc}", highlight=False)
        return
    finally:
        _close(clients)
    story.outcomes[name] = "ok"


def step_intruder(story: NetStory) -> None:
    _say(
        story,
        "4. hospital-b, which holds no grant, tries the insurer's grant",
        "it asks the custodians' nodes (its own included) to release to it; each checks the "
        "chain, which refuses and records the attempt",
    )
    _attempt(story, "intruder", "hospital-b", story.work / "stolen.csv")


def step_fetch(story: NetStory) -> None:
    _say(
        story,
        "5. hospital-a's node stops; the insurer fetches anyway",
        "hospital-b's and the regulator's nodes release their shares; the blob comes by byte "
        "ranges from a holder's node; every digest is checked against the insurer's own chain",
    )
    story.net.stop_node(OWNER)
    out = story.work / "insurer-copy.csv"
    clients = story.clients("insurer")
    started = time.perf_counter()
    try:
        got = fetch_remote(clients, story.keys("insurer"), story.grant, out)
    finally:
        _close(clients)
    took = time.perf_counter() - started
    same = out.read_bytes() == (story.work / "patients-2025.csv").read_bytes()
    story.released_by = tuple(r.custodian for r in got.releases)
    story.console.print(
        _kv(
            "fetched and verified over HTTP",
            [
                ("hospital-a's node", "stopped"),
                ("shares released by", ", ".join(story.released_by)),
                ("plaintext sha256", got.digests.plaintext_sha256.hex() + "  [green]matches[/]"),
                ("segment root", got.digests.segment_root.hex() + "  [green]matches[/]"),
                ("identical to the original", str(same)),
                ("read receipt", got.read_tx.hex()),
                ("took", f"{took:.2f} s"),
            ],
        )
    )
    story.outcomes["fetch"] = "ok" if same else "corrupt"
    story.net.start_node(OWNER)
    story.net.wait_ready([OWNER], timeout=60)


def step_revoke(story: NetStory) -> None:
    _say(
        story,
        "6. hospital-a's node is back; hospital-a revokes the grant",
        "re-sealed under a fresh key, new shares to the holders' nodes, old shares and blobs "
        "destroyed on every node",
    )
    clients = story.clients(OWNER)
    try:
        done = revoke_remote(
            clients[OWNER], story.keys(OWNER), story.grant, peers=clients, reason="study finished"
        )
    finally:
        _close(clients)
    assert done.rotated is not None
    story.console.print(
        f"grant revoked; dataset now at key epoch {done.rotated.epoch}; "
        f"{done.rotated.destroyed} old key entries destroyed across nodes",
        highlight=False,
    )
    story.outcomes["revoke"] = "ok"


def step_fetch_after_revoke(story: NetStory) -> None:
    _say(story, "7. the insurer tries again", "")
    _wait_same_head(story)
    _attempt(story, "fetch_after_revoke", "insurer", story.work / "again.csv")


def step_audit(story: NetStory) -> None:
    _say(
        story,
        "8. the audit trail, read by the regulator from its node",
        "each inclusion proof is checked here against block hashes hospital-b's node reports",
    )
    with story.net.client("regulator") as c:
        entries = c.get_json("/v1/audit", dataset=story.dataset, proofs="true")["entries"]
    table = Table(title=f"dataset {story.dataset[:16]}...", title_justify="left")
    for col in ("block", "time (UTC)", "transaction", "by", "outcome", "proof"):
        table.add_column(col)
    verified = 0
    with story.net.client("hospital-b") as other:
        for e in entries:
            p = e["proof"]
            verify_inclusion(
                bytes.fromhex(p["tx_id"]),
                p["leaf_index"],
                p["tree_size"],
                [bytes.fromhex(x) for x in p["audit_path"]],
                bytes.fromhex(p["tx_root"]),
            )
            if other.block(e["height"])["hash"] != p["header_hash"]:
                raise IntegrityError(f"block {e['height']} differs between nodes")
            verified += 1
            when = datetime.fromtimestamp(e["timestamp"] / 1000, UTC).strftime("%H:%M:%S.%f")
            outcome = "[green]valid[/]" if e["code"] == "valid" else f"[red]{e['code']}[/]"
            table.add_row(str(e["height"]), when[:-3], e["type"], e["sender"], outcome, "ok")
    story.console.print(table)
    story.outcomes["audit"] = f"{verified} entries, every proof verified"


def step_verify(story: NetStory) -> None:
    heads = _wait_same_head(story)
    story.state_roots = {org: root for org, (_, _, root) in heads.items()}
    story.net.down()
    table = Table(title="every node's ledger, re-verified from genesis", title_justify="left")
    for col in ("node", "blocks", "transactions", "state root", "verify"):
        table.add_column(col)
    good = len(set(story.state_roots.values())) == 1
    for n in story.net.nodes:
        dd = DataDir.open(n.data_dir)
        store = Store(dd.db_path)
        try:
            report = verify_chain(store, default_registry(), genesis_hash=dd.genesis_hash)
        finally:
            store.close()
        good = good and report.ok
        table.add_row(
            n.org,
            str(report.height + 1),
            str(report.transactions),
            story.state_roots.get(n.org, "")[:16] + "...",
            "[green]ok[/]" if report.ok else f"[red]{report.reason}[/]",
        )
    story.console.print(table)
    story.outcomes["verify"] = "ok" if good else "failed: ledgers or state roots differ"


def run_network_story(base: Path, console: Console, rows: int = 5000) -> NetStory:
    """Bring up the network in `base`, play every step over HTTP, take it down."""
    work = base / "files"
    work.mkdir(parents=True, exist_ok=True)
    net = create_network(base / "net", ("--log-level", "warning", "--max-wait-ms", "10"))
    console.print("starting 3 etcd members and 4 node processes on 127.0.0.1 ...")
    net.up(timeout=60)
    story = NetStory(net, work, console)
    try:
        step_consortium(story)
        step_publish(story, rows)
        step_request_and_approve(story)
        step_intruder(story)
        step_fetch(story)
        step_revoke(story)
        step_fetch_after_revoke(story)
        step_audit(story)
        step_verify(story)
    finally:
        net.down()
    return story
