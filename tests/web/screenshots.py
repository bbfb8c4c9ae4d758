"""Photograph the console's pages into a directory (`make screenshots` writes docs/img/).

Builds a small demo chain on one node (hospital-a orders; bank-b and the
regulator sign through it): datasets with a version and a derivation, a grant
with a key release and a read receipt, an open request in the inbox, a burst
of notary records for the throughput chart, a private set intersection
run to its receipts and one waiting for the supervisor. The consortium's
checkpoints need one cosigner (the node is alone). Then chromium (Debian's, through
Playwright) logs in as an approver and saves each page as a PNG.

    python tests/web/screenshots.py docs/img
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn

sys.path.insert(0, str(Path(__file__).parent))

from web_kit import GRANTEE, ORGS, OWNER, PASSWORD, SUPERVISOR, Chain, digest, node_dir

from sharechain.contracts import derive_id
from sharechain.node.app import create_app
from sharechain.node.service import Node, NodeConfig
from sharechain.ordering.etcd_process import free_ports
from sharechain.storage.datadir import init_consortium
from sharechain.web import Console, mount

PAGES = (
    ("console-overview.png", "/ui/", True),
    ("console-catalogue.png", "/ui/datasets?status=any", False),
    ("console-dataset.png", "/ui/datasets/{derived}", True),
    ("console-inbox.png", "/ui/inbox", True),
    ("console-transaction.png", "/ui/txs/{read_tx}", True),
    ("console-organisation.png", "/ui/org", False),
    ("console-privacy.png", "/ui/privacy", False),
    ("console-session.png", "/ui/privacy/sessions/{session}", True),
    ("console-checkpoints.png", "/ui/checkpoints", True),
)


def populate(chain: Chain, console: Console) -> dict[str, str]:
    """The demo's records; returns the ids the pages are opened at."""
    labs = chain.register("Blood tests 2025", tags=["lab", "blood"])
    ward = chain.register("Ward admissions", tags=["ward", "admissions"])
    chain.register("Discharge summaries", tags=["clinical"], classification="secret")
    chain.register("Blacklist Q3", owner=GRANTEE, tags=["fraud", "aml"])
    chain.register("Pharmacy stock", owner=SUPERVISOR, tags=["supply"], classification="internal")
    version = {
        "dataset": labs,
        "title": "Blood tests 2025 (corrected)",
        "plaintext_digest": digest("v2"),
        "ciphertext_digest": digest("c2"),
        "size": 2048,
        "segment_root": digest("s2"),
    }
    labs2 = derive_id("dataset", chain.send(OWNER, "dataset.version", version).tx_id)
    derive = {
        "parents": [labs2, ward],
        "transformation": "join on ward, glucose averaged",
        "title": "Glucose by ward",
        "tags": ["lab", "ward"],
        "schema": [["ward", "string"]],
        "classification": "internal",
        "plaintext_digest": digest("d"),
        "ciphertext_digest": digest("dc"),
        "size": 512,
        "segment_root": digest("ds"),
        "custody": "owner",
        "holders": [],
    }
    derived = derive_id("dataset", chain.send(OWNER, "dataset.derive", derive).tx_id)
    # A grant on the derived dataset, its key release and a read receipt.
    rid = chain.request(derived)
    chain.send(OWNER, "access.approve", {"request": rid, "operator": "anna"})
    gid = derive_id("grant", chain.send(SUPERVISOR, "access.approve", {"request": rid}).tx_id)
    release = {"grant": gid, "to": GRANTEE, "epoch": 1, "wrapped_key_digest": digest("w")}
    chain.send(OWNER, "grant.key-release", release)
    read = chain.send(GRANTEE, "grant.read", {"grant": gid, "digest": digest("d")})
    # Waiting in the inbox: bank-b asks for the corrected blood tests.
    chain.request(labs2)
    # A PSI session run to its receipts, and one waiting for the supervisor.
    psi = {
        "kind": "psi",
        "parties": [OWNER, GRANTEE],
        "purpose": "blacklist match",
        "max_set_size": 5000,
        "duration": 3_600_000,
    }
    session = derive_id("computation", chain.send(OWNER, "computation.propose", psi).tx_id)
    chain.send(GRANTEE, "computation.accept", {"session": session})
    chain.send(SUPERVISOR, "computation.approve", {"session": session})
    for org, size in ((OWNER, 4210), (GRANTEE, 1873)):
        body = {"session": session, "digest": digest(f"in {org}"), "size": size}
        chain.send(org, "computation.commit", body)
    chain.send(OWNER, "computation.result", {"session": session, "intersection_size": 12})
    for org in (OWNER, GRANTEE):
        chain.send(org, "computation.receipt", {"session": session})
    chain.send(GRANTEE, "computation.propose", {**psi, "parties": [GRANTEE, OWNER]})
    # Some traffic for the throughput chart, sampled as it goes.
    for burst in range(12):
        for i in range(5 + 3 * (burst % 4)):
            chain.send(OWNER, "notary.record", {"digest": digest(f"n{burst}.{i}"), "note": ""})
        time.sleep(0.4)
        console.sampler.sample()
    return {"derived": derived, "read_tx": read.tx_id.hex(), "session": session}


def main(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        source = base / "consortium"
        init_consortium(source, ORGS, consortium="demo", governance={"checkpoint_quorum": 1})
        node = Node(NodeConfig(data_dir=node_dir(source, base, OWNER), org=OWNER, max_wait=0.005))
        node.start()
        app = create_app(node, (mount,))
        console: Console = app.state.console
        console.accounts.add("anna", "approver", PASSWORD)
        (port,) = free_ports(1)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            while not server.started:
                time.sleep(0.05)
            ids = populate(Chain(source, node), console)
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"]
                )
                page = browser.new_page(
                    base_url=f"http://127.0.0.1:{port}", viewport={"width": 1280, "height": 900}
                )
                page.goto("/ui/login")
                page.get_by_label("Name").fill("anna")
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Log in").click()
                page.wait_for_url("**/ui/")
                for name, path, full in PAGES:
                    page.goto(path.format(**ids))
                    page.screenshot(path=str(out / name), full_page=full)
                    print(f"wrote {out / name}")
                browser.close()
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            node.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img"))
