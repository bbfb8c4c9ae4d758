"""Masking profiles on the chain, registered by their digest.

`profile.register` (payload: `name`, `profile`) records a masking profile in
its canonical form (`privacy.profiles.profile_form`: a map of `k`, `l`,
`suppress`, `quasi_identifiers`, `sensitive`, `default` and `columns`) under
its digest, the SHA-256 of that form's canonical CBOR. A policy, a grant or a
transformation record can then name a profile by 32 bytes, and anyone can
check which rules those bytes stand for.

The contract checks the form's shape (its fields, their types, bounded sizes)
but does not interpret the rules: that is `privacy/`, a layer above, which
parses the same form before masking. Any member may register; a profile is
registered once (a second registration of the same digest is a duplicate).

State: `profile/<digest hex>` holds `digest`, `name`, `owner`, `form`,
`tx_id`, `height`, `timestamp`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sharechain import codec
from sharechain.contracts import _fields as f
from sharechain.contracts.codes import BAD_PAYLOAD, DUPLICATE
from sharechain.ledger.contract import BlockContext, ContractRegistry, Reject, State
from sharechain.ledger.transactions import SignedTransaction

__all__ = [
    "MAX_FORM",
    "REGISTER",
    "RegisteredProfile",
    "profile_digest_of",
    "profile_from_value",
    "profile_key",
    "registry",
]

REGISTER: Final = "profile.register"
MAX_FORM: Final = 64 << 10
"""Largest encoded profile form, in bytes."""
_FIELDS: Final = {"k", "l", "suppress", "quasi_identifiers", "sensitive", "default", "columns"}
_RULES: Final = {"keep", "drop", "tokenize", "generalise", "noise"}
_MAX_COLUMNS: Final = 1024


@dataclass(frozen=True, slots=True)
class RegisteredProfile:
    """A masking profile as the chain records it."""

    digest: bytes
    """SHA-256 of the form's canonical CBOR."""
    name: str
    """A human name given at registration."""
    owner: str
    """The organisation that registered it."""
    form: Mapping[str, Any]
    """The canonical form (parse it with `privacy.profiles`)."""
    tx_id: bytes
    """The registering transaction."""
    height: int
    """Block height of the registration."""
    timestamp: int
    """Block time of the registration (ms)."""


def profile_key(digest: bytes) -> str:
    return f"profile/{digest.hex()}"


def profile_digest_of(form: Mapping[str, Any]) -> bytes:
    """SHA-256 of the canonical CBOR of a profile form (equals `privacy.profile_digest`)."""
    return hashlib.sha256(codec.encode(form)).digest()


def profile_from_value(value: Mapping[str, Any]) -> RegisteredProfile:
    return RegisteredProfile(
        value["digest"],
        value["name"],
        value["owner"],
        value["form"],
        value["tx_id"],
        value["height"],
        value["timestamp"],
    )


def _names(form: Mapping[str, Any], field: str) -> None:
    value = form[field]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise Reject(BAD_PAYLOAD, f"profile.{field} must be a list of column names")


def _rule(where: str, value: Any) -> None:
    if not isinstance(value, Mapping) or value.get("rule") not in _RULES:
        raise Reject(BAD_PAYLOAD, f"{where} must be a map whose rule is one of {sorted(_RULES)}")


def _check_form(form: Any) -> None:
    if not isinstance(form, Mapping) or set(form) != _FIELDS:
        raise Reject(BAD_PAYLOAD, f"profile must be a map of exactly {sorted(_FIELDS)}")
    for field, allow_none in (("k", False), ("l", True)):
        n = form[field]
        if not (n is None and allow_none) and (
            not isinstance(n, int) or isinstance(n, bool) or n < 1
        ):
            raise Reject(BAD_PAYLOAD, f"profile.{field} must be a whole number >= 1")
    if not isinstance(form["suppress"], bool):
        raise Reject(BAD_PAYLOAD, "profile.suppress must be true or false")
    _names(form, "quasi_identifiers")
    _names(form, "sensitive")
    _rule("profile.default", form["default"])
    columns = form["columns"]
    if not isinstance(columns, list) or not 0 < len(columns) <= _MAX_COLUMNS:
        raise Reject(BAD_PAYLOAD, f"profile.columns must list 1 to {_MAX_COLUMNS} columns")
    for entry in columns:
        if not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[0], str):
            raise Reject(BAD_PAYLOAD, "each of profile.columns is a [name, rule] pair")
        _rule(f"the rule of column {entry[0]!r}", entry[1])


def _register(state: State, stx: SignedTransaction, ctx: BlockContext) -> None:
    f.sender(state, stx.tx.sender)
    p = stx.tx.payload
    name = f.text(p, "name", limit=128)
    form = p.get("profile")
    _check_form(form)
    encoded = codec.encode(form)
    if len(encoded) > MAX_FORM:
        raise Reject(BAD_PAYLOAD, f"profile is {len(encoded)} bytes encoded; at most {MAX_FORM}")
    digest = hashlib.sha256(encoded).digest()
    key = profile_key(digest)
    state.touch(key)
    existing = state.get(key)
    if existing is not None:
        raise Reject(
            DUPLICATE,
            f"this profile is registered already as {existing['name']!r} by "
            f"{existing['owner']}; refer to it by its digest {digest.hex()}",
        )
    state.put(
        key,
        {
            "digest": digest,
            "name": name,
            "owner": stx.tx.sender,
            "form": form,
            "tx_id": stx.id,
            "height": ctx.height,
            "timestamp": ctx.timestamp,
        },
    )


def registry() -> ContractRegistry:
    return ContractRegistry({REGISTER: _register})
