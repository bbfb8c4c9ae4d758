"""The person behind an organisation's decision: the optional `operator` field.

A node signs the transactions its console's people take (approve, deny,
revoke, vote, clear an alert, approve or reject a computation session) with
the organisation's key; the organisation is the party that decided, and
`operator` says which of its people pressed the button, so the audit trail
reads "approved by hospital-a (alice)". The command line leaves the field out.

The name is another member's text that every peer's audit trail shows, so
the contract refuses (`bad_payload`) anything that could lie on a screen:
more than `MAX_OPERATOR` characters, an empty or space-padded name, control
characters, bidirectional embeddings, overrides, isolates and marks,
invisible format characters, separators other than the plain space,
surrogates, private-use and non-characters. The refused set is a fixed table
of code points, not `str.isprintable`: that follows the Python build's Unicode
version, and every peer must reach the same verdict.

A valid name is recorded on the record the action changed (`operators`, a
map from organisation to name) and read back from the transaction itself by
`contracts.queries.audit`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from sharechain.contracts.codes import BAD_PAYLOAD
from sharechain.ledger.contract import Reject

__all__ = ["MAX_OPERATOR", "OPERATED", "OPERATOR", "checked", "operator_of", "recorded", "refusal"]

OPERATOR: Final = "operator"
"""The payload field."""
MAX_OPERATOR: Final = 64
"""Longest operator name, in characters."""
OPERATED: Final = frozenset(
    {
        "access.approve",
        "access.reject",
        "grant.revoke",
        "org.vote",
        "alerts.clear",
        "computation.approve",
        "computation.reject",
    }
)
"""Transaction types whose contract checks and records an operator (the console's actions)."""

_REFUSED: Final = (
    (0x0000, 0x001F),  # C0 controls
    (0x007F, 0x009F),  # DEL, C1 controls
    (0x00A0, 0x00A0),  # no-break space
    (0x00AD, 0x00AD),  # soft hyphen
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x0600, 0x0605),  # Arabic number signs (format)
    (0x061C, 0x061C),  # Arabic letter mark
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x115F, 0x1160),  # Hangul fillers (invisible)
    (0x1680, 0x1680),  # Ogham space
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),  # Mongolian variation selectors, vowel separator
    (0x2000, 0x200F),  # spaces, zero-width space/joiners, LRM, RLM
    (0x2028, 0x202F),  # line/paragraph separators, bidi embeddings and overrides
    (0x205F, 0x206F),  # math space, word joiner, invisible operators, bidi isolates
    (0x3000, 0x3000),  # ideographic space
    (0x3164, 0x3164),  # Hangul filler
    (0xD800, 0xF8FF),  # surrogates, private use
    (0xFDD0, 0xFDEF),  # non-characters
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFEFF, 0xFEFF),  # byte order mark
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0xFFF0, 0xFFFB),  # specials, interlinear annotation
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),  # Egyptian hieroglyph format controls
    (0x1BCA0, 0x1BCA3),  # shorthand format controls
    (0x1D173, 0x1D17A),  # musical format controls
    (0xE0000, 0xE0FFF),  # tags, variation selectors supplement
    (0xF0000, 0x10FFFF),  # private use planes
)


def _refused(code: int) -> bool:
    if code & 0xFFFE == 0xFFFE:  # U+xFFFE and U+xFFFF of every plane are non-characters
        return True
    return any(lo <= code <= hi for lo, hi in _REFUSED)


def refusal(value: object) -> str:
    """Why `value` is not an operator name; empty when it is one."""
    if not isinstance(value, str) or not value or len(value) > MAX_OPERATOR:
        return f"{OPERATOR} must be a name of 1 to {MAX_OPERATOR} characters"
    if value != value.strip(" "):
        return f"{OPERATOR} must not start or end with a space"
    bad = next((ch for ch in value if _refused(ord(ch))), None)
    if bad is not None:
        return (
            f"{OPERATOR} must be printable text: U+{ord(bad):04X} is a control, bidi, "
            "invisible or private-use character"
        )
    return ""


def checked(payload: Mapping[str, Any]) -> str:
    """The payload's operator name (empty when absent); refuses a bad one (`bad_payload`)."""
    if OPERATOR not in payload:
        return ""
    why = refusal(payload[OPERATOR])
    if why:
        raise Reject(BAD_PAYLOAD, why)
    name: str = payload[OPERATOR]
    return name


def recorded(value: Mapping[str, Any], org: str, name: str) -> dict[str, Any]:
    """`value` with `name` recorded as the operator who acted for `org` (unchanged if none)."""
    out = dict(value)
    if name:
        out["operators"] = {**value.get("operators", {}), org: name}
    return out


def operator_of(type: str, payload: Mapping[str, Any], valid: bool) -> str:
    """The operator a committed transaction names, if its contract checked and accepted it."""
    if not valid or type not in OPERATED:
        return ""
    value = payload.get(OPERATOR, "")
    return value if isinstance(value, str) and not refusal(value) else ""
