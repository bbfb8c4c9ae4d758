"""An anchored proof: A's bundle of a dataset registration plus B's bundle of the
`anchor.record` of A's checkpoint, checked offline; each mismatch refused with its reason."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sharechain.contracts.anchors import FOLLOW, RECORD
from sharechain.ledger.anchored import (
    AnchorError,
    follow_payload,
    record_payload,
    verify_anchored,
)
from sharechain.ledger.bundles import build_bundle
from sharechain.ledger.checkpoints import block_hashes, checkpoint_of, cosign, signed_checkpoint
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import sign_transaction
from sharechain.node.launcher import LocalNetwork
from sharechain.sharing import publish
from sharechain.sharing.embedded import Embedded
from sharechain.sharing.local import local_ports
from sharechain.sharing.records import Listing
from sharechain.storage.datadir import DataDir, OrgSpec, init_consortium

ORGS = (OrgSpec("bank-a", ("member", "admin")), OrgSpec("bank-b", ("member", "admin")))


def _open(path: Path, name: str) -> Embedded:
    init_consortium(path, ORGS, consortium=name)
    return Embedded(path)


def _note(emb: Embedded) -> str:
    """The latest checkpoint of `emb`'s chain, cosigned by every member."""
    hashes = block_hashes(emb.store)
    cp = checkpoint_of(hashes, f"sharechain/{hashes[0].hex()}")
    return signed_checkpoint(cp, [cosign(cp, o.id, emb.keys(o.id).signing) for o in ORGS])


@dataclass
class Proofs:
    """A's bundle of a registration, B's bundle of the anchor, and what made them."""

    a: Embedded
    b: Embedded
    bundle_a: dict[str, Any]
    anchor_b: dict[str, Any]
    register_tx: bytes
    record_tx: bytes


@pytest.fixture
def proofs(tmp_path: Path) -> Iterator[Proofs]:
    a, b = _open(tmp_path / "a", "hospitals"), _open(tmp_path / "b", "regulators")
    src = tmp_path / "records.csv"
    src.write_bytes(b"id,value\n1,2\n")
    pub = publish.publish(local_ports(a), "bank-a", src, Listing("records"))
    b.submit("bank-a", FOLLOW, follow_payload(a.store))
    note_a = _note(a)
    record = b.submit("bank-b", RECORD, record_payload(a.store, note_a, 1, (0, 0)))
    yield Proofs(
        a,
        b,
        build_bundle(a.store, pub.tx_id, note_a),
        build_bundle(b.store, record.tx_id, _note(b)),
        pub.tx_id,
        record.tx_id,
    )
    a.close()
    b.close()


def test_the_pair_shows_the_registration_was_on_a_by_bs_block(proofs: Proofs) -> None:
    got = verify_anchored(proofs.bundle_a, proofs.anchor_b)
    assert (got.tx_id, got.anchor_tx_id) == (proofs.register_tx, proofs.record_tx)
    assert got.origin == f"sharechain/{block_hashes(proofs.a.store, 1)[0].hex()}"
    assert got.anchor_origin == f"sharechain/{block_hashes(proofs.b.store, 1)[0].hex()}"
    loc = proofs.b.store.tx_location(proofs.record_tx)
    assert loc is not None and got.anchor_height == loc.height
    meta = proofs.b.store.block_meta(loc.height)
    assert meta is not None and got.anchor_time == meta.timestamp
    assert got.size == len(block_hashes(proofs.a.store))


def test_a_bundle_from_a_third_consortium_is_refused(proofs: Proofs, tmp_path: Path) -> None:
    c = _open(tmp_path / "c", "others")
    try:
        tx = c.submit("bank-a", "notary.record", {"digest": bytes(32), "note": ""}).tx_id
        bundle_c = build_bundle(c.store, tx, _note(c))
    finally:
        c.close()
    with pytest.raises(AnchorError, match="the anchor records a checkpoint of sharechain/"):
        verify_anchored(bundle_c, proofs.anchor_b)


def test_a_bundle_under_another_checkpoint_is_refused(proofs: Proofs) -> None:
    proofs.a.submit("bank-b", "notary.record", {"digest": bytes(32), "note": ""})
    later = build_bundle(proofs.a.store, proofs.register_tx, _note(proofs.a))
    with pytest.raises(AnchorError, match="build it under the recorded checkpoint"):
        verify_anchored(later, proofs.anchor_b)


