"""State snapshots on a running 3-node network: made alike everywhere, vouched for, refused
when a peer lies, and a node behind starting from one and syncing forward."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from node_helpers import Consortium, Running, shutdown
from test_replication import wait_until
from typer.testing import CliRunner

from sharechain.cli.main import app
from sharechain.codec import decode, encode
from sharechain.errors import NotFoundError
from sharechain.ledger.blocks import decode_block
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import sign_transaction
from sharechain.node.server import ServerThread
from sharechain.node.service import Node, NodeConfig
from sharechain.node.snapshots import start_from_snapshot
from sharechain.ordering.etcd_process import free_ports
from sharechain.storage import snapshot as snap
from sharechain.storage import snapshot_format
from sharechain.storage.datadir import init_consortium
from sharechain.storage.snapshot import SnapshotRefusedError, load_snapshot, read_manifest
from sharechain.storage.snapshot_evidence import check_quorum, sign_voucher

ORGS = ("hospital-a", "bank-b", "regulator")
EVERY = 3


def _with_settings(source: Path, **settings: object) -> None:
    cfg = source / "consortium.json"
    body = json.loads(cfg.read_text())
    cfg.write_text(json.dumps({**body, "settings": {**body.get("settings", {}), **settings}}))


@pytest.fixture
def consortium(tmp_path: Path) -> Consortium:
    from node_helpers import ORGS as SPECS

    init_consortium(tmp_path / "consortium", SPECS, consortium="test")
    _with_settings(tmp_path / "consortium", snapshot_blocks=EVERY)
    return Consortium(tmp_path / "consortium", tmp_path)


class Net:
    def __init__(self, consortium: Consortium) -> None:
        self.consortium = consortium
        self.ports = dict(zip(ORGS, free_ports(len(ORGS)), strict=True))
        self.running: dict[str, Running] = {}

    def url(self, org: str) -> str:
        return f"http://127.0.0.1:{self.ports[org]}"

    def peers(self, org: str) -> tuple[tuple[str, str], ...]:
        return tuple((o, self.url(o)) for o in ORGS if o != org)

    def start(self, org: str) -> Running:
        orderer = None if org == ORGS[0] else self.url(ORGS[0])
        node = Node(
            NodeConfig(
                data_dir=self.consortium.node_dir(org),
                org=org,
                orderer_url=orderer,
                peers=self.peers(org),
                poll_interval=0.2,
                max_wait=0.002,
            )
        )
        node.start()
        running = Running(node, ServerThread(node, port=self.ports[org]).start(), self.consortium)
        self.running[org] = running
        return running

    def stop(self, org: str) -> None:
        shutdown(self.running.pop(org))

    def submit(self, org: str, tag: int) -> None:
        key = self.consortium.keys(org).signing
        raws = [
            sign_transaction(key, "notary.record", org, {"digest": bytes([tag, i]) * 16}).raw
            for i in range(5)
        ]
        with self.running[org].client() as client:
            assert {r.code for r in client.submit(raws)} == {"valid"}


@pytest.fixture
def net(consortium: Consortium) -> Iterator[Net]:
    network = Net(consortium)
    try:
        for org in ORGS:
            network.start(org)
        yield network
    finally:
        for org in list(network.running):
            network.stop(org)


def _frames(path: Path) -> tuple[bytes, list[bytes]]:
    data = path.read_bytes()
    pos = len(snap.MAGIC)
    frames = []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        frames.append(data[pos : pos + 4 + n])
        pos += 4 + n
    return frames[0], frames[1:]


def _rewrite(path: Path, out: Path, change: object) -> None:
    """A liar's copy: items changed by `change(value) -> value`, content hash made to fit."""
    _, items = _frames(path)
    info = read_manifest(path)
    new = []
    for frame in items:
        value = change(decode(frame[4:]))  # type: ignore[operator]
        body = encode(value)
        new.append(struct.pack(">I", len(body)) + body)
    content = hashlib.sha256(b"".join(new)).digest()
    forged = snap.SnapshotInfo(
        info.genesis_hash, info.height, info.block_hash, info.state_root, content, info.rows
    )
    out.write_bytes(snap.MAGIC + snapshot_format.manifest_frame(forged) + b"".join(new))


def _state(store: Store) -> list[tuple[str, bytes]]:
    return store.scan("")


