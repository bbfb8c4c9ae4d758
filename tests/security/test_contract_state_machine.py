"""Property: no sequence of transactions, honest or hostile, breaks the contracts' invariants.

Hypothesis drives five organisations through random sequences of valid and
invalid transactions (register, key epoch, request, approve, reject, revoke,
key release, read receipt, purge, policy change, theft of another dataset's
digest, garbage) on the real ledger, one block per transaction, with block
time moving forward at random. After every step:

- no grant exists without its policy's approvals (or an auto-approval rule);
- no key release is accepted on a revoked, expired or used-up grant, and a
  grant's uses never exceed its `max_uses`;
- each ciphertext digest is named by one dataset only;
- a refused transaction changed no state at all.

`make test` runs a short profile; `make soak` (marker `soak`) a long one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)
from security_kit import Clock, Net, digest

from sharechain.codec import decode
from sharechain.contracts.ids import derive_id
from sharechain.ledger import state as ledger_state
from sharechain.ordering.solo import Receipt

ORGS = ("hospital-a", "hospital-b", "regulator", "clinic-c", "insurer-d")
SUPERVISORS = ("regulator",)
POLICIES: tuple[dict[str, Any] | None, ...] = (
    None,
    {"approval": {"any": 1, "of": ["hospital-b", "insurer-d"]}},
    {"approval": {"any": 2, "of": ["hospital-b", "clinic-c", "insurer-d"]}, "max_uses": 2},
    {"max_uses": 1},
    {"max_uses": 2, "auto_approve": ['request.purpose == "audit"']},
    {"purposes": ["treatment"], "max_duration": 5000},
)
org = st.sampled_from(ORGS)


_MEMORY_DIR = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


class Consortium(RuleBasedStateMachine):
    datasets = Bundle("datasets")
    requests = Bundle("requests")
    grants = Bundle("grants")

    def __init__(self) -> None:
        super().__init__()
        # In memory where the system has a tmpfs: each step commits a block, and on a disk
        # shared with other test workers' fsyncs the run took 66 s instead of 5.
        self.dir = Path(tempfile.mkdtemp(prefix="sharechain-sm-", dir=_MEMORY_DIR))
        self.checking = ledger_state.CHECK_READS
        ledger_state.CHECK_READS = True
        self.net = Net(self.dir / "chain", Clock(), None)
        self.made = 0
        self.releases: dict[str, int] = {}

    def teardown(self) -> None:
        self.net.emb.close()
        ledger_state.CHECK_READS = self.checking
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------

    def state(self) -> list[tuple[str, bytes]]:
        return self.net.store.scan("")

    def send(self, sender: str, type: str, payload: dict[str, Any]) -> Receipt:
        before = self.state()
        r = self.net.send(sender, type, payload)
        if r.code != "valid":
            assert self.state() == before, (type, sender, r.code, "a refusal changed state")
        return r

    def block_time(self) -> int:
        head = self.net.store.head()
        assert head is not None
        return head.timestamp

    # -- rules -----------------------------------------------------------------------------

    @initialize(target=datasets, owner=org, policy=st.sampled_from(POLICIES))
    def first_dataset(self, owner: str, policy: dict[str, Any] | None) -> Any:
        return self.register(owner, policy)

    @rule(target=datasets, owner=org, policy=st.sampled_from(POLICIES))
    def register(self, owner: str, policy: dict[str, Any] | None) -> Any:
        self.made += 1
        body: dict[str, Any] = {
            "title": f"dataset {self.made}",
            "plaintext_digest": digest(f"plain-{self.made}"),
            "ciphertext_digest": digest(f"cipher-{self.made}"),
            "segment_root": digest(f"root-{self.made}"),
            "size": 10,
            "schema": [["id", "string"], ["value", "float"]],
        }
        if policy is not None:
            body["policy"] = policy
        r = self.send(owner, "dataset.register", body)
        assert r.code == "valid", r.reason
        return derive_id("dataset", r.tx_id)

    @rule(thief=org, ds=datasets)
    def name_anothers_digest(self, thief: str, ds: str) -> None:
        record = self.net.state(f"dataset/{ds}")
        body = {
            "title": "stolen",
            "plaintext_digest": digest("x"),
            "ciphertext_digest": record["ciphertext_digest"],
            "size": 1,
        }
        assert self.send(thief, "dataset.register", body).code == "denied"

    @rule(sender=org, ds=datasets, epoch=st.integers(1, 3), fresh=st.booleans())
    def key_epoch(self, sender: str, ds: str, epoch: int, fresh: bool) -> None:
        record = self.net.state(f"dataset/{ds}")
        cipher = digest(f"{ds}-{epoch}") if fresh and epoch > 1 else record["ciphertext_digest"]
        body = {
            "dataset": ds,
            "epoch": epoch,
            "ciphertext_digest": cipher,
            "segment_root": record["segment_root"],
            "holders": [],
        }
        self.send(sender, "dataset.epoch", body)

    @rule(
        target=requests,
        requester=org,
        ds=datasets,
        purpose=st.sampled_from(["treatment", "audit", "research"]),
        duration=st.sampled_from([1000, 4000, 60_000]),
    )
    def request(self, requester: str, ds: str, purpose: str, duration: int) -> Any:
        payload = {"dataset": ds, "purpose": purpose, "duration": duration}
        r = self.send(requester, "access.request", payload)
        if r.code != "valid":
            return multiple()
        return derive_id("request", r.tx_id)

    @rule(target=grants, approver=org, rid=requests)
    def approve(self, approver: str, rid: str) -> Any:
        r = self.send(approver, "access.approve", {"request": rid})
        req = self.net.state(f"request/{rid}")
        if r.code == "valid" and req["grant"] == derive_id("grant", r.tx_id):
            return req["grant"]
        return multiple()

    @rule(target=grants, ds=datasets, requester=org, duration=st.sampled_from([1000, 60_000]))
    def request_and_approve(self, ds: str, requester: str, duration: int) -> Any:
        """The honest path, so that grants exist to attack: every approver named approves."""
        payload = {"dataset": ds, "purpose": "treatment", "duration": duration}
        r = self.send(requester, "access.request", payload)
        if r.code != "valid":
            return multiple()
        rid = derive_id("request", r.tx_id)
        req = self.net.state(f"request/{rid}")
        approvers = (
            [req["owner"], *SUPERVISORS]
            if req["approval"] == "owner+supervisor"
            else list(req["approval"]["of"])
        )
        for approver in approvers:
            if self.net.state(f"request/{rid}")["status"] != "open":
                break
            self.send(approver, "access.approve", {"request": rid})
        grant = self.net.state(f"request/{rid}")["grant"]
        return grant or multiple()

    @rule(gid=grants, session=st.sampled_from(["", "s1"]))
    def owner_releases_to_grantee(self, gid: str, session: str) -> None:
        g = self.net.state(f"grant/{gid}")
        self.key_release(g["owner"], gid, g["grantee"], session)

    @rule(gid=grants, session=st.sampled_from(["", "s2"]))
    def grantee_acknowledges(self, gid: str, session: str) -> None:
        g = self.net.state(f"grant/{gid}")
        self.key_release(g["grantee"], gid, g["grantee"], session)

    @rule(target=grants, rid=requests)
    def auto_granted(self, rid: str) -> Any:
        req = self.net.state(f"request/{rid}")
        return req["grant"] if req["grant"] and req["approvals"] == [] else multiple()

    @rule(approver=org, rid=requests)
    def reject(self, approver: str, rid: str) -> None:
        self.send(approver, "access.reject", {"request": rid, "reason": "no"})

    @rule(sender=org, gid=grants)
    def revoke(self, sender: str, gid: str) -> None:
        self.send(sender, "grant.revoke", {"grant": gid, "reason": "enough"})

    @rule(sender=org, gid=grants, to=org, session=st.sampled_from(["", "s1", "s2"]))
    def key_release(self, sender: str, gid: str, to: str, session: str) -> None:
        before = self.net.state(f"grant/{gid}")
        seen = bool(session) and self.net.state(f"keyrel/{gid}/{session}") is not None
        payload = {
            "grant": gid,
            "to": to,
            "epoch": 1,
            "wrapped_key_digest": digest("wk"),
            "session": session,
        }
        r = self.send(sender, "grant.key-release", payload)
        if r.code != "valid":
            return
        assert before["status"] == "active", "a key was released under a revoked grant"
        assert self.block_time() < before["expires_at"], "a key was released after expiry"
        if not seen:
            assert not before["max_uses"] or before["uses"] < before["max_uses"], "used up"
            self.releases[gid] = self.releases.get(gid, 0) + 1

    @rule(sender=org, gid=grants, honest=st.booleans())
    def read(self, sender: str, gid: str, honest: bool) -> None:
        ds = self.net.state(f"dataset/{self.net.state(f'grant/{gid}')['dataset']}")
        seen = ds["plaintext_digest"] if honest else digest("other")
        self.send(sender, "grant.read", {"grant": gid, "digest": seen})

    @rule(sender=org, ds=consumes(datasets))
    def purge(self, sender: str, ds: str) -> None:
        self.send(sender, "dataset.purge", {"dataset": ds, "reason": "retention"})

    @rule(sender=org, ds=datasets, policy=st.sampled_from(POLICIES))
    def change_policy(self, sender: str, ds: str, policy: dict[str, Any] | None) -> None:
        self.send(sender, "dataset.policy", {"dataset": ds, "policy": policy or {}})

    @rule(
        sender=org,
        type=st.sampled_from(["access.approve", "grant.key-release", "dataset.epoch", "x.y"]),
        payload=st.dictionaries(
            st.sampled_from(["request", "grant", "dataset", "epoch", "to"]),
            st.one_of(st.integers(-2, 2), st.text(max_size=70), st.binary(max_size=33)),
            max_size=4,
        ),
    )
    def garbage(self, sender: str, type: str, payload: dict[str, Any]) -> None:
        assert self.send(sender, type, payload).code != "valid"

    @rule(ms=st.sampled_from([1, 999, 1000, 3000]))
    def time_passes(self, ms: int) -> None:
        self.net.clock.t += ms / 1000

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def grants_follow_their_policies(self) -> None:
        for _, raw in self.net.store.scan("grant/"):
            g = decode(raw)
            req = self.net.state(f"request/{g['request']}")
            assert req["status"] == "granted" and req["grant"] == g["id"]
            assert g["grantee"] == req["requester"] not in g["approvals"]
            assert not g["max_uses"] or g["uses"] <= g["max_uses"]
            assert g["uses"] == self.releases.get(g["id"], 0)
            approval = req["approval"]
            capacities = {a["as"]: a["org"] for a in req["approvals"]}
            if g["auto_rule"]:
                # the only rule of POLICIES; it held for this request, and nobody voted
                assert g["auto_rule"] == 'request.purpose == "audit"'
                assert req["purpose"] == "audit" and g["approvals"] == []
            elif approval == "owner+supervisor":
                assert capacities.get("owner") == g["owner"]
                assert capacities.get("supervisor") in SUPERVISORS
            else:
                named = {a["org"] for a in req["approvals"]} & set(approval["of"])
                assert len(named) >= approval["any"]

    @invariant()
    def a_digest_names_one_dataset(self) -> None:
        named: dict[bytes, set[str]] = {}
        for _, raw in self.net.store.scan("dataset/"):
            v = decode(raw)
            named.setdefault(v["ciphertext_digest"], set()).add(v["id"])
        for _, raw in self.net.store.scan("epoch/"):
            v = decode(raw)
            named.setdefault(v["ciphertext_digest"], set()).add(v["dataset"])
        assert all(len(users) == 1 for users in named.values()), named


_QUICK = settings(
    max_examples=40,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_contract_invariants_hold_under_random_transactions() -> None:
    Consortium.TestCase.settings = _QUICK
    Consortium.TestCase().runTest()


@pytest.mark.soak
def test_contract_invariants_hold_under_a_long_soak() -> None:
    Consortium.TestCase.settings = settings(_QUICK, max_examples=400, stateful_step_count=80)
    Consortium.TestCase().runTest()
