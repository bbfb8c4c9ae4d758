"""Attack: a member squats another's key slots on a custodian's node (or fills its vault).

Defence: a node keeps a deposit only from the dataset's owner, only for a
custodian the epoch names, only for an epoch on the chain or the next one
(`check_deposit`); deposits of datasets not on the chain yet are bounded per
member.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from api_helpers import Consortium, InProcess, publish_and_grant, serve

from sharechain.api.quotas import Limits
from sharechain.storage.vault import wrap_for_vault


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcess, str]]:
    base = tmp_path_factory.mktemp("custody")
    limits = Limits(pending_deposits_per_member=2)
    running = serve(Consortium.make(base), "hospital-a", limits=limits)
    try:
        dataset, _ = publish_and_grant(running, base)
        yield running, dataset
    finally:
        running.stop()


def _deposit(running: InProcess, org: str, dataset: str, epoch: int) -> tuple[int, str]:
    node_keys = running.consortium.keys("hospital-a")
    wrapped = wrap_for_vault(
        os.urandom(32), "hospital-a", node_keys.encryption_public, dataset, epoch, "key"
    )
    with running.client(org) as c:
        reply = c.http.put(f"/v1/custody/{dataset}/{epoch}/key", json={"wrapped": wrapped.hex()})
        return reply.status_code, str(reply.json().get("detail", ""))


def test_another_member_cannot_fill_the_next_epochs_slot(published: tuple[InProcess, str]) -> None:
    running, dataset = published
    status, detail = _deposit(running, "bank-b", dataset, 2)
    assert status == 403 and "only the owner (hospital-a)" in detail


def test_the_owner_cannot_deposit_for_an_epoch_far_ahead(published: tuple[InProcess, str]) -> None:
    running, dataset = published
    status, detail = _deposit(running, "hospital-a", dataset, 7)
    assert status == 403 and "neither on the chain nor its next key epoch (2" in detail


def test_the_owner_fills_the_next_epoch_once(published: tuple[InProcess, str]) -> None:
    running, dataset = published
    assert _deposit(running, "hospital-a", dataset, 2)[0] == 200
    status, detail = _deposit(running, "hospital-a", dataset, 2)
    assert status == 403 and "written once" in detail


def test_deposits_before_registration_are_bounded_per_member(
    published: tuple[InProcess, str],
) -> None:
    running, _ = published
    unknown = [os.urandom(32).hex() for _ in range(3)]
    assert _deposit(running, "bank-b", unknown[0], 2)[0] == 403  # only epoch 1 before it
    codes = [_deposit(running, "bank-b", ds, 1)[0] for ds in unknown]
    assert codes == [200, 200, 413]
    assert _deposit(running, "regulator", unknown[2], 1)[0] == 200  # charged per member
