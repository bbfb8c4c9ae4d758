"""Benchmark: a node catching up on a backlog of blocks from its peers.

A node that was down, restored from a backup or newly admitted receives the
blocks it lacks from its peers and commits them as they arrive
(`sharechain.node.arrivals.apply_remote_blocks`, the path of `node start
--join` and of a follower behind the etcd log): each block fully validated,
the backlog committed a group of blocks per store transaction, every group
through one block pipeline (`FollowPipeline.stream`), each group's receipts,
attestation and metrics announced before the next commits.

A consortium of three organisations is made in a temporary directory; an
orderer's store builds `transactions` signed notary records into blocks of
`block_size` (not timed); a fresh node of another organisation, its signature
workers started as a running node's are, then applies the whole backlog.

`catchup_tx_per_s` is judged by the ceiling that judges one peer's commit
(`sharechain.bench.ledger`): the machine's Ed25519 verifications a second
(sampled before and after, the faster taken) times its cores, as
`catchup_share_of_ceiling` (the rate in
`catchup_ed25519_verify_per_s_per_core`); `catchup_cpu_us_per_tx` is the
node's process and its workers' CPU per transaction.

The same backlog is then caught up over HTTP, as `node start --join` and a
node restored from a backup do (`arrivals.catch_up_from_peers`): a peer node
holding the blocks runs in a process of its own, and a fresh node fetches them
through a link that delivers every chunk `LINK_DELAY_MS` late each way (a
`faults.proxy.LinkProxy`: 25 ms, a round trip of 50 ms, as between two
regions). `catchup_link_tx_per_s` is its rate; `catchup_link_ratio` that rate
over `catchup_tx_per_s`, the share of the local rate the link leaves (the next
page is fetched while the last commits, `node.fetch_ahead`).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from sharechain.api.client import NodeClient
from sharechain.bench.ledger import (
    bracketing_rate,
    ceiling_figures,
    ed25519_verify_per_s_per_core,
    order_blocks,
)
from sharechain.contracts import default_registry
from sharechain.errors import SharechainError
from sharechain.faults.proxy import LinkProxy
from sharechain.ledger.blocks import decode_block
from sharechain.ledger.chain import Ledger
from sharechain.ledger.pipeline import workers_cpu_seconds
from sharechain.ledger.store import Head, Store
from sharechain.ledger.transactions import sign_transaction
from sharechain.node.arrivals import apply_remote_blocks, catch_up_from_peers
from sharechain.node.launcher import node_data_dir
from sharechain.node.service import Node, NodeConfig
from sharechain.ordering.etcd_process import free_ports
from sharechain.storage.datadir import OrgSpec, init_consortium

__all__ = ["LINK_DELAY_MS", "run"]

LINK_DELAY_MS = 25
"""How late the link to the peer delivers every chunk, each way (ms)."""

_ORGS = (
    OrgSpec("hospital-a", ("member", "admin")),
    OrgSpec("bank-b", ("member", "admin")),
    OrgSpec("regulator", ("member", "supervisor", "admin")),
)


def run(transactions: int = 32_000, block_size: int = 400) -> dict[str, Any]:
    """Measure a fresh node applying a backlog of `transactions` in blocks of `block_size`."""
    before = ed25519_verify_per_s_per_core()
    with tempfile.TemporaryDirectory(prefix="sharechain-bench-") as tmp:
        source = Path(tmp) / "consortium"
        dd = init_consortium(source, _ORGS, consortium="bench")
        genesis = dd.genesis_bytes()
        start = decode_block(genesis).header.timestamp
        key = dd.keys("hospital-a").signing
        raws = [
            sign_transaction(
                key,
                "notary.record",
                "hospital-a",
                {"digest": hashlib.sha256(i.to_bytes(8, "big")).digest(), "note": f"file {i}"},
                now=lambda: start / 1000,  # signed as the chain starts: blocks follow
            ).raw
            for i in range(transactions)
        ]
        orderer = Ledger(Store(Path(tmp) / "orderer.db"), default_registry())
        orderer.commit(decode_block(genesis))
        blocks = order_blocks(orderer, raws, block_size, key, org="hospital-a", start=start)
        want = orderer.store.head()
        orderer.store.close()

        home = node_data_dir(source, Path(tmp) / "node", "bank-b")
        node = Node(NodeConfig(data_dir=home, org="bank-b", verify_on_start=False))
        try:
            node.pipeline.start()  # a running node has its workers up already
            workers = workers_cpu_seconds()
            t0, cpu = time.perf_counter(), time.process_time()
            committed = apply_remote_blocks(node, list(enumerate(blocks, 1)))
            seconds = time.perf_counter() - t0
            cpu = time.process_time() - cpu
            after_workers = workers_cpu_seconds()
            if committed != len(blocks) or node.halted is not None:
                raise RuntimeError(f"the node committed {committed} of {len(blocks)} blocks")
            if node.store.head() != want:
                raise RuntimeError("the node's head differs from the orderer's")
        finally:
            node.stop()
        link_seconds = _over_a_link(source, Path(tmp), blocks, want)
    rate = bracketing_rate(before, ed25519_verify_per_s_per_core())
    tx_per_s = transactions / seconds
    if workers is not None and after_workers is not None:
        cpu += after_workers - workers
    return {
        "catchup_transactions": transactions,
        "catchup_block_size": block_size,
        "catchup_tx_per_s": round(tx_per_s),
        "catchup_cpu_us_per_tx": round(cpu / transactions * 1e6, 1),
        "catchup_share_of_ceiling": ceiling_figures(tx_per_s, rate)["share"],
        "catchup_link_delay_ms": LINK_DELAY_MS,
        "catchup_link_tx_per_s": round(transactions / link_seconds),
        "catchup_link_ratio": round(seconds / link_seconds, 3),
        # The verification rate it is judged against (the faster of its two samples).
        "catchup_ed25519_verify_per_s_per_core": round(rate),
    }


def _over_a_link(source: Path, tmp: Path, blocks: list[bytes], head: Head | None) -> float:
    """Seconds a fresh bank-b node takes to catch up `blocks` from a hospital-a node
    running in its own process, through a link `LINK_DELAY_MS` late each way."""
    peer_home = node_data_dir(source, tmp / "peer", "hospital-a")
    peer = Node(NodeConfig(data_dir=peer_home, org="hospital-a", verify_on_start=False))
    try:
        if apply_remote_blocks(peer, list(enumerate(blocks, 1))) != len(blocks):
            raise RuntimeError("the peer did not commit the backlog")
    finally:
        peer.stop()
    (port,) = free_ports(1)
    command = "from sharechain.cli.main import main; main()"
    args = ("node", "start", "--org", "hospital-a", "-d", str(peer_home))
    with (tmp / "peer.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", command, *args, "--listen", f"127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    proxy = LinkProxy(port).start()
    try:
        proxy.delay(LINK_DELAY_MS / 1000)
        home = node_data_dir(source, tmp / "linked", "bank-b")
        peers = (("hospital-a", proxy.url),)
        node = Node(NodeConfig(data_dir=home, org="bank-b", verify_on_start=False, peers=peers))
        try:
            node.pipeline.start()
            _wait_serving(node, proc, tmp / "peer.log")
            t0 = time.perf_counter()
            catch_up_from_peers(node)
            link_seconds = time.perf_counter() - t0
            if node.ledger.height != len(blocks) or node.store.head() != head:
                raise RuntimeError(f"over the link the node reached {node.ledger.height} only")
        finally:
            node.stop()
    finally:
        proxy.close()
        proc.terminate()
        proc.wait(timeout=30)
    return link_seconds


def _wait_serving(node: Node, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the peer answers through the link (at most 60 s)."""
    ((_, url),) = node.config.peers
    client = NodeClient(url, node.org, node.keys.signing, timeout=5.0)
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError(f"the peer node exited: {log.read_text()[-2000:]}")
            try:
                client.status()
                return
            except (httpx.HTTPError, SharechainError):
                time.sleep(0.1)
        raise RuntimeError("the peer node did not answer within 60 s")
    finally:
        client.close()


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
