"""Attack 46: a member hands a node catching up a block it re-signed as its own.

A member's etcd client overwrites blocks still in the log, or its node serves
them to a peer that asks, with blocks it signed itself: the same transactions
and results, its own name as orderer, linked to the block before (and, for a
whole tail, to each other). Each is valid in every way a node can check alone.
Or it keeps a committed block's genuine header and signature over another
block's transactions: that block hashes like the genuine one.
Before this defence a node catching up from etcd committed them and forked
for good: the next block the leader appended did not link to its chain.

Now a node catching up commits only the blocks more than half of its peers
vouch for by their signed attestations (`node.vouching`): it walks back from
the vouched block, refuses every other with an ALERT (kept as evidence when a
member signed it) and takes the vouched one from its peers. Real nodes on a
real 3-member etcd with TLS and authentication, the hostile member using its
own node's etcd credentials, or posing as a peer over HTTP.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))

from liar_server import Quiet, serving
from node_helpers import ORGS, Consortium, Running, etcd_network, run_node, shutdown
from test_catch_up_lying_peer import WITNESS, behind_a_liar
from test_etcd_junk_keys import _commit_rounds
from test_replication import _records, wait_until

from sharechain.codec import encode
from sharechain.crypto.signing import SigningKey
from sharechain.ledger.attestations import sign_attestation
from sharechain.ledger.blocks import decode_block, encode_block, make_block, sign_header
from sharechain.ledger.store_rows import Head
from sharechain.ordering.etcd_log import EtcdLog
from sharechain.storage.datadir import OrgSpec, init_consortium

HOSTILE = "bank-b"
HONEST = ("hospital-a", "regulator")
BEHIND = "regulator"


def _forge(chain: list[bytes], key: SigningKey, org: str, *, linked: bool) -> list[bytes]:
    """`chain`'s blocks re-signed by `org` as their orderer; with `linked`, each links to
    the forged block before it (a whole forged chain), else to the genuine one."""
    out: list[bytes] = []
    prev: bytes | None = None
    for data in chain:
        block = decode_block(data)
        header = dataclasses.replace(block.header, orderer=org)
        if linked and prev is not None:
            header = dataclasses.replace(header, prev_hash=prev)
        forged = dataclasses.replace(block, header=header, signature=sign_header(header, key))
        out.append(encode_block(forged))
        prev = header.hash()
    return out


def _same_chain(a: Running, b: Running) -> None:
    assert a.node.ledger.height == b.node.ledger.height
    for h in range(a.node.ledger.height + 1):
        assert a.node.store.block_bytes(h) == b.node.store.block_bytes(h), h
    assert a.node.store.head() == b.node.store.head()


def _swap_body(data: bytes, other: bytes) -> bytes:
    """`data`'s genuine header and signature over `other`'s transactions and results: it
    hashes like `data` (a block's hash covers its header alone)."""
    block, body = decode_block(data), decode_block(other)
    return encode_block(make_block(block.header, block.signature, body.txs, body.results))


@pytest.mark.parametrize("how", ["one-block", "whole-tail", "swapped-body"])
def test_blocks_rewritten_in_etcd_are_refused_by_a_node_catching_up(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    # No pruning: the rewritten blocks stay in etcd for the node catching up to read.
    options: dict[str, object] = {"compaction_interval": 3600.0}
    with etcd_network(tmp_path, HONEST, tls=True, **options) as (cluster, consortium, running):
        _commit_rounds(running, 1, tag=1)
        behind = running.pop(BEHIND)
        port = int(behind.url.rsplit(":", 1)[1])
        start = behind.node.ledger.height + 1
        shutdown(behind)
        _commit_rounds(running, 4, tag=10)
        ahead = running["hospital-a"]
        head = ahead.node.ledger.height
        assert head >= start + 2
        genuine = [ahead.node.store.block_bytes(h) or b"" for h in range(start, head + 1)]
        if how == "swapped-body":
            # The genuine header over the next block's transactions: a replay in disguise.
            forged = [_swap_body(genuine[0], genuine[1])]
            assert decode_block(forged[0]).hash() == decode_block(genuine[0]).hash()
        else:
            if how == "one-block":
                genuine = genuine[:1]  # the blocks above it still link to the real one
            linked = how == "whole-tail"
            forged = _forge(genuine, consortium.keys(HOSTILE).signing, HOSTILE, linked=linked)
        with EtcdLog(cluster.endpoints, tls=cluster.client_tls(HOSTILE)) as hostile:
            for height, data in enumerate(forged, start):
                hostile.call(
                    "/v3/kv/put",
                    {
                        "key": base64.b64encode(hostile.block_key(height)).decode(),
                        "value": base64.b64encode(data).decode(),
                    },
                )
            assert hostile.get(start) == forged[0]
        caplog.set_level(logging.WARNING, logger="sharechain.node")
        back = run_node(
            consortium,
            BEHIND,
            port=port,
            ordering="etcd",
            etcd_endpoints=cluster.endpoints,
            etcd_tls=cluster.client_tls(BEHIND),
            peers=(("hospital-a", ahead.url),),
            max_wait=0.01,
            poll_interval=0.5,
            **options,
        )
        running[BEHIND] = back
        wait_until(lambda: back.node.ledger.height >= head, timeout=30.0)
        assert back.node.halted is None
        _same_chain(back, ahead)
        refused = back.node.metrics.registry.get_sample_value(
            "sharechain_unvouched_blocks_total", {"source": "etcd"}
        )
        assert refused is not None and refused >= len(forged)
        alerts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ALERT")]
        signer = "nobody signed" if how == "swapped-body" else f"signed by {HOSTILE}"
        wrong = f"the etcd log offers at height {start} a block {signer}"
        assert any(wrong in a and "hospital-a vouch for" in a for a in alerts), alerts
        kept = list((back.node.datadir.path / "evidence").glob(f"*-{start}-*"))
        if how == "swapped-body":
            assert kept == []  # nobody signed that body: it proves nothing of anyone
        else:
            assert len(kept) == 1 and kept[0].read_bytes() == forged[0]
            assert HOSTILE in kept[0].name
        # It follows the log as a current node from here on.
        _commit_rounds(running, 2, tag=30)
        _same_chain(back, ahead)


@pytest.fixture
def consortium(tmp_path: Path) -> Consortium:
    orgs = (*ORGS, OrgSpec(WITNESS, ("member",)))
    init_consortium(tmp_path / "consortium", orgs, consortium="test")
    return Consortium(tmp_path / "consortium", tmp_path)


def _liar(blocks: list[bytes], key: SigningKey, heads: list[Head]) -> Iterator[str]:
    """A real HTTP server posing as regulator's node: it serves `blocks` (from height 1)
    and attests, signed with regulator's key, to `heads` (the forged chain's)."""
    attestations = [sign_attestation("regulator", key, h).to_json() for h in heads]

    class Handler(Quiet):
        def do_GET(self) -> None:
            if not self.path.startswith("/v1/sync/blocks"):  # status, health
                body = {"org": "regulator", "height": len(blocks), "attestations": attestations}
                self.send_json(200, json.dumps(body).encode())
                return
            start = int(self.path.split("start=")[1].split("&")[0])
            data = encode(blocks[start - 1 : start + 63])
            self.send_response(200)
            self.send_header("content-type", "application/cbor")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    with serving(Handler) as url:
        yield url


def test_a_peer_serving_a_chain_it_re_signed_is_refused(
    consortium: Consortium, caplog: pytest.LogCaptureFixture
) -> None:
    honest = run_node(consortium, "hospital-a", max_wait=0.005)
    witness = None
    try:
        with honest.client() as client:
            for tag in range(5):
                client.submit(_records(consortium, "hospital-a", 2, tag=tag))
        witness = run_node(consortium, WITNESS, orderer_url=honest.url)
        head = honest.node.ledger.height
        wait_until(lambda: witness is not None and witness.node.ledger.height == head)
        genuine = [honest.node.store.block_bytes(h) or b"" for h in range(1, head + 1)]
        liar_key = consortium.keys("regulator").signing
        forged = _forge(genuine, liar_key, "regulator", linked=True)
        metas = [honest.node.store.block_meta(h) for h in range(1, head + 1)]
        heads = [
            dataclasses.replace(meta, hash=decode_block(f).hash())
            for meta, f in zip(metas, forged, strict=True)
            if meta is not None
        ]
        caplog.set_level(logging.INFO, logger="sharechain.node")
        for liar_url in _liar(forged, liar_key, heads):
            # The liar is asked first, and vouches for its own chain: one voice of three.
            late = behind_a_liar(consortium, liar_url, honest, witness)
            try:
                assert late.node.halted is None
                _same_chain(late, honest)
            finally:
                shutdown(late)
    finally:
        if witness is not None:
            shutdown(witness)
        shutdown(honest)
    alerts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ALERT")]
    wrong = f"peer regulator offers at height {head} a block signed by regulator"
    assert any(wrong in a and "hospital-a, insurer-d vouch for" in a for a in alerts), alerts
