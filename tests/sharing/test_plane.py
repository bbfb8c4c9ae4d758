"""`Plane`: how it is opened, and what it refuses before anything reaches a chain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from plane_sides import ORGS, RemoteSide

from sharechain.errors import ConfigError
from sharechain.sharing.plane import Plane, load_network
from sharechain.sharing.records import Listing
from sharechain.storage.datadir import DataDir, init_consortium


def test_connect_needs_a_node_or_a_network() -> None:
    with pytest.raises(ConfigError, match="node's URL or a network file"):
        Plane.connect()


def test_a_network_file_must_exist_be_one_and_be_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no network file"):
        load_network(tmp_path)
    (tmp_path / "network.json").write_text("[]")
    with pytest.raises(ConfigError, match="is not a network file"):
        load_network(tmp_path)
    (tmp_path / "network.json").write_text(json.dumps({"state": "down", "nodes": []}))
    with pytest.raises(ConfigError, match="is down; start it"):
        load_network(tmp_path / "network.json")


def test_the_signer_must_be_said_when_the_directory_holds_several_keys(tmp_path: Path) -> None:
    init_consortium(tmp_path / "c", ORGS)
    with pytest.raises(ConfigError, match="say which organisation signs"):
        Plane.connect("http://127.0.0.1:9", data_dir=tmp_path / "c")
    key = DataDir.open(tmp_path / "c").key_path("insurer")
    with pytest.raises(ConfigError, match="belongs to insurer, not regulator"):
        Plane.connect("http://127.0.0.1:9", key=key, as_org="regulator")
    with Plane.connect("http://127.0.0.1:9", key=key) as plane:
        assert plane.where == "http://127.0.0.1:9" and plane.embedded is None


def test_a_node_plane_acts_only_as_its_signer(remote_side: RemoteSide, tmp_path: Path) -> None:
    src = tmp_path / "f.csv"
    src.write_bytes(b"a,b\n" * 10)
    plane = remote_side.plane("insurer")
    with pytest.raises(ConfigError, match="signs as insurer, not hospital-a"):
        plane.publish("hospital-a", src, Listing(title="not mine"))
    with pytest.raises(ConfigError, match="signs as insurer, not hospital-a"):
        plane.submit("hospital-a", "notary.record", {"digest": bytes(32)})
    with pytest.raises(ConfigError, match="inbox of the signer"):
        plane.inbox("hospital-a")


def test_an_embedded_plane_reads_and_acts_for_every_organisation(tmp_path: Path) -> None:
    init_consortium(tmp_path / "c", ORGS)
    with Plane.local(tmp_path / "c") as plane:
        assert plane.embedded is not None and plane.client is None
        info = plane.chain_info()
        assert info.data_dir == str(tmp_path / "c") and info.node is None
        assert [o.id for o in plane.organisations()] == sorted(o.id for o in ORGS)
        r = plane.submit("insurer", "notary.record", {"digest": bytes(32), "note": "x"})
        assert plane.proof(r.tx_id).height == r.height  # verified against the block hash
