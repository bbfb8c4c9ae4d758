"""`org propose`, `org rotate-key` and `chain export` against real node processes.

A local network of three node processes (solo ordering): hospital-a orders,
hospital-b and the regulator follow. The command line runs here with
`--network FILE` or `--node URL`; an embedded data directory of the same
consortium gives the documents the node mode must match.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_remote_cli import js, run, shape, wait_until

from sharechain.contracts import default_registry
from sharechain.crypto.keyfile import load_keys
from sharechain.ledger.export import verify_export
from sharechain.node.launcher import NETWORK_FILE, LocalNetwork

A, B = "hospital-a", "hospital-b"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    base = tmp_path_factory.mktemp("org-export") / "net"
    network = LocalNetwork(base, orgs=3, node_options=("--log-level", "warning"))
    network.up(timeout=90)
    try:
        yield network
    finally:
        network.down()


@pytest.fixture(scope="module")
def embedded(net: LocalNetwork, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedded data directory of the same consortium (its own ledger, every key)."""
    path = tmp_path_factory.mktemp("embedded") / "c"
    shutil.copytree(net.base / "consortium", path)
    return path


def netfile(net: LocalNetwork) -> Path:
    return net.base / NETWORK_FILE


def heights_equal(net: LocalNetwork) -> bool:
    heights = set()
    for n in net.nodes:
        with net.client(n.org) as c:
            heights.add(c.status()["height"])
    return len(heights) == 1


def test_org_propose_and_vote_through_the_nodes(net: LocalNetwork, embedded: Path) -> None:
    local = js("org", "propose", "lab-x", "--as", A, "--role", "member", "-d", embedded)
    remote = js("org", "propose", "lab-x", "--as", A, "--role", "member",
                "--network", netfile(net))  # fmt: skip
    assert shape(remote) == shape(local) and remote["status"] == local["status"] == "open"
    # The generated key file went to the network's consortium directory.
    keys = load_keys(net.base / "consortium" / "keys" / "lab-x.key")
    assert keys.org == "lab-x"
    again = run("org", "propose", "lab-x", "--as", A, "--network", netfile(net), code=2)
    assert "a key file for lab-x already exists" in again
    bad = run("org", "propose", "lab-y", "--as", A, "--sign-key", "zz", "--enc-key", "00",
              "--network", netfile(net), code=2)  # fmt: skip
    assert "--sign-key must be a 32-byte public key in hex" in bad
    # A second admin's vote through its own node admits it (once that node has the
    # proposal: it follows hospital-a's, a few milliseconds behind).
    wait_until(lambda: heights_equal(net))
    voted = js("org", "vote", remote["proposal"], "--as", B, "--network", netfile(net))
    assert voted["status"] == "passed"
    listed = js("org", "list", "--network", netfile(net))
    lab = [o for o in listed["organisations"] if o["id"] == "lab-x"]
    assert lab and lab[0]["sign_key_id"] == keys.sign_key_id.hex()
    # Public keys given: nothing is generated, and a refused proposal names its code.
    refused = run("org", "propose", "lab-x", "--as", A,
                  "--sign-key", keys.signing.public_key.hex(),
                  "--enc-key", keys.encryption_public.hex(),
                  "--network", netfile(net), code=2)  # fmt: skip
    assert "transaction rejected (" in refused


def test_org_rotate_key_through_the_nodes(net: LocalNetwork, embedded: Path) -> None:
    local = js("org", "rotate-key", "--as", B, "-d", embedded)
    consortium_key = net.base / "consortium" / "keys" / f"{B}.key"
    node_key = net.spec(B).data_dir / "keys" / f"{B}.key"
    old = load_keys(consortium_key)
    remote = js("org", "rotate-key", "--as", B, "--network", netfile(net))
    assert shape(remote) == shape(local)
    new = load_keys(consortium_key)
    assert new.sign_key_id.hex() == remote["sign_key_id"] != old.sign_key_id.hex()
    assert load_keys(node_key).sign_key_id == new.sign_key_id  # the node's copy too
    listed = js("org", "list", "--network", netfile(net))
    (me,) = [o for o in listed["organisations"] if o["id"] == B]
    assert me["sign_key_id"] == new.sign_key_id.hex()
    # The old key signs nothing any more; after a restart its node works with the new one.
    net.stop_node(B)
    net.start_node(B)
    net.wait_ready([B], timeout=60)
    note = net.base / "note.txt"
    note.write_text("rotated")
    done = js("notarize", note, "--as", B, "--network", netfile(net))
    assert done["height"] > remote["height"]


def test_chain_export_from_a_node_is_the_embedded_export(net: LocalNetwork, tmp_path: Path) -> None:
    wait_until(lambda: heights_equal(net), timeout=30)
    from_node = tmp_path / "node.jsonl"
    got = js("chain", "export", "--out", from_node, "--node", net.spec(A).url,
             "-d", net.spec(A).data_dir)  # fmt: skip
    # The node's export ends with the nodes' quorum checkpoint over exactly its blocks.
    lines = from_node.read_text().splitlines()
    assert got["blocks"] == len(lines) - 1 >= 3
    assert verify_export(lines, default_registry()).blocks == got["blocks"]
    # The node's own data directory holds one member's key: embedded, it cannot seal.
    alone = run("chain", "export", "--out", tmp_path / "disk.jsonl", "-d", net.spec(A).data_dir,
                code=2)  # fmt: skip
    assert "not a quorum" in alone and not (tmp_path / "disk.jsonl").exists()
    text = run("chain", "export", "--out", tmp_path / "n.jsonl", "--network", netfile(net))
    assert text.startswith("exported ") and (tmp_path / "n.jsonl").exists()
    gone = run("chain", "export", "--out", tmp_path / "x.jsonl", "--node", "http://127.0.0.1:9",
               "-d", net.spec(A).data_dir, code=2)  # fmt: skip
    assert "cannot reach the node at http://127.0.0.1:9" in gone
    assert not (tmp_path / "x.jsonl").exists()
