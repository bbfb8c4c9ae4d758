"""Replication between nodes in this process: solo following, etcd ordering, attestations."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from node_helpers import Consortium, Running, run_node, shutdown

from sharechain.contracts import membership
from sharechain.crypto.keyfile import OrgKeys
from sharechain.crypto.signing import verify
from sharechain.ledger.attestations import verify_attestation
from sharechain.ledger.blocks import BLOCK_DOMAIN, decode_block
from sharechain.ledger.transactions import sign_transaction
from sharechain.ordering.etcd_process import EtcdCluster
from sharechain.storage.datadir import DataDir


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)


def _records(consortium: Consortium, org: str, n: int, tag: int = 0) -> list[bytes]:
    key = consortium.keys(org).signing
    return [
        sign_transaction(key, "notary.record", org, {"digest": bytes([tag, i % 256]) * 16}).raw
        for i in range(n)
    ]


def _same_head(nodes: list[Running]) -> bool:
    heads = [n.node.store.head() for n in nodes]
    return len({(h.height, h.hash, h.state_root) for h in heads if h}) == 1


def test_solo_followers_stream_blocks_and_forward_submissions(
    consortium: Consortium, orderer: Running
) -> None:
    followers = [
        run_node(
            consortium,
            org,
            orderer_url=orderer.url,
            peers=(("hospital-a", orderer.url),),
            poll_interval=0.2,
        )
        for org in ("bank-b", "regulator")
    ]
    try:
        with orderer.client() as client:
            client.submit(_records(consortium, "hospital-a", 20))
        with followers[0].client() as client:
            receipts = client.submit(_records(consortium, "bank-b", 30, tag=1))
        assert {r.code for r in receipts} == {"valid"}
        wait_until(lambda: _same_head([orderer, *followers]))
        assert followers[1].node.ledger.height == orderer.node.ledger.height
        # Attestations flow: the followers compared the orderer's with their own chain.
        wait_until(lambda: any(p.checked >= 1 and p.agrees for p in followers[0].node.book.peers()))
        with followers[0].client() as client:
            status = client.attestation_status()
        assert status["ok"] and status["peers"][0]["org"] == "hospital-a"
    finally:
        for f in followers:
            shutdown(f)


def test_a_follower_catches_up_on_start(consortium: Consortium, orderer: Running) -> None:
    with orderer.client() as client:
        for tag in range(3):
            client.submit(_records(consortium, "hospital-a", 10, tag=tag))
    late = run_node(consortium, "bank-b", orderer_url=orderer.url)
    try:
        wait_until(lambda: _same_head([orderer, late]))
        assert late.node.ledger.height >= 3
    finally:
        shutdown(late)


def test_etcd_ordering_concurrent_writers_never_fork(
    consortium: Consortium, tmp_path: Path
) -> None:
    with EtcdCluster(tmp_path / "etcd", members=3) as cluster:
        nodes = [
            run_node(
                consortium,
                org,
                ordering="etcd",
                etcd_endpoints=cluster.endpoints,
                max_wait=0.01,
                max_block_txs=50,
            )
            for org in ("hospital-a", "bank-b", "regulator")
        ]
        try:

            def load(i: int) -> list[str]:
                running = nodes[i]
                with running.client() as client:
                    codes = []
                    for round_ in range(4):
                        raws = _records(consortium, running.node.org, 40, tag=10 * i + round_)
                        codes += [r.code for r in client.submit(raws)]
                    return codes

            with ThreadPoolExecutor(3) as pool:
                results = list(pool.map(load, range(3)))
            assert all(c == ["valid"] * 160 for c in results)
            wait_until(lambda: _same_head(nodes))
            # Each height was won by exactly one writer: the wins add up to the height.
            won = sum(
                n.node.metrics.registry.get_sample_value(
                    "sharechain_blocks_appended_total", {"outcome": "won"}
                )
                or 0
                for n in nodes
            )
            assert won == nodes[0].node.ledger.height
            # Every transaction is in exactly one block; the chain verifies on every node.
            from sharechain.ledger.chain import verify_chain

            for n in nodes:
                report = verify_chain(n.node.store, n.node.registry)
                assert report.ok and report.transactions == 480 + 1
        finally:
            for n in nodes:
                shutdown(n)


def test_a_paused_leader_sees_blocks_of_a_node_that_does_not_forward_to_it(
    consortium: Consortium, tmp_path: Path
) -> None:
    # The leader that appended the log's head pauses its watch; a node with no peer
    # URL for the leader builds and appends its own blocks. The leader must still
    # read them: the paused watch rereads the log's head.
    with EtcdCluster(tmp_path / "etcd", members=1) as cluster:
        options = {"ordering": "etcd", "etcd_endpoints": cluster.endpoints, "max_wait": 0.01}
        leader = run_node(consortium, "hospital-a", **options)
        other: Running | None = None
        try:
            wait_until(lambda: leader.node.leader is not None)
            assert leader.node.leader is not None and leader.node.leader.org == "hospital-a"
            with leader.client() as client:
                assert {r.code for r in client.submit(_records(consortium, "hospital-a", 3))} == {
                    "valid"
                }
            wait_until(lambda: leader.node.watch_paused)
            other = run_node(consortium, "bank-b", **options)
            with other.client() as client:
                (receipt,) = client.submit(_records(consortium, "bank-b", 1, tag=7))
            assert receipt.code == "valid"
            wait_until(lambda: leader.node.ledger.height >= receipt.height, timeout=10.0)
            assert _same_head([leader, other])
        finally:
            for n in (other, leader):
                if n is not None:
                    shutdown(n)


def _rotate(running: Running, org: str, *, save: bool = True) -> OrgKeys:
    """Rotate `org`'s keys on the chain (signed with the old key), then (with `save`) its
    node's key file."""
    new = OrgKeys.generate(org)
    msg = membership.rotation_message(org, new.signing.public_key, new.encryption_public)
    payload = {
        "sign_key": new.signing.public_key,
        "enc_key": new.encryption_public,
        "proof": new.signing.sign(membership.ROTATE_DOMAIN, msg),
    }
    raw = sign_transaction(running.consortium.keys(org).signing, membership.ROTATE, org, payload)
    with running.client(org) as client:
        client.submit_checked(raw.raw)
    if save:
        DataDir.open(running.consortium.node_dir(org)).save_keys(new)  # as `org rotate-key`
    return new


