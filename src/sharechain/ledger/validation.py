"""Validation codes: why a transaction in a block is valid or not.

Every transaction in a block carries one of these codes (contracts add their
own, e.g. `denied`). Invalid transactions stay in the block and change nothing.

A signed transaction is valid only for a while: its `created_at` (signed)
must lie within `tx_validity_ms` (a governance setting, 24 hours by
default) before its block's time and at most 30 s after it, so a
transaction signed and withheld cannot be submitted at any later time.
Block time only, so every peer decides alike.
"""

from __future__ import annotations

__all__ = [
    "BAD_ENCODING",
    "BAD_PAYLOAD",
    "BAD_SIGNATURE",
    "CODES",
    "CONTRACT_ERROR",
    "DEFAULT_TX_VALIDITY_MS",
    "REPLAY",
    "SENDER_REMOVED",
    "STALE_KEY",
    "TX_EXPIRED",
    "TX_FROM_FUTURE",
    "TX_FUTURE_SKEW_MS",
    "TX_VALIDITY_SETTING",
    "UNKNOWN_SENDER",
    "UNKNOWN_TYPE",
    "VALID",
]

VALID = "valid"
BAD_ENCODING = "bad_encoding"
BAD_SIGNATURE = "bad_signature"
UNKNOWN_SENDER = "unknown_sender"
SENDER_REMOVED = "sender_removed"
STALE_KEY = "stale_key"
REPLAY = "replay"
TX_EXPIRED = "tx_expired"
TX_FROM_FUTURE = "tx_from_future"
UNKNOWN_TYPE = "unknown_type"
BAD_PAYLOAD = "bad_payload"
CONTRACT_ERROR = "contract_error"

CODES = {
    VALID: "the transaction was applied",
    BAD_ENCODING: "the envelope is not canonical CBOR of the transaction format",
    BAD_SIGNATURE: "the signature does not verify under the sender's current key",
    UNKNOWN_SENDER: "no organisation with this id is on the chain",
    SENDER_REMOVED: "the sending organisation was removed from the consortium",
    STALE_KEY: "signed with a key that is not the sender's current key (rotated out?)",
    REPLAY: "a transaction with this id is already on the chain",
    TX_EXPIRED: "signed longer ago than the consortium's validity window (governance "
    "tx_validity_ms) before the block's time; sign it again",
    TX_FROM_FUTURE: "dated more than 30 s after the block's time (the sender's clock is ahead)",
    UNKNOWN_TYPE: "no contract handles this transaction type",
    BAD_PAYLOAD: "the payload is missing fields or has fields of the wrong type",
    CONTRACT_ERROR: "the contract failed while evaluating the transaction (a bug or a native "
    "extension's panic); the transaction changed nothing",
}
"""Meaning of each ledger-level code; contracts document their own."""

TX_VALIDITY_SETTING = "tx_validity_ms"
"""The governance setting (genesis, `config/governance`): how long after its `created_at`
a signed transaction may still enter a block, in ms of block time."""
DEFAULT_TX_VALIDITY_MS = 24 * 3_600_000
"""The validity window when genesis does not set one: 24 hours."""
TX_FUTURE_SKEW_MS = 30_000
"""How far a transaction's `created_at` may lie after its block's time (clock skew)."""
