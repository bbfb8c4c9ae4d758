"""The evidence folder: members' signed blocks a node voided, kept once and within bounds."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from node_helpers import Consortium
from test_snapshot_start import _with_settings

from sharechain.errors import ConfigError
from sharechain.node.evidence import DEFAULT_EVIDENCE_BYTES, Evidence
from sharechain.node.service import Node, NodeConfig


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