def test_a_follower_behind_its_own_rotation_fetches_it_with_the_key_file_s_key(
    consortium: Consortium, orderer: Running
) -> None:
    """The orderer's chain names bank-b's new key before the follower has the block that
    says so: every request signed with the old key is refused, so only the key file's
    key can fetch that block (before, the follower stayed behind for good)."""
    new = _rotate(orderer, "bank-b", save=False)
    follower = run_node(consortium, "bank-b", orderer_url=orderer.url)
    try:
        time.sleep(1.0)  # refused: it holds the old key, and the file holds it too
        assert follower.node.ledger.height == 0
        DataDir.open(consortium.node_dir("bank-b")).save_keys(new)  # `org rotate-key`
        wait_until(lambda: follower.node.ledger.height == orderer.node.ledger.height)
        assert follower.node.keys.signing.public_key == new.signing.public_key
    finally:
        shutdown(follower)


def test_nodes_pick_up_rotated_keys_without_a_restart(
    consortium: Consortium, orderer: Running
) -> None:
    follower = run_node(consortium, "bank-b", orderer_url=orderer.url, key_check_interval=0.05)
    try:
        new_a = _rotate(orderer, "hospital-a")  # the orderer's organisation: blocks, attestations
        new_b = _rotate(orderer, "bank-b")  # the follower's: its requests to the orderer
        with orderer.client("regulator") as client:
            (receipt,) = client.submit(_records(consortium, "regulator", 1, tag=9))
        assert receipt.ok
        # The orderer built that block with its new key...
        data = orderer.node.store.block_bytes(receipt.height)
        assert data is not None
        block = decode_block(data)
        verify(new_a.signing.public_key, block.signature, BLOCK_DOMAIN, block.header.encoded())
        wait_until(lambda: orderer.node.book.own()[-1].height >= receipt.height)
        verify_attestation(orderer.node.book.own()[-1], new_a.signing.public_key)
        # ...and the follower, whose old key the orderer now refuses, still streams blocks.
        wait_until(lambda: follower.node.ledger.height >= receipt.height)
        assert follower.node.keys.signing.public_key == new_b.signing.public_key
        assert orderer.node.ready and follower.node.ready
    finally:
        shutdown(follower)
