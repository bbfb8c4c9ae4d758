"""Benchmark: the console's pages on a large chain, server time per page in milliseconds.

Builds a real chain through the ledger (signed transactions, contracts
executed, blocks committed without fsync): `datasets` datasets registered by
three organisations, ten PSI sessions (proposal to result), then blocks of
one to three transactions each carrying a dataset's story (request, the two
approvals, a key release, a read receipt) until the chain is `blocks` high.
Checkpoints need one cosigner here (the node is alone). A node is opened on it, its API
with the console served in process (Starlette's test client: no sockets, so
the figure is the server's time), an approver logs in, and each page is
fetched `repeat` times: the median and the slowest are reported.

Run `python -m sharechain.bench.console [blocks] [datasets]`.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from sharechain.contracts import default_registry, derive_id
from sharechain.ledger.blocks import decode_block
from sharechain.ledger.chain import Ledger
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import sign_transaction
from sharechain.node.launcher import node_data_dir
from sharechain.ordering.solo import order_block
from sharechain.storage.datadir import DataDir, OrgSpec, init_consortium

__all__ = ["build", "run"]

ORGS = (
    OrgSpec("hospital-a", ("member", "admin")),
    OrgSpec("bank-b", ("member", "admin")),
    OrgSpec("regulator", ("member", "supervisor", "admin")),
)
OWNER, GRANTEE, SUPERVISOR = "hospital-a", "bank-b", "regulator"
PASSWORD = "bench password 1"


def _digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


START = 1_780_000_000.0
"""The build's clock (seconds) starts here; each signature and block moves it on."""


def build(source: Path, node_dir: Path, *, blocks: int, datasets: int) -> dict[str, str]:
    """Fill `node_dir`'s ledger; returns ids the pages are opened at."""
    data = DataDir.open(source)
    keys = {o.id: data.keys(o.id) for o in ORGS}
    store = Store(DataDir.open(node_dir).db_path, durable=False)
    ledger = Ledger(store, default_registry())
    genesis = data.genesis_bytes()
    ledger.commit(decode_block(genesis), data=genesis)
    clock = [START]

    def now() -> float:
        clock[0] += 0.5
        return clock[0]

    def block(txs: list[tuple[str, str, dict[str, Any]]]) -> list[bytes]:
        raws = [sign_transaction(keys[o].signing, t, o, p, now=now) for o, t, p in txs]
        _, _, receipts = order_block(
            ledger, [s.raw for s in raws], orderer=OWNER, key=keys[OWNER].signing, now=now
        )
        assert all(r.ok for r in receipts), [r.reason for r in receipts if not r.ok]
        return [r.tx_id for r in receipts]

    ids: list[str] = []
    owners = (OWNER, GRANTEE, SUPERVISOR)
    for start in range(0, datasets, 20):
        txs = []
        for i in range(start, min(datasets, start + 20)):
            payload = {
                "title": f"Dataset {i} of ward {i % 37}",
                "description": "bench data",
                "tags": ["bench", f"t{i % 10}"],
                "schema": [["id", "string"]],
                "classification": "internal",
                "plaintext_digest": _digest(f"p{i}"),
                "ciphertext_digest": _digest(f"c{i}"),
                "size": 100 + i,
                "segment_root": _digest(f"s{i}"),
                "custody": "owner",
                "holders": [],
            }
            txs.append((owners[i % 3], "dataset.register", payload))
        ids += [derive_id("dataset", t) for t in block(txs)]
    session = ""
    for n in range(10):  # joint computations for the privacy pages
        psi = {
            "kind": "psi",
            "parties": [OWNER, GRANTEE],
            "purpose": "blacklist match",
            "max_set_size": 1000,
            "duration": 7 * 24 * 3_600_000,
        }
        (proposed,) = block([(OWNER, "computation.propose", psi)])
        session = derive_id("computation", proposed)
        block(
            [
                (GRANTEE, "computation.accept", {"session": session}),
                (SUPERVISOR, "computation.approve", {"session": session}),
            ]
        )
        block(
            [
                (o, "computation.commit", {"session": session, "digest": _digest(o), "size": 50})
                for o in (OWNER, GRANTEE)
            ]
        )
        block([(OWNER, "computation.result", {"session": session, "intersection_size": n})])
    mine = [d for i, d in enumerate(ids) if i % 3 == 0]
    number = {d: i for i, d in enumerate(ids)}
    step = 0
    read_tx = grant = ""
    while ledger.height < blocks:
        ds = mine[step % len(mine)]
        step += 1
        ask = {"dataset": ds, "purpose": "research", "duration": 2_000_000_000}
        (req_tx,) = block([(GRANTEE, "access.request", ask)])
        rid = derive_id("request", req_tx)
        if step % 7 == 0:  # some requests stay open, for the inbox
            continue
        _, approved = block(
            [
                (OWNER, "access.approve", {"request": rid}),
                (SUPERVISOR, "access.approve", {"request": rid}),
            ]
        )
        grant = derive_id("grant", approved)
        release = {"grant": grant, "to": GRANTEE, "epoch": 1, "wrapped_key_digest": _digest("w")}
        block([(OWNER, "grant.key-release", release)])
        read_body = {"grant": grant, "digest": _digest(f"p{number[ds]}")}
        (read,) = block([(GRANTEE, "grant.read", read_body)])
        read_tx = read.hex()
    store.close()
    return {"dataset": mine[0], "tx": read_tx, "grant": grant, "session": session}


