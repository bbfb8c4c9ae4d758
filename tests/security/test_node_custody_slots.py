"""Attacks 7a and 7b at a real node: custody slots of another member's dataset.

7a: a member fills (squats) a custodian's slot of someone else's next key
epoch, or the owner deposits at a node the epoch does not name: the node
refuses with a 403 JSON error naming why (`contracts.epochs.check_deposit`).
7b: the owner takes back the slots of an epoch that never committed (a failed
rotation), so its retry is not blocked; nobody else may, and no slot of an
epoch on the chain goes before the chain has moved past it.

The node is hospital-a's; bank-b owns a threshold dataset whose holders are
hospital-a and the regulator.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from api_helpers import Consortium, InProcess, serve

from sharechain.contracts._fields import derive_id
from sharechain.ledger.transactions import sign_transaction
from sharechain.storage.vault import wrap_for_vault

NODE, OWNER, OTHER = "hospital-a", "bank-b", "regulator"
HOLDERS = [NODE, OTHER]


def _digest(tag: str) -> bytes:
    return bytes.fromhex(tag.encode().hex().ljust(64, "0"))


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    node = serve(Consortium.make(tmp_path_factory.mktemp("slots")), NODE)
    try:
        yield node
    finally:
        node.stop()


def _submit(running: InProcess, org: str, type: str, payload: dict[str, Any]) -> bytes:
    stx = sign_transaction(running.consortium.keys(org).signing, type, org, payload)
    with running.client(org) as c:
        return c.submit_checked(stx.raw).tx_id


def _dataset(running: InProcess) -> str:
    """A fresh bank-b dataset at key epoch 1 (threshold custody, 2 of hospital-a, regulator)."""
    tag = os.urandom(4).hex()
    body = {
        "title": "shared",
        "plaintext_digest": _digest("a" + tag),
        "ciphertext_digest": _digest("c" + tag),
        "segment_root": _digest("e" + tag),
        "size": 1,
        "custody": "threshold",
        "holders": HOLDERS,
    }
    ds = derive_id("dataset", _submit(running, OWNER, "dataset.register", body))
    epoch = {k: body[k] for k in ("ciphertext_digest", "segment_root", "custody", "holders")}
    _submit(running, OWNER, "dataset.epoch", {**epoch, "dataset": ds, "epoch": 1, "threshold": 2})
    return ds


def _deposit(running: InProcess, org: str, ds: str, epoch: int) -> tuple[int, dict[str, Any]]:
    public = running.consortium.keys(NODE).encryption_public
    wrapped = wrap_for_vault(os.urandom(32), NODE, public, ds, epoch, "share")
    with running.client(org) as c:
        reply = c.http.put(f"/v1/custody/{ds}/{epoch}/share", json={"wrapped": wrapped.hex()})
        return reply.status_code, reply.json()


def _drop(running: InProcess, org: str, ds: str, epoch: int | None) -> tuple[int, dict[str, Any]]:
    params = {} if epoch is None else {"epoch": epoch}
    with running.client(org) as c:
        reply = c.http.delete(f"/v1/custody/{ds}", params=params)
        return reply.status_code, reply.json()


def test_a_member_squatting_the_next_epochs_slot_gets_a_403_saying_why(
    running: InProcess,
) -> None:
    ds = _dataset(running)
    status, body = _deposit(running, OTHER, ds, 2)  # a custodian itself, not the owner
    assert status == 403 and body["error"] and f"only the owner ({OWNER})" in body["detail"]
    assert _deposit(running, OWNER, ds, 2)[0] == 200  # the owner's slot was still free


def test_the_owner_cannot_deposit_at_a_node_the_epoch_does_not_name(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # bank-b's own dataset, but with custodians that leave hospital-a out.
    base = tmp_path_factory.mktemp("unnamed")
    other = serve(Consortium.make(base), NODE)
    try:
        tag = os.urandom(4).hex()
        body = {
            "title": "elsewhere",
            "plaintext_digest": _digest("a" + tag),
            "ciphertext_digest": _digest("c" + tag),
            "segment_root": _digest("e" + tag),
            "size": 1,
            "custody": "supervisor",
            "holders": [OTHER],
        }
        ds = derive_id("dataset", _submit(other, OWNER, "dataset.register", body))
        status, reply = _deposit(other, OWNER, ds, 1)
        assert status == 403 and f"{NODE} is not a custodian of dataset {ds}" in reply["detail"]
    finally:
        other.stop()


def test_the_owner_takes_back_the_slots_of_an_epoch_that_never_committed(
    running: InProcess,
) -> None:
    ds = _dataset(running)
    assert _deposit(running, OWNER, ds, 2)[0] == 200  # a rotation deposits, then fails
    status, body = _drop(running, OTHER, ds, 2)
    assert status == 403 and "only the owner" in body["detail"]
    assert _drop(running, OWNER, ds, 2) == (200, {"org": NODE, "destroyed": 1})
    assert _deposit(running, OWNER, ds, 2)[0] == 200  # the retry deposits again


def test_nobody_but_the_node_drops_the_current_epoch_before_the_chain_moves_past_it(
    running: InProcess,
) -> None:
    ds = _dataset(running)
    assert _deposit(running, OWNER, ds, 1)[0] == 200
    status, body = _drop(running, OWNER, ds, 1)
    assert status == 403 and "still current" in body["detail"]
    status, body = _drop(running, OWNER, ds, None)
    assert status == 403 and "name the epoch" in body["detail"]
    assert _drop(running, NODE, ds, 1)[1]["destroyed"] == 1  # its own vault: always


def test_deposits_before_registration_go_back_only_to_their_depositor(
    running: InProcess,
) -> None:
    unknown = os.urandom(32).hex()
    assert _deposit(running, OWNER, unknown, 1)[0] == 200  # a publication that never registered
    status, body = _drop(running, OTHER, unknown, 1)
    assert status == 403 and "only its depositor" in body["detail"]
    assert _drop(running, OWNER, unknown, 1)[1]["destroyed"] == 1
    status, _ = _drop(running, OWNER, unknown, 1)  # no longer counted as its deposit
    assert status == 403
