"""Validation codes the data-sharing contracts record for refused transactions.

The ledger's own codes (bad signature, unknown sender, stale key, replay, ...)
are in `sharechain.ledger.validation`; these are the contracts'. Every refusal
also carries a reason in words that the sender reads back from its receipt.
"""

from __future__ import annotations

__all__ = [
    "BAD_EXPRESSION",
    "BAD_PAYLOAD",
    "BAD_STATE",
    "CODES",
    "DENIED",
    "DIGEST_MISMATCH",
    "DUPLICATE",
    "EXPIRED",
    "MASKED",
    "NOT_FOUND",
    "NO_KEY",
    "OVER_BUDGET",
    "REVOKED",
    "SUSPENDED",
    "USED_UP",
    "WRONG_GRANTEE",
]

BAD_PAYLOAD = "bad_payload"
DENIED = "denied"
NOT_FOUND = "not_found"
DUPLICATE = "duplicate"
BAD_STATE = "bad_state"
BAD_EXPRESSION = "bad_expression"
EXPIRED = "expired"
REVOKED = "revoked"
SUSPENDED = "suspended"
USED_UP = "used_up"
WRONG_GRANTEE = "wrong_grantee"
DIGEST_MISMATCH = "digest_mismatch"
NO_KEY = "no_key"
MASKED = "masked"
OVER_BUDGET = "over_budget"

CODES = {
    BAD_PAYLOAD: "the payload is missing a field or a field has the wrong type or value",
    DENIED: "the sender's role does not allow this transaction on this object",
    NOT_FOUND: "the dataset, request, grant, proposal, alert or organisation does not exist",
    DUPLICATE: "the thing already exists or the sender already did this",
    BAD_STATE: "the object is not in a state that allows this (retired, purged, closed, ...)",
    BAD_EXPRESSION: "an auto-approval rule is not a valid CEL expression",
    EXPIRED: "the grant's expiry (block time) has passed",
    REVOKED: "the grant was revoked",
    SUSPENDED: "the grantee's grants are suspended by a risk alert",
    USED_UP: "the grant's maximum number of uses is reached",
    WRONG_GRANTEE: "a key may only be released to the grant's grantee",
    DIGEST_MISMATCH: "the digest does not match the dataset's recorded digest",
    NO_KEY: "no key was released under this grant yet",
    MASKED: "the grant releases only the masked version made for it (not the raw data)",
    OVER_BUDGET: "the masked release would spend more epsilon than the privacy budget left",
}
"""Meaning of each contract code (see docs/contracts.md)."""
