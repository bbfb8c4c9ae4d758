"""Helpers of the console's tests: a consortium, a node, signed transactions, logged-in clients."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from web_testclient import TestClient

from sharechain.contracts import derive_id
from sharechain.ledger.transactions import sign_transaction
from sharechain.node.launcher import node_data_dir
from sharechain.node.service import Node
from sharechain.ordering.solo import Receipt
from sharechain.storage.datadir import DataDir, OrgSpec

ORGS = (
    OrgSpec("hospital-a", ("member", "admin")),
    OrgSpec("bank-b", ("member", "admin")),
    OrgSpec("regulator", ("member", "supervisor", "admin")),
)
OWNER, GRANTEE, SUPERVISOR = "hospital-a", "bank-b", "regulator"
PASSWORD = "correct horse battery"
XSS = "<img src=x onerror=alert(1)>"


class Clock:
    """A clock the tests move by hand (sessions, login throttling)."""

    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


@dataclass
class Chain:
    """Sends transactions signed by any organisation of the consortium through `node`."""

    source: Path
    node: Node

    def send(self, org: str, type: str, payload: Mapping[str, Any]) -> Receipt:
        keys = DataDir.open(self.source).keys(org)
        stx = sign_transaction(keys.signing, type, org, payload)
        (future,) = self.node.submit([stx.raw])
        receipt: Receipt = future.result(timeout=20)
        assert receipt.code == "valid", (type, org, receipt.code, receipt.reason)
        return receipt

    def register(self, title: str = "Blood tests 2025", owner: str = OWNER, **extra: Any) -> str:
        payload = {
            "title": title,
            "description": "Lab results of hospital A",
            "tags": ["lab", "blood"],
            "schema": [["patient_id", "string"], ["glucose", "float"]],
            "classification": "confidential",
            "plaintext_digest": digest(f"plain {title}"),
            "ciphertext_digest": digest(f"cipher {title}"),
            "size": 1024,
            "segment_root": digest(f"segments {title}"),
            "custody": "owner",
            "holders": [],
            **extra,
        }
        return derive_id("dataset", self.send(owner, "dataset.register", payload).tx_id)

    def request(self, ds: str, org: str = GRANTEE) -> str:
        payload = {"dataset": ds, "purpose": "research", "duration": 3_600_000}
        return derive_id("request", self.send(org, "access.request", payload).tx_id)


def node_dir(source: Path, base: Path, org: str) -> Path:
    return node_data_dir(source, base / "nodes" / org, org)


CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def login(client: TestClient, name: str, password: str = PASSWORD) -> Any:
    page = client.get("/ui/login")
    return client.post(
        "/ui/login",
        data={"name": name, "password": password, "csrf": csrf_of(page.text), "next": "/ui/"},
        follow_redirects=False,
    )