def _time(client: Any, path: str, repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = client.get(path, follow_redirects=False)
        samples.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return statistics.median(samples), max(samples)


def run(blocks: int = 10_000, datasets: int = 1_000, repeat: int = 5) -> dict[str, Any]:
    from sharechain.node.app import create_app
    from sharechain.node.service import Node, NodeConfig
    from sharechain.web import mount

    with warnings.catch_warnings():  # Starlette 1.x would rather drive httpx2
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        source = base / "consortium"
        # Thresholds high enough that the bench's traffic raises no risk alert.
        risk = {"max_requests": 10**9, "max_key_releases": 10**9}
        # One node alone cosigns its checkpoints (quorum 1), so the checkpoint page has one.
        governance = {"risk": risk, "checkpoint_quorum": 1}
        # Genesis before the build's clock: transactions expire a day after signing.
        init_consortium(
            source, ORGS, consortium="bench", governance=governance, now=lambda: START - 1
        )
        node_dir = node_data_dir(source, base / "nodes" / OWNER, OWNER)
        t0 = time.perf_counter()
        ids = build(source, node_dir, blocks=blocks, datasets=datasets)
        built = time.perf_counter() - t0
        node = Node(NodeConfig(data_dir=node_dir, org=OWNER, verify_on_start=False))
        node.start()
        try:
            app = create_app(node, (mount,))
            app.state.console.accounts.add("anna", "approver", PASSWORD)
            pages = {
                "overview": "/ui/",
                "blocks": "/ui/blocks",
                "block": f"/ui/blocks/{blocks // 2}",
                "transaction": f"/ui/txs/{ids['tx']}",
                "catalogue": "/ui/datasets",
                "catalogue_search": "/ui/datasets?text=ward+3&owner=hospital-a",
                "dataset": f"/ui/datasets/{ids['dataset']}",
                "inbox": "/ui/inbox",
                "organisation": "/ui/org",
                "privacy": "/ui/privacy",
                "session": f"/ui/privacy/sessions/{ids['session']}",
                "checkpoints": "/ui/checkpoints",
            }
            with TestClient(app) as client:
                login = client.get("/ui/login").text
                token = login.split('name="csrf" value="')[1].split('"')[0]
                done = client.post(
                    "/ui/login",
                    data={"name": "anna", "password": PASSWORD, "csrf": token},
                    follow_redirects=False,
                )
                assert done.status_code == 303, done.text[:300]
                timed = {name: _time(client, path, repeat) for name, path in pages.items()}
            height = node.ledger.height
            txs = node.store.tx_count()
        finally:
            node.stop()
    out: dict[str, Any] = {
        "console_chain_blocks": height,
        "console_chain_transactions": txs,
        "console_chain_datasets": datasets,
        "console_chain_build_s": round(built, 1),
    }
    for name, (median, worst) in timed.items():
        out[f"console_page_{name}_ms"] = round(median, 1)
        out[f"console_page_{name}_max_ms"] = round(worst, 1)
    out["console_page_slowest_ms"] = max(m for m, _ in timed.values())
    return out


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    print(json.dumps(run(*args), indent=2, sort_keys=True))
