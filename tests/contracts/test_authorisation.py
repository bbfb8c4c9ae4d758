"""Who may send what: every transaction type against every kind of sender.

One base chain holds a dataset D of hospital-a (the owner), an open request R
and an active grant G of hospital-b (the requester and grantee), an open
membership proposal P by hospital-a, an open risk alert A, a removed
organisation and a rotated key. Each case copies that chain, sends one
transaction and checks the validation code.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from contracts_kit import Clock, Net, digest, rotation_payload

from sharechain.contracts import derive_id
from sharechain.crypto.keyfile import OrgKeys
from sharechain.crypto.signing import SigningKey

ACTORS = ("owner", "supervisor", "admin", "member", "requester", "stranger", "removed", "rotated")
SENDER = {
    "owner": "hospital-a",
    "supervisor": "regulator",
    "admin": "insurer-d",
    "member": "clinic-c",
    "requester": "hospital-b",
    "stranger": "outsider",
    "removed": "old-lab",
    "rotated": "clinic-c",
}
GOVERNANCE = {"risk": {"max_requests": 2, "suspend_on_alert": False}}


class Base:
    """Ids of the objects on the base chain."""

    ds = rid = gid = pid = alert = ""
    notary = b""
    old_key: SigningKey
    removed_key: SigningKey


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Base]]:
    path = tmp_path_factory.mktemp("authz") / "chain"
    net = Net(path, Clock(), GOVERNANCE)
    b = Base()
    b.removed_key = net.admit("old-lab").signing
    net.remove("old-lab")
    b.old_key = net.rotate("clinic-c").signing
    b.ds = net.register("hospital-a")
    b.gid = net.granted(b.ds, "hospital-b")
    assert net.release(b.gid).code == "valid"
    b.rid = derive_id("request", net.request(b.ds, "hospital-b").tx_id)
    keys = OrgKeys.generate("lab-e")
    admit = {"action": "admit", "org": "lab-e", "roles": ["member"]}
    admit |= {"sign_key": keys.signing.public_key, "enc_key": keys.encryption_public}
    b.pid = derive_id("proposal", net.ok("hospital-a", "org.propose", admit).tx_id)
    for _ in range(3):  # the third request of insurer-d crosses max_requests=2
        last = net.request(b.ds, "insurer-d")
    b.alert = derive_id("alert", last.tx_id)
    assert net.state(f"alert/{b.alert}")["org"] == "insurer-d"
    b.notary = net.ok("hospital-a", "notary.record", {"digest": digest("cert")}).tx_id
    net.emb.close()
    yield path, b


def _register(b: Base, actor: str) -> dict[str, Any]:
    return {
        "title": "x",
        "plaintext_digest": digest("p2"),
        "ciphertext_digest": digest("c2"),
        "size": 1,
    }


def _rotate(b: Base, actor: str) -> dict[str, Any]:
    return rotation_payload(OrgKeys.generate(SENDER[actor]))


PAYLOADS: dict[str, Callable[[Base, str], dict[str, Any]]] = {
    "org.propose": lambda b, a: {
        "action": "remove",
        "org": "hospital-b" if a != "requester" else "clinic-c",
    },
    "org.vote": lambda b, a: {"proposal": b.pid, "approve": True},
    "org.rotate-key": _rotate,
    "dataset.register": _register,
    "dataset.version": lambda b, a: {"dataset": b.ds, **_register(b, a)},
    "dataset.derive": lambda b, a: {"parents": [b.ds], "transformation": "mask", **_register(b, a)},
    "dataset.retire": lambda b, a: {"dataset": b.ds},
    "dataset.purge": lambda b, a: {"dataset": b.ds, "reason": "consent withdrawn"},
    "dataset.policy": lambda b, a: {"dataset": b.ds, "policy": {"max_uses": 3}},
    "access.request": lambda b, a: {"dataset": b.ds, "purpose": "treatment", "duration": 1000},
    "access.approve": lambda b, a: {"request": b.rid},
    "access.reject": lambda b, a: {"request": b.rid, "reason": "no"},
    "access.cancel": lambda b, a: {"request": b.rid},
    "grant.key-release": lambda b, a: {
        "grant": b.gid,
        "to": "hospital-b",
        "epoch": 1,
        "wrapped_key_digest": digest("wk"),
    },
    "grant.read": lambda b, a: {"grant": b.gid, "digest": digest("plain")},
    "grant.revoke": lambda b, a: {"grant": b.gid},
    "alerts.clear": lambda b, a: {"alert": b.alert},
    "notary.record": lambda b, a: {"digest": digest(a)},
    "notary.endorse": lambda b, a: {"record": b.notary},
}

V, D = "valid", "denied"
LEDGER = ("unknown_sender", "sender_removed", "stale_key")
#  type: owner, supervisor, admin, member, requester (+ the ledger's three refusals)
MATRIX: dict[str, tuple[str, str, str, str, str]] = {
    "org.propose": (V, V, V, D, V),
    "org.vote": ("duplicate", V, V, D, V),
    "org.rotate-key": (V, V, V, V, V),
    "dataset.register": (V, V, V, V, V),
    "dataset.version": (V, D, D, D, D),
    "dataset.derive": (V, D, D, D, V),
    "dataset.retire": (V, D, D, D, D),
    "dataset.purge": (V, V, D, D, D),
    "dataset.policy": (V, D, D, D, D),
    "access.request": (D, V, V, V, V),
    "access.approve": (V, V, D, D, D),
    "access.reject": (V, V, D, D, D),
    "access.cancel": (D, D, D, D, V),
    "grant.key-release": (V, D, D, D, V),
    "grant.read": (D, D, D, D, V),
    "grant.revoke": (V, V, D, D, D),
    "alerts.clear": (D, V, D, D, D),
    "notary.record": (V, V, V, V, V),
    "notary.endorse": (D, V, V, V, V),
}
CASES = [
    (tx_type, actor, (*row, *LEDGER)[ACTORS.index(actor)])
    for tx_type, row in MATRIX.items()
    for actor in ACTORS
]


def test_matrix_covers_every_transaction_type() -> None:
    from sharechain.contracts import access, datasets, grants, membership, notary, risk

    modules = (access, datasets, grants, membership, notary, risk)
    assert set(MATRIX) == {t for m in modules for t in m.registry().handlers}


@pytest.mark.parametrize(("tx_type", "actor", "expected"), CASES)
def test_authorisation(
    base: tuple[Path, Base], tmp_path: Path, tx_type: str, actor: str, expected: str
) -> None:
    path, b = base
    shutil.copytree(path, tmp_path / "chain")
    net = Net(tmp_path / "chain", Clock(), None, create=False)
    try:
        payload = PAYLOADS[tx_type](b, actor)
        sender = SENDER[actor]
        if actor == "stranger":
            r = net.send_with(SigningKey.generate(), sender, tx_type, payload)
        elif actor == "removed":
            r = net.send_with(b.removed_key, sender, tx_type, payload)
        elif actor == "rotated":
            r = net.send_with(b.old_key, sender, tx_type, payload)
        else:
            r = net.send(sender, tx_type, payload)
        assert (r.code, actor) == (expected, actor), r.reason
        assert r.code == "valid" or r.reason
    finally:
        net.emb.close()
