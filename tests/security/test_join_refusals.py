"""A joining node refuses what does not match the chain, with the reason, writing nothing.

The join document comes from one peer (`GET /v1/join`). A lying peer (here a real
HTTP server answering with a tampered copy of an honest node's document) cannot
hand a new member a genesis block other than the one its configuration names,
nor a malformed document; a data directory that already holds another
consortium is never rewritten.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))

from liar_server import Quiet, serving
from node_helpers import ORGS, Consortium, Running, run_node, shutdown

from sharechain.api.client import NodeClient
from sharechain.node.joining import JoinRefusedError, join_network
from sharechain.storage.datadir import DataDir, init_consortium

JOINER = "bank-b"  # any member may ask for the join document; bank-b plays the new member


@pytest.fixture
def consortium(tmp_path: Path) -> Consortium:
    init_consortium(tmp_path / "consortium", ORGS, consortium="test")
    return Consortium(tmp_path / "consortium", tmp_path)


@pytest.fixture
def honest(consortium: Consortium) -> Iterator[Running]:
    running = run_node(consortium, "hospital-a", max_wait=0.005)
    try:
        yield running
    finally:
        shutdown(running)


def _new_dir(consortium: Consortium, base: Path) -> Path:
    """A fresh node directory holding only the joiner's key."""
    (base / "keys").mkdir(parents=True)
    key = consortium.source / "keys" / f"{JOINER}.key"
    (base / "keys" / key.name).write_bytes(key.read_bytes())
    (base / "keys" / key.name).chmod(0o600)
    return base


def _document(consortium: Consortium, honest: Running) -> dict[str, Any]:
    keys = consortium.keys(JOINER)
    with NodeClient(honest.url, JOINER, keys.signing) as client:
        body: dict[str, Any] = client.get_json("/v1/join")
    return body


@pytest.fixture
def liar() -> Iterator[tuple[str, dict[str, Any]]]:
    """A real HTTP server answering every GET with the document in `served["body"]`."""
    served: dict[str, Any] = {"body": {}, "health": {"status": "ok", "org": "hospital-a"}}

    class Handler(Quiet):
        def do_GET(self) -> None:
            which = "health" if self.path.startswith("/v1/health") else "body"
            data = json.dumps(served[which]).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    with serving(Handler) as url:
        yield url, served


def test_a_peer_serving_another_genesis_or_junk_is_refused_and_nothing_is_written(
    consortium: Consortium,
    honest: Running,
    liar: tuple[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    url, served = liar
    good = _document(consortium, honest)
    other = tmp_path / "other"
    init_consortium(other, ORGS, consortium="another")
    new = _new_dir(consortium, tmp_path / "new")
    # The configuration names our genesis, the block is another consortium's.
    served["body"] = {**good, "genesis": DataDir.open(other).genesis_bytes().hex()}
    with pytest.raises(JoinRefusedError, match="does not hash to the genesis hash"):
        join_network(new, JOINER, url)
    # Block and configuration both of another consortium: refused when the operator
    # gave the genesis hash out of band.
    served["body"] = {
        **good,
        "genesis": DataDir.open(other).genesis_bytes().hex(),
        "consortium": json.loads((other / "consortium.json").read_text()),
    }
    ours = DataDir.open(consortium.source).genesis_hash
    with pytest.raises(JoinRefusedError, match="--genesis-hash"):
        join_network(new, JOINER, url, genesis_hash=ours)
    for junk in ({}, {"consortium": {}, "genesis": "zz"}, {**good, "genesis": "00ff"}):
        served["body"] = junk
        with pytest.raises(JoinRefusedError, match="malformed"):
            join_network(new, JOINER, url)
    served["body"] = ["not", "a", "document"]
    with pytest.raises(JoinRefusedError, match="malformed"):
        join_network(new, JOINER, url)
    served["health"] = {"status": "ok"}  # not a node's answer at all
    with pytest.raises(JoinRefusedError, match="does not answer as a sharechain node"):
        join_network(new, JOINER, url)
    assert sorted(p.name for p in new.iterdir()) == ["keys"]  # nothing written


def test_a_directory_of_another_consortium_is_never_rewritten(
    consortium: Consortium, honest: Running, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    init_consortium(elsewhere, ORGS, consortium="another")
    ours = consortium.source / "keys" / f"{JOINER}.key"  # admitted here, so the peer answers
    (elsewhere / "keys" / ours.name).write_bytes(ours.read_bytes())

    def files() -> dict[str, bytes]:
        return {str(p): p.read_bytes() for p in elsewhere.rglob("*") if p.is_file()}

    before = files()
    with pytest.raises(JoinRefusedError, match="already holds the consortium"):
        join_network(elsewhere, JOINER, honest.url)
    assert files() == before
