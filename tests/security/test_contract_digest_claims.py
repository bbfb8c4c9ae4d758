"""Attack: a member names another dataset's sealed payload as its own.

Key epochs, blob replicas and purges all go by ciphertext digest. A member
that could put another member's digest in a dataset of its own could later
purge that dataset and have every node delete the other member's bytes, or
pose as the payload's owner to the nodes. The contracts give each digest one
owning dataset and refuse every other claim, whoever makes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from security_kit import Net, consortium, digest

from sharechain.contracts import queries
from sharechain.contracts.digests import digest_owner, live_users, users
from sharechain.contracts.ids import derive_id
from sharechain.ledger.state import StateReader


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    with consortium(tmp_path) as n:
        yield n


def _body(cipher: bytes, **extra: object) -> dict[str, object]:
    return {
        "title": "mine, honestly",
        "plaintext_digest": digest("p"),
        "ciphertext_digest": cipher,
        "size": 10,
        **extra,
    }


def _epoch(ds: str, epoch: int, cipher: bytes) -> dict[str, object]:
    return {
        "dataset": ds,
        "epoch": epoch,
        "ciphertext_digest": cipher,
        "segment_root": digest(f"root-{epoch}"),
        "holders": [],
    }


def test_the_first_dataset_to_name_a_digest_owns_it(net: Net) -> None:
    ds_a = net.register("hospital-a")
    cipher_a = net.state(f"dataset/{ds_a}")["ciphertext_digest"]
    assert digest_owner(StateReader(net.store), cipher_a) == (ds_a, "hospital-a")
    assert users(StateReader(net.store), cipher_a) == (ds_a,)


def test_another_member_cannot_register_a_dataset_naming_it(net: Net) -> None:
    ds_a = net.register("hospital-a")
    cipher_a = net.state(f"dataset/{ds_a}")["ciphertext_digest"]
    r = net.send("hospital-b", "dataset.register", _body(cipher_a))
    assert r.code == "denied"
    assert ds_a in r.reason and "hospital-a" in r.reason
    assert net.state(f"dataset/{derive_id('dataset', r.tx_id)}") is None
    assert digest_owner(StateReader(net.store), cipher_a) == (ds_a, "hospital-a")
    # The owner's audit trail shows the attempt on its payload.
    trail = [(e.sender, e.code) for e in queries.audit(net.store, ds=ds_a, proofs=False)]
    assert ("hospital-b", "denied") in trail


def test_another_member_cannot_record_a_key_epoch_naming_it(net: Net) -> None:
    ds_a = net.register("hospital-a")
    cipher_a = net.state(f"dataset/{ds_a}")["ciphertext_digest"]
    own = digest("b's own payload")
    body = _body(own, segment_root=digest("root-1"))
    ds_b = derive_id("dataset", net.ok("hospital-b", "dataset.register", body).tx_id)
    net.ok("hospital-b", "dataset.epoch", _epoch(ds_b, 1, own))
    r = net.send("hospital-b", "dataset.epoch", _epoch(ds_b, 2, cipher_a))
    assert r.code == "denied" and ds_a in r.reason
    assert net.state(f"epoch/{ds_b}/000000000002") is None
    assert users(StateReader(net.store), cipher_a) == (ds_a,)


def test_a_derived_dataset_cannot_name_its_parents_payload(net: Net) -> None:
    ds_a = net.register("hospital-a")
    cipher_a = net.state(f"dataset/{ds_a}")["ciphertext_digest"]
    r = net.send(
        "hospital-a",
        "dataset.derive",
        _body(cipher_a, parents=[ds_a], transformation="copy"),
    )
    assert r.code == "denied"


def test_even_the_owner_cannot_name_one_payload_in_two_datasets(net: Net) -> None:
    ds_a = net.register("hospital-a")
    cipher_a = net.state(f"dataset/{ds_a}")["ciphertext_digest"]
    assert net.send("hospital-a", "dataset.register", _body(cipher_a)).code == "denied"


def test_a_new_version_may_keep_its_predecessors_payload(net: Net) -> None:
    ds_a = net.register("hospital-a")
    record = net.state(f"dataset/{ds_a}")
    cipher_a = record["ciphertext_digest"]
    body = {
        "dataset": ds_a,
        "plaintext_digest": record["plaintext_digest"],
        "ciphertext_digest": cipher_a,
        "size": record["size"],
        "title": "Blood tests 2025 (described better)",
    }
    v2 = derive_id("dataset", net.ok("hospital-a", "dataset.version", body).tx_id)
    reader = StateReader(net.store)
    assert set(users(reader, cipher_a)) == {ds_a, v2}
    assert digest_owner(reader, cipher_a) == (ds_a, "hospital-a")
    # Purging the old version leaves the payload live: the new version needs it.
    net.ok("hospital-a", "dataset.purge", {"dataset": ds_a, "reason": "old"})
    assert live_users(StateReader(net.store), cipher_a) == (v2,)
