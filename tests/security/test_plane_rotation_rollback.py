"""Attack 7b: a failed rotation leaves slots behind; a revoke ends neither rotated nor refused.

Custody slots are written once, so deposits left by a rotation that never
committed would block the next one. A rotation that fails before its epoch
commits takes its deposits (and its new blob) back on every node it reached
(a custodian's node lets the owner drop the slots of an epoch its chain does
not record), and names as pending cleanup each node that refused or did not
answer; a retry then rotates. A
revocation always ends with the dataset on a new key epoch, or with
`RotationBlockedError` naming who blocked the rotation. Both planes.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sharing"))

from plane_sides import Side, remote_side, side

from sharechain.contracts.access import APPROVE, REQUEST
from sharechain.contracts.epochs import EPOCH
from sharechain.ledger.transactions import SignedTransaction
from sharechain.ordering.etcd_process import free_ports
from sharechain.sharing.local import LocalChain, LocalCustodian
from sharechain.sharing.plane import Plane
from sharechain.sharing.ports import Deposit, Rng, UnreachableError
from sharechain.sharing.records import Listing, Published, RotationBlockedError, derive_id
from sharechain.sharing.remote_chain import RemoteChain
from sharechain.storage.datadir import DataDir
from sharechain.storage.vault import VAULT_DIR

__all__ = ["remote_side", "side"]

OWNER, CUSTODIAN, GRANTEE = "hospital-a", "regulator", "insurer"


class Injected(Exception):
    """The failure a test injects."""


def _publish(side: Side, tmp_path: Path) -> Published:
    src = tmp_path / "records.bin"
    src.write_bytes(os.urandom(150_000))
    listing = Listing(title="records", custody="supervisor", holders=(CUSTODIAN,))
    pub = side.plane(OWNER).publish(OWNER, src, listing)
    side.sync()
    return pub


def _grant(side: Side, ds: str) -> str:
    body = {"dataset": ds, "purpose": "research", "duration": 86_400_000}
    rid = derive_id("request", side.submit(GRANTEE, REQUEST, body).tx_id)
    side.submit(OWNER, APPROVE, {"request": rid})
    return derive_id("grant", side.submit(CUSTODIAN, APPROVE, {"request": rid}).tx_id)


def _owner_plane(side: Side, warnings: list[str], network: Path | None = None) -> Plane:
    if side.name == "local":
        return Plane.local(side.dirs[OWNER], warn=warnings.append)
    net = network if network is not None else side.network  # type: ignore[attr-defined]
    return Plane.connect(network=net, as_org=OWNER, warn=warnings.append)


def _blob_files(side: Side) -> set[str]:
    blob_dir = DataDir.open(side.dirs[OWNER]).blob_dir
    return {p.name for p in blob_dir.rglob("*") if p.is_file() and ".incoming" not in p.parts}


def _slots(side: Side, org: str, ds: str, epoch: int) -> list[Path]:
    return list((side.dirs[org] / VAULT_DIR / org / ds).glob(f"{epoch:012d}.*"))


def test_a_rotation_that_does_not_commit_takes_its_deposits_back(
    side: Side, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pub = _publish(side, tmp_path)
    chain = LocalChain if side.name == "local" else RemoteChain
    real = chain.commit

    def commit(self: Any, stxs: Sequence[SignedTransaction]) -> Any:
        if stxs[0].tx.type == EPOCH:
            raise Injected
        return real(self, stxs)

    monkeypatch.setattr(chain, "commit", commit)
    blobs_before = _blob_files(side)
    warnings: list[str] = []
    with _owner_plane(side, warnings) as plane, pytest.raises(Injected):
        plane.rotate(OWNER, pub.dataset)
    monkeypatch.undo()
    side.sync()
    assert side.plane(GRANTEE).dataset(pub.dataset).status == "active"
    assert _slots(side, OWNER, pub.dataset, 2) == []  # the owner's own node took it back
    # Every node reached took its deposit back: the owner may drop the slots of an epoch
    # its custodians' chains do not record (7b), so nothing is pending and a retry rotates.
    assert _slots(side, CUSTODIAN, pub.dataset, 2) == []
    assert [w for w in warnings if "pending cleanup" in w] == []
    assert _blob_files(side) == blobs_before  # no new blob stays at the owner's node
    rotated = side.plane(OWNER).rotate(OWNER, pub.dataset)
    assert rotated.epoch == 2
    assert len(_slots(side, CUSTODIAN, pub.dataset, 2)) == 1


def _dead_custodian_network(side: Side, tmp_path: Path) -> Path:
    body = json.loads(side.network.read_text())  # type: ignore[attr-defined]
    (port,) = free_ports(1)
    for n in body["nodes"]:
        if n["org"] == CUSTODIAN:
            n["url"] = f"http://127.0.0.1:{port}"
    path = tmp_path / "network.json"
    path.write_text(json.dumps(body))
    return path


def test_a_revoke_blocked_by_a_custodian_says_who(
    side: Side, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pub = _publish(side, tmp_path)
    gid = _grant(side, pub.dataset)
    network = None
    if side.name == "local":

        def deposit(self: Any, d: Deposit, rng: Rng) -> None:
            raise UnreachableError(f"{CUSTODIAN} (its node is down, says the test)")

        monkeypatch.setattr(LocalCustodian, "deposit", deposit)
    else:
        network = _dead_custodian_network(side, tmp_path)
    warnings: list[str] = []
    with (
        _owner_plane(side, warnings, network) as plane,
        pytest.raises(RotationBlockedError) as caught,
    ):
        plane.revoke(OWNER, gid, reason="blocked rotation test")
    monkeypatch.undo()
    side.sync()
    message = str(caught.value)
    assert CUSTODIAN in message and "rotate-key" in message
    assert caught.value.dataset == pub.dataset
    assert side.plane(GRANTEE).grant(gid).grant.status == "revoked"
    assert _slots(side, OWNER, pub.dataset, 2) == []
    # Once the custodian answers, the owner rotates.
    assert side.plane(OWNER).rotate(OWNER, pub.dataset).epoch == 2
