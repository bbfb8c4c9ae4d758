"""A small consortium on a temporary data directory, with a settable clock (test helpers)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sharechain.contracts import derive_id
from sharechain.contracts.membership import ROTATE_DOMAIN, rotation_message
from sharechain.crypto.keyfile import OrgKeys
from sharechain.crypto.signing import SigningKey
from sharechain.ledger.transactions import sign_transaction
from sharechain.ordering.solo import Receipt
from sharechain.sharing.embedded import Embedded
from sharechain.storage.datadir import OrgSpec, init_consortium

T0 = 1_700_000_000.0  # genesis time, seconds

ORGS = (
    OrgSpec("hospital-a", ("member", "admin")),
    OrgSpec("hospital-b", ("member", "admin")),
    OrgSpec("regulator", ("member", "supervisor", "admin")),
    OrgSpec("clinic-c", ("member",)),
    OrgSpec("insurer-d", ("member", "admin")),
)


class Clock:
    """Injected wall clock; block time follows it."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    @property
    def ms(self) -> int:
        return int(self.t * 1000)

    def at_ms(self, ms: int) -> None:
        """Set the clock so that the next block's time is exactly `ms`."""
        t = ms / 1000
        while int(t * 1000) < ms:  # float division may land a hair below
            t = math.nextafter(t, math.inf)
        self.t = t


def digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


class Net:
    """The consortium: submit as any organisation, read ids back."""

    def __init__(
        self,
        path: Path,
        clock: Clock,
        governance: Mapping[str, Any] | None,
        *,
        create: bool = True,
    ) -> None:
        self.path = path
        self.clock = clock
        if create:
            init_consortium(path, ORGS, governance=governance, now=clock)
        self.emb = Embedded(path, now=clock)
        self.store = self.emb.store
        self.registered = 0

    def send(self, org: str, type: str, payload: Mapping[str, Any]) -> Receipt:
        """Submit and return the receipt, valid or not."""
        return self.emb.submit(org, type, payload, check=False)

    def ok(self, org: str, type: str, payload: Mapping[str, Any]) -> Receipt:
        r = self.send(org, type, payload)
        assert r.code == "valid", (type, org, r.code, r.reason)
        return r

    def register(self, owner: str = "hospital-a", **extra: Any) -> str:
        # Each dataset seals its own payload: a ciphertext digest names one dataset.
        self.registered += 1
        payload = {
            "title": "Blood tests 2025",
            "description": "Lab results of hospital A",
            "tags": ["lab", "blood"],
            "schema": [["patient_id", "string"], ["glucose", "float"]],
            "classification": "confidential",
            "plaintext_digest": digest("plain"),
            "ciphertext_digest": digest(f"cipher-{self.registered}"),
            "size": 1024,
            "segment_root": digest("segments"),
            "custody": "owner",
            "holders": [],
            **extra,
        }
        return derive_id("dataset", self.ok(owner, "dataset.register", payload).tx_id)

    def request(self, ds: str, org: str = "hospital-b", **extra: Any) -> Receipt:
        payload = {"dataset": ds, "purpose": "treatment", "duration": 3_600_000, **extra}
        return self.ok(org, "access.request", payload)

    def granted(self, ds: str, org: str = "hospital-b") -> str:
        """Request, approve by owner and regulator; the grant id."""
        rid = derive_id("request", self.request(ds, org).tx_id)
        self.ok("hospital-a", "access.approve", {"request": rid})
        r = self.ok("regulator", "access.approve", {"request": rid})
        return derive_id("grant", r.tx_id)

    def state(self, key: str) -> Any:
        from sharechain.ledger.state import StateReader

        return StateReader(self.store).get(key)

    def release(self, gid: str, by: str = "hospital-a", to: str = "hospital-b") -> Receipt:
        payload = {"grant": gid, "to": to, "epoch": 1, "wrapped_key_digest": digest("wk")}
        return self.send(by, "grant.key-release", payload)

    # -- membership helpers ------------------------------------------------

    def send_with(
        self, key: SigningKey, sender: str, type: str, payload: Mapping[str, Any]
    ) -> Receipt:
        """Sign with an arbitrary key (a stranger's, a rotated-out one) and submit."""
        stx = sign_transaction(key, type, sender, payload, now=self.clock)
        (r,) = self.emb.submit_raw([stx.raw], orderer="hospital-a")
        return r

    def admit(self, org: str, roles: tuple[str, ...] = ("member",)) -> OrgKeys:
        keys = OrgKeys.generate(org)
        payload = {
            "action": "admit",
            "org": org,
            "roles": list(roles),
            "sign_key": keys.signing.public_key,
            "enc_key": keys.encryption_public,
        }
        pid = derive_id("proposal", self.ok("hospital-a", "org.propose", payload).tx_id)
        self.vote_through(pid)
        self.emb.datadir.save_keys(keys)
        return keys

    def vote_through(self, pid: str) -> None:
        for admin in ("hospital-b", "regulator"):
            self.ok(admin, "org.vote", {"proposal": pid, "approve": True})
        assert self.state(f"proposal/{pid}")["status"] == "passed"

    def remove(self, org: str) -> None:
        payload = {"action": "remove", "org": org}
        pid = derive_id("proposal", self.ok("hospital-a", "org.propose", payload).tx_id)
        self.vote_through(pid)

    def rotate(self, org: str) -> OrgKeys:
        """Rotate `org`'s keys; returns the old ones (the data dir keeps the new)."""
        old = self.emb.keys(org)
        new = OrgKeys.generate(org)
        self.ok(org, "org.rotate-key", rotation_payload(new))
        self.emb.datadir.save_keys(new)
        self.emb._keys.pop(org, None)
        return old


def rotation_payload(new: OrgKeys) -> dict[str, Any]:
    msg = rotation_message(new.org, new.signing.public_key, new.encryption_public)
    return {
        "sign_key": new.signing.public_key,
        "enc_key": new.encryption_public,
        "proof": new.signing.sign(ROTATE_DOMAIN, msg),
    }
