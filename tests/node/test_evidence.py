"""The evidence folder: members' signed blocks a node voided, kept once and within bounds."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))

from node_helpers import Consortium
from test_snapshot_start import _with_settings

from sharechain.cli.main import app
from sharechain.crypto.signing import SigningKey
from sharechain.errors import ConfigError
from sharechain.ledger.blocks import decode_block, encode_block, make_block, sign_header
from sharechain.node.evidence import DEFAULT_EVIDENCE_BYTES, Evidence
from sharechain.node.service import Node, NodeConfig
from sharechain.sharing.embedded import Embedded


def test_a_block_is_kept_once_by_its_content(tmp_path: Path) -> None:
    evidence = Evidence(tmp_path / "evidence")
    first = evidence.keep(7, "bank-b", b"signed block")
    again = evidence.keep(7, "bank-b", b"signed block")
    other = evidence.keep(7, "bank-b", b"another signed block")
    assert first.path is not None and first.path == again.path and first.path != other.path
    assert first.path.read_bytes() == b"signed block" and "bank-b" in first.path.name
    assert evidence.used() == len(b"signed block") + len(b"another signed block")
    assert (tmp_path / "evidence").stat().st_mode & 0o777 == 0o700


def test_past_its_budget_a_block_is_named_but_not_kept(tmp_path: Path) -> None:
    evidence = Evidence(tmp_path / "evidence", budget=1000)
    assert evidence.keep(1, "bank-b", b"a" * 600).path is not None
    refused = evidence.keep(2, "bank-b", b"b" * 600)
    assert refused.path is None and "evidence_bytes" in refused.why_not
    assert refused.digest in refused.describe() and evidence.used() == 600
    assert evidence.keep(3, "bank-b", b"c" * 400).path is not None  # what still fits


def test_a_block_that_would_eat_into_the_disk_reserve_is_not_kept(tmp_path: Path) -> None:
    free = [10_000]
    evidence = Evidence(tmp_path / "evidence", reserve=4_000, free_bytes=lambda _: free[0])
    refused = evidence.keep(1, "bank-b", b"x" * 2_500)  # 7,500 would stay free: under 8,000
    assert refused.path is None and "reserve" in refused.why_not
    assert not list((tmp_path / "evidence").glob("*"))
    free[0] = 20_000
    assert evidence.keep(1, "bank-b", b"x" * 2_500).path is not None


def test_a_node_reads_its_evidence_budget_from_its_settings(tmp_path: Path) -> None:
    consortium = Consortium.make(tmp_path)
    folder = consortium.node_dir("hospital-a")
    node = Node(NodeConfig(data_dir=folder, org="hospital-a"))
    assert node.evidence.budget == DEFAULT_EVIDENCE_BYTES
    assert node.evidence.folder == folder / "evidence"
    node.stop()
    _with_settings(folder, evidence_bytes=1 << 20)
    node = Node(NodeConfig(data_dir=folder, org="hospital-a"))
    assert node.evidence.budget == 1 << 20
    node.stop()
    _with_settings(folder, evidence_bytes=-1)
    with pytest.raises(ConfigError, match=r"settings\.evidence_bytes is -1"):
        Node(NodeConfig(data_dir=folder, org="hospital-a"))


def test_node_evidence_lists_the_kept_blocks_with_their_signatures_checked(
    tmp_path: Path,
) -> None:
    consortium = Consortium.make(tmp_path)
    node_dir = consortium.node_dir("hospital-a")
    with Embedded(node_dir) as opened:  # the store, with genesis committed
        genesis = decode_block(opened.store.block_bytes(0) or b"")

    def signed(orderer: str, key: SigningKey, tag: int) -> bytes:
        header = dataclasses.replace(
            genesis.header, height=1, prev_hash=genesis.hash(), orderer=orderer, timestamp=tag
        )
        return encode_block(make_block(header, sign_header(header, key), (), ()))

    evidence = Evidence(node_dir / "evidence")
    honest = signed("bank-b", consortium.keys("bank-b").signing, 1)
    forged = signed("bank-b", SigningKey.generate(), 2)
    stranger = signed("mallory", SigningKey.generate(), 3)
    for data in (honest, forged, stranger):
        assert evidence.keep(1, decode_block(data).header.orderer, data).path is not None
    junk = node_dir / "evidence" / "invalid-block-9-bank-b-0000000000000000.block"
    junk.write_bytes(b"\x00 no block")

    shown = CliRunner().invoke(app, ["node", "evidence", "--data-dir", str(node_dir), "--json"])
    assert shown.exit_code == 0, shown.output
    listed = json.loads(shown.output)
    blocks = {b["sha256"]: b for b in listed["blocks"]}
    assert listed["bytes"] == sum(len(d) for d in (honest, forged, stranger)) + len(
        b"\x00 no block"
    )
    assert listed["budget_bytes"] == DEFAULT_EVIDENCE_BYTES
    by = {data: blocks[hashlib.sha256(data).hexdigest()] for data in (honest, forged, stranger)}
    assert by[honest]["signed"] is True and by[honest]["orderer"] == "bank-b"
    assert by[honest]["height"] == 1 and by[honest]["chain_hash"] is None  # not committed here
    assert by[forged]["signed"] is False and "not bank-b's current key" in by[forged]["signature"]
    assert by[stranger]["signed"] is None and "no organisation" in by[stranger]["signature"]
    unreadable = blocks[hashlib.sha256(b"\x00 no block").hexdigest()]
    assert unreadable["height"] is None and unreadable["signature"].startswith("not a block")
    assert [b["height"] for b in listed["blocks"]] == [1, 1, 1, None]  # by height, junk last

    table = CliRunner().invoke(app, ["node", "evidence", "--data-dir", str(node_dir)])
    assert table.exit_code == 0 and "4 blocks" in table.output and "bank-b" in table.output
    empty = CliRunner().invoke(
        app, ["node", "evidence", "--data-dir", str(consortium.node_dir("regulator"))]
    )
    assert empty.exit_code == 0 and "no evidence" in empty.output
