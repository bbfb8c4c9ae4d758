"""Helpers for the ledger tests: a small chain with deterministic keys."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sharechain.contracts import notary
from sharechain.crypto.keyfile import OrgKeys
from sharechain.ledger.blocks import Block
from sharechain.ledger.chain import Ledger
from sharechain.ledger.contract import ContractRegistry
from sharechain.ledger.genesis import Genesis, genesis_block
from sharechain.ledger.identities import Organisation
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import SignedTransaction, sign_transaction

ORGS = {"hospital-a": ("member", "admin"), "hospital-b": ("member",), "regulator": ("supervisor",)}
T0 = 1_750_000_000_000


def org_keys(org: str) -> OrgKeys:
    """Deterministic keys: seeds derived from the organisation id."""
    seed = hashlib.sha256(b"sign:" + org.encode()).digest()
    enc = hashlib.sha256(b"enc:" + org.encode()).digest()
    return OrgKeys.from_secrets(org, seed, enc)


class Kit:
    """A ledger in a temporary SQLite file with helpers to sign and order blocks."""

    def __init__(self, path: Path, registry: ContractRegistry | None = None) -> None:
        self.path = path
        self.registry = registry or notary.registry()
        self.keys = {o: org_keys(o) for o in ORGS}
        self.genesis = genesis_block(
            Genesis(
                "test-consortium",
                tuple(
                    Organisation(o, r, k.signing.public_key, k.encryption_public)
                    for (o, r), k in zip(ORGS.items(), self.keys.values(), strict=True)
                ),
                {},
                T0,
            )
        )
        self.store = Store(path)
        self.ledger = Ledger(self.store, self.registry)
        self.ledger.commit(self.genesis)
        self._nonce = itertools.count(1)
        self._clock = itertools.count(1)

    def sign(
        self, org: str, type: str, payload: Mapping[str, Any], *, key: str | None = None
    ) -> SignedTransaction:
        """Sign as `org` with `key`'s signing key (default: `org`'s own); deterministic nonces."""
        n = next(self._nonce)
        return sign_transaction(
            self.keys[key or org].signing,
            type,
            org,
            payload,
            now=lambda: (T0 + n) / 1000,
            rng=lambda size: n.to_bytes(size, "big"),
        )

    def record(self, org: str, content: bytes, note: str = "") -> SignedTransaction:
        return self.sign(
            org, notary.RECORD, {"digest": hashlib.sha256(content).digest(), "note": note}
        )

    def add(self, raws: Sequence[bytes], orderer: str = "hospital-a") -> Block:
        """Build, sign and commit the next block holding `raws`."""
        block, ex = self.ledger.build_block(
            list(raws),
            orderer=orderer,
            key=self.keys[orderer].signing,
            timestamp=T0 + 1000 * next(self._clock),
        )
        self.ledger.commit(block, ex)
        return block

    def build(self, raws: Sequence[bytes], orderer: str = "hospital-a") -> Block:
        """Build and sign the next block without committing it."""
        block, _ = self.ledger.build_block(
            list(raws),
            orderer=orderer,
            key=self.keys[orderer].signing,
            timestamp=T0 + 1000 * next(self._clock),
        )
        return block

    def fresh_ledger(self, path: Path) -> Ledger:
        """A second peer's ledger holding only genesis."""
        ledger = Ledger(Store(path), self.registry)
        ledger.commit(self.genesis)
        return ledger
