"""Attack: squat a custodian's key slot for a dataset's next key epoch.

A rotation deposits the new key (or its shares) with the custodians' nodes
before it records the new epoch, and a vault slot is written once. If anyone
could fill a slot of an epoch not yet on the chain, a hostile member could
pre-fill the custodians' slots of another member's next epoch: the owner's
rotation (after a revocation, say) would fail, and the revoked grantee's old
key would go on opening the current payload. `epochs.check_deposit` is the
rule each node applies before it keeps an entry.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from security_kit import Net, consortium, digest

from sharechain.contracts.epochs import check_deposit
from sharechain.contracts.ids import derive_id
from sharechain.errors import AccessDeniedError
from sharechain.ledger.state import StateReader

HOLDERS = ["hospital-b", "regulator"]


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    with consortium(tmp_path) as n:
        yield n


def _threshold_dataset(net: Net) -> str:
    body = {
        "title": "shared",
        "plaintext_digest": digest("p"),
        "ciphertext_digest": digest("c1"),
        "segment_root": digest("r1"),
        "size": 1,
        "custody": "threshold",
        "holders": HOLDERS,
    }
    ds = derive_id("dataset", net.ok("hospital-a", "dataset.register", body).tx_id)
    epoch = {
        "dataset": ds,
        "epoch": 1,
        "ciphertext_digest": digest("c1"),
        "segment_root": digest("r1"),
        "custody": "threshold",
        "holders": HOLDERS,
        "threshold": 2,
    }
    net.ok("hospital-a", "dataset.epoch", epoch)
    return ds


def test_only_the_owner_fills_the_next_epochs_slots(net: Net) -> None:
    ds = _threshold_dataset(net)
    reader = StateReader(net.store)
    check_deposit(reader, ds, 2, "hospital-a", "hospital-b")  # the owner, to a custodian
    check_deposit(reader, ds, 2, "hospital-a", "hospital-a")  # the owner's own node
    with pytest.raises(AccessDeniedError, match="only the owner"):
        check_deposit(reader, ds, 2, "clinic-c", "hospital-b")
    with pytest.raises(AccessDeniedError, match="only the owner"):
        check_deposit(reader, ds, 2, "hospital-b", "hospital-b")  # a custodian itself


def test_only_custodians_the_epoch_names_keep_entries(net: Net) -> None:
    ds = _threshold_dataset(net)
    reader = StateReader(net.store)
    check_deposit(reader, ds, 1, "hospital-a", "regulator")
    with pytest.raises(AccessDeniedError, match="not a custodian"):
        check_deposit(reader, ds, 1, "hospital-a", "clinic-c")
    with pytest.raises(AccessDeniedError, match="not a custodian"):
        check_deposit(reader, ds, 2, "hospital-a", "insurer-d")


def test_only_the_next_epoch_takes_deposits_ahead_of_the_chain(net: Net) -> None:
    ds = _threshold_dataset(net)
    reader = StateReader(net.store)
    with pytest.raises(AccessDeniedError, match="next key epoch"):
        check_deposit(reader, ds, 3, "hospital-a", "hospital-b")
    unknown = "ab" * 32
    check_deposit(reader, unknown, 1, "hospital-a", "hospital-b")  # publishing, before registering
    with pytest.raises(AccessDeniedError, match="first epoch"):
        check_deposit(reader, unknown, 2, "clinic-c", "hospital-b")


def test_a_purged_or_retired_dataset_takes_no_new_keys(net: Net) -> None:
    ds = _threshold_dataset(net)
    net.ok("hospital-a", "dataset.retire", {"dataset": ds})
    with pytest.raises(AccessDeniedError, match="next key epoch"):
        check_deposit(StateReader(net.store), ds, 2, "hospital-a", "hospital-b")
    net.ok("hospital-a", "dataset.purge", {"dataset": ds, "reason": "done"})
    with pytest.raises(AccessDeniedError, match="purged"):
        check_deposit(StateReader(net.store), ds, 1, "hospital-a", "hospital-b")