def test_a_node_behind_starts_from_a_vouched_snapshot_and_a_lying_one_is_refused(
    net: Net, consortium: Consortium, tmp_path: Path
) -> None:
    net.submit("hospital-a", 1)
    wait_until(lambda: all(r.node.ledger.height >= 1 for r in net.running.values()))
    net.stop("bank-b")  # behind from here on
    for tag in range(2, 9):
        net.submit("hospital-a", tag)
    a, reg = net.running["hospital-a"], net.running["regulator"]
    wait_until(lambda: reg.node.ledger.height == a.node.ledger.height >= 2 * EVERY)
    wait_until(
        lambda: all(
            any(i.height == 2 * EVERY for i, _, _ in r.node.snapshots.held())
            for r in net.running.values()
        )
    )
    # Every honest node wrote the same bytes at the same height.
    made = {
        org: next(i for i, _, _ in r.node.snapshots.held() if i.height == 2 * EVERY)
        for org, r in net.running.items()
    }
    assert len({i.content_hash for i in made.values()}) == 1

    # `node snapshot` copies the newest one out of a data directory.
    out = tmp_path / "a.snap"
    result = CliRunner().invoke(
        app,
        [
            "node",
            "snapshot",
            "--out",
            str(out),
            "--data-dir",
            str(a.node.config.data_dir),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    honest = read_manifest(out)
    assert json.loads(result.output)["height"] == honest.height >= 2 * EVERY

    b_dir = consortium.node_dir("bank-b")
    before = (b_dir / "ledger.db").read_bytes()
    peers = net.peers("bank-b")

    def refused(path: Path) -> SnapshotRefusedError:
        with pytest.raises(SnapshotRefusedError) as caught:
            start_from_snapshot(b_dir, "bank-b", str(path), peers)
        assert (b_dir / "ledger.db").read_bytes() == before  # nothing overwritten
        assert not list(b_dir.glob("ledger.db.snapshot-tmp*"))
        return caught.value

    # A liar changes a row (a grant, a key...) and makes its manifest fit: no quorum vouches.
    def change_row(value: list) -> list:  # type: ignore[type-arg]
        if value[0] == "rows" and value[1] == "state":
            key, _ = value[2][0]
            value[2][0] = [key, encode({"forged": True})]
        return value

    lie = tmp_path / "lie-state.snap"
    _rewrite(out, lie, change_row)
    exc = refused(lie)
    assert exc.reason == "evidence" and "vouched for by 0 member(s)" in str(exc)

    # A liar alters an old header: the headers no longer lead to the vouched block.
    def change_header(value: list) -> list:  # type: ignore[type-arg]
        if value[0] == "headers":
            header = decode(value[1][2][0])
            value[1][2][0] = encode({**header, "timestamp": header["timestamp"] + 1})
        return value

    lie = tmp_path / "lie-header.snap"
    _rewrite(out, lie, change_header)
    exc = refused(lie)
    assert exc.reason == "headers" and "header 3 does not name the hash of header 2" in str(exc)

    # A flipped byte that the manifest does not account for.
    damaged = bytearray(out.read_bytes())
    damaged[-40] ^= 1
    lie = tmp_path / "damaged.snap"
    lie.write_bytes(bytes(damaged))
    assert refused(lie).reason in ("content", "format")

    # Another consortium's snapshot.
    other = tmp_path / "other"
    from node_helpers import ORGS as SPECS

    init_consortium(other, SPECS, consortium="other")
    with pytest.raises(SnapshotRefusedError, match="consortium"):
        load_snapshot(out, tmp_path / "x.db", (other / "genesis.cbor").read_bytes())

    # A lying member's own voucher does not make a quorum against the honest ones.
    loaded = tmp_path / "loaded.db"
    forged_info = read_manifest(tmp_path / "lie-state.snap")
    load_snapshot(out, loaded, (b_dir / "genesis.cbor").read_bytes())
    store = Store(loaded)
    try:
        liar = sign_voucher("regulator", consortium.keys("regulator").signing, forged_info)
        honest_a = next(v for i, v, _ in a.node.snapshots.held() if i.height == honest.height)
        with pytest.raises(SnapshotRefusedError, match="hospital-a vouch for another"):
            check_quorum(store, forged_info, [liar, honest_a])
    finally:
        store.close()

    # The honest snapshot, fetched from a peer's URL: installed, then the node syncs forward.
    done = start_from_snapshot(b_dir, "bank-b", a.url, peers)
    assert done.info.content_hash == made["hospital-a"].content_hash
    assert set(done.vouched_by) == {"hospital-a", "regulator"}
    assert done.moved_aside is not None and done.moved_aside.read_bytes() == before
    net.submit("hospital-a", 20)
    b = net.start("bank-b")
    assert b.node.snapshot_base == done.info.height and b.node.problem is None
    wait_until(lambda: b.node.store.head() == a.node.store.head())
    assert _state(b.node.store) == _state(a.node.store)
    # Below the snapshot it holds headers only, and says so to a peer asking for blocks.
    old = decode_block(b.node.store.block_bytes(1) or b"")
    assert old.txs == () and old.hash() == a.node.store.block_meta(1).hash  # type: ignore[union-attr]
    with b.client() as client, pytest.raises(NotFoundError, match="snapshot"):
        client.sync_blocks(1)
    # It goes on committing with the others, and its attestations agree.
    net.submit("bank-b", 21)
    wait_until(lambda: b.node.store.head() == a.node.store.head())
    wait_until(lambda: any(p.checked >= 1 and p.agrees for p in b.node.book.peers()))
    assert b.node.halted is None

    # A node with an empty store following it: what it lacks below the snapshot comes
    # from the other peers, and then it follows as usual.
    net.stop("regulator")
    for path in consortium.node_dir("regulator").glob("ledger.db*"):
        path.unlink()
    late = Node(
        NodeConfig(
            data_dir=consortium.node_dir("regulator"),
            org="regulator",
            orderer_url=b.url,
            peers=(("hospital-a", a.url),),
        )
    )
    late.start()
    try:
        wait_until(lambda: late.store.head() == a.node.store.head())
        assert late.snapshot_base is None and late.halted is None
    finally:
        late.stop()