def test_the_anchor_bundle_must_prove_an_anchor_record(proofs: Proofs) -> None:
    follow = next(
        e.tx_id
        for e in proofs.b.store.history(f"anchor/{block_hashes(proofs.a.store, 1)[0].hex()}")
    )
    other = build_bundle(proofs.b.store, follow, _note(proofs.b))
    with pytest.raises(
        AnchorError, match=r"proves a anchor\.follow transaction, not an anchor\.record"
    ):
        verify_anchored(proofs.bundle_a, other)


def test_tampered_bundles_are_refused_with_the_side_named(proofs: Proofs) -> None:
    bad_a = copy.deepcopy(proofs.bundle_a)
    bad_a["txs"][0]["index"] = 3
    with pytest.raises(AnchorError, match=r"^bundle of A: .*is not in block"):
        verify_anchored(bad_a, proofs.anchor_b)
    bad_b = copy.deepcopy(proofs.anchor_b)
    bad_b["checkpoint"] = proofs.bundle_a["checkpoint"]
    with pytest.raises(AnchorError, match=r"^anchor bundle of B: "):
        verify_anchored(proofs.bundle_a, bad_b)


@pytest.mark.slow
def test_two_etcd_ordered_networks_side_by_side(tmp_path: Path) -> None:
    """Each consortium on its own etcd cluster and node processes; B's node records A's
    checkpoint and the pair, read from the nodes' own stores, verifies."""
    nets: list[LocalNetwork] = []
    try:
        # One after the other: B picks its ports while A's processes hold theirs.
        for name in ("a", "b"):
            nets.append(
                LocalNetwork(
                    tmp_path / name,
                    orgs=2,
                    ordering="etcd",
                    node_options=("--log-level", "warning", "--max-wait-ms", "10"),
                )
            )
            nets[-1].up(timeout=90)
        net_a, net_b = nets
        org_a, org_b = net_a.nodes[0].org, net_b.nodes[0].org

        def submit(net: LocalNetwork, org: str, type: str, payload: dict[str, Any]) -> bytes:
            stx = sign_transaction(net.keys(org).signing, type, org, payload)
            with net.client(org) as c:
                return c.submit_checked(stx.raw).tx_id

        tx = submit(net_a, org_a, "notary.record", {"digest": bytes(range(32)), "note": "v1"})
        with _store(net_a, org_a, tx) as store_a:
            hashes = block_hashes(store_a)
            cp = checkpoint_of(hashes, f"sharechain/{hashes[0].hex()}")
            cp_a_size = cp.size
            note_a = signed_checkpoint(
                cp, [cosign(cp, n.org, net_a.keys(n.org).signing) for n in net_a.nodes]
            )
            submit(net_b, org_b, FOLLOW, follow_payload(store_a))
            record = submit(net_b, org_b, RECORD, record_payload(store_a, note_a, 1, (0, 0)))
            bundle_a = build_bundle(store_a, tx, note_a)
        with _store(net_b, org_b, record) as store_b:
            hashes = block_hashes(store_b)
            cp = checkpoint_of(hashes, f"sharechain/{hashes[0].hex()}")
            note_b = signed_checkpoint(
                cp, [cosign(cp, n.org, net_b.keys(n.org).signing) for n in net_b.nodes]
            )
            anchor_b = build_bundle(store_b, record, note_b)
        got = verify_anchored(bundle_a, anchor_b)
        assert (got.tx_id, got.anchor_tx_id, got.size) == (tx, record, cp_a_size)
    finally:
        for net in nets:
            net.down()


@contextmanager
def _store(net: LocalNetwork, org: str, tx: bytes) -> Iterator[Store]:
    """`org`'s node's own store, once it has committed `tx`."""
    store = Store(DataDir.open(net.spec(org).data_dir).db_path)
    try:
        deadline = time.monotonic() + 30
        while store.tx_location(tx) is None:  # the submitting node answered once committed
            assert time.monotonic() < deadline, f"{org}'s node never committed the transaction"
            time.sleep(0.05)
        yield store
    finally:
        store.close()
