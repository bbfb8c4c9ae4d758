"""The genesis block: the consortium's founding organisations and rules.

Block 0 holds one unsigned transaction of type `genesis` whose payload lists
the founding organisations (id, roles, public keys) and the governance
settings. The genesis block's hash is the consortium's identity: every node is
configured with it and refuses a chain that starts elsewhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sharechain.codec import encode
from sharechain.crypto.merkle import merkle_root
from sharechain.ledger.blocks import (
    GENESIS_PREV_HASH,
    Block,
    BlockHeader,
    TxResult,
    make_block,
    results_root,
)
from sharechain.ledger.contract import State
from sharechain.ledger.identities import (
    ROLES,
    Organisation,
    check_org_id,
    org_key,
    org_to_value,
)
from sharechain.ledger.transactions import ENVELOPE_VERSION, NONCE_SIZE, Transaction
from sharechain.ledger.validation import TX_VALIDITY_SETTING

__all__ = [
    "CONSORTIUM_KEY",
    "GENESIS_TYPE",
    "GOVERNANCE_KEY",
    "Genesis",
    "apply_genesis",
    "genesis_block",
    "genesis_envelope",
]

GENESIS_TYPE = "genesis"
GOVERNANCE_KEY = "config/governance"
CONSORTIUM_KEY = "config/consortium"


@dataclass(frozen=True, slots=True)
class Genesis:
    """What the founders agree on before the chain starts."""

    consortium: str
    """Name of the consortium."""
    organisations: tuple[Organisation, ...]
    """Founding organisations with their public keys and roles."""
    governance: Mapping[str, Any] = field(default_factory=dict)
    """Governance settings (voting thresholds, default policy, risk limits)."""
    timestamp: int = 0
    """Genesis time in milliseconds since the Unix epoch."""


def _payload(genesis: Genesis) -> dict[str, Any]:
    return {
        "consortium": genesis.consortium,
        "organisations": [org_to_value(o) for o in genesis.organisations],
        "governance": dict(genesis.governance),
    }


def genesis_envelope(genesis: Genesis) -> bytes:
    tx = Transaction(
        GENESIS_TYPE, "genesis", bytes(NONCE_SIZE), genesis.timestamp, _payload(genesis)
    )
    return encode([ENVELOPE_VERSION, tx.body_bytes(), b"", b""])


def genesis_block(genesis: Genesis) -> Block:
    """Build block 0 (executing the genesis payload to fill in the delta hash)."""
    from sharechain.ledger.blocks import delta_hash
    from sharechain.ledger.state import BlockState, TxState

    raw = genesis_envelope(genesis)
    state = BlockState(_EmptyStore())
    tx_state = TxState(state)
    apply_genesis(tx_state, _payload(genesis))
    tx_state.commit()
    results = (TxResult("valid", ""),)
    tx_ids = [hashlib.sha256(raw).digest()]
    header = BlockHeader(
        0,
        GENESIS_PREV_HASH,
        merkle_root(tx_ids),
        results_root(tx_ids, results),
        delta_hash(results, state.encoded_writes()),
        genesis.timestamp,
        "",
    )
    return make_block(header, b"", [raw], results)


class _EmptyStore:
    def get(self, key: str) -> bytes | None:
        return None

    def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        return []


def apply_genesis(state: State, payload: Mapping[str, Any]) -> None:
    """Write the founding organisations and the governance settings."""
    orgs: Sequence[Mapping[str, Any]] = payload["organisations"]
    if not orgs:
        raise ValueError("a consortium needs at least one organisation")
    for value in orgs:
        org = Organisation(
            id=check_org_id(value["id"]),
            roles=tuple(value["roles"]),
            sign_key=value["sign_key"],
            enc_key=value["enc_key"],
            status="active",
            since=0,
            name=value.get("name", ""),
        )
        bad = [r for r in org.roles if r not in ROLES]
        if bad or not org.roles:
            raise ValueError(f"organisation {org.id}: roles must be among {ROLES}, got {org.roles}")
        if state.get(org_key(org.id)) is not None:
            raise ValueError(f"organisation {org.id} is listed twice")
        state.put(org_key(org.id), org_to_value(org))
    governance = dict(payload["governance"])
    validity = governance.get(TX_VALIDITY_SETTING, 1)
    if type(validity) is not int or validity <= 0:
        raise ValueError(
            f"governance setting {TX_VALIDITY_SETTING} must be a positive number of "
            f"milliseconds, got {validity!r}"
        )
    state.put(GOVERNANCE_KEY, governance)
    state.put(CONSORTIUM_KEY, payload["consortium"])
