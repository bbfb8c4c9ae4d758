"""Validation codes: why a transaction in a block is valid or not.

Every transaction in a block carries one of these codes (contracts add their
own, e.g. `denied`). Invalid transactions stay in the block and change nothing.
"""

from __future__ import annotations

__all__ = [
    "BAD_ENCODING",
    "BAD_PAYLOAD",
    "BAD_SIGNATURE",
    "CODES",
    "CONTRACT_ERROR",
    "REPLAY",
    "SENDER_REMOVED",
    "STALE_KEY",
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
    UNKNOWN_TYPE: "no contract handles this transaction type",
    BAD_PAYLOAD: "the payload is missing fields or has fields of the wrong type",
    CONTRACT_ERROR: "the contract failed while evaluating the transaction (a bug or a native "
    "extension's panic); the transaction changed nothing",
}
"""Meaning of each ledger-level code; contracts document their own."""
