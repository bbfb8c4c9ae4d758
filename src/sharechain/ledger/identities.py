"""Organisations as the ledger sees them: who may sign, with which key.

The ledger validates every transaction against the sender's record in world
state (`org/<id>`): the sender must exist, be active, and have signed with its
*current* key. Membership contracts change these records (admission, key
rotation, removal); the genesis block writes the founding ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sharechain.crypto.signing import KeyId, key_id
from sharechain.errors import EncodingError

__all__ = [
    "ROLES",
    "Organisation",
    "check_org_id",
    "org_from_value",
    "org_key",
    "org_to_value",
]

ROLES = ("member", "supervisor", "admin")
_ORG_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def check_org_id(org: str) -> str:
    if not isinstance(org, str) or not _ORG_ID.match(org):
        raise ValueError(
            f"organisation id {org!r} must be a lowercase slug: letters, digits and "
            "inner hyphens, at most 64 characters (e.g. hospital-a)"
        )
    return org


@dataclass(frozen=True, slots=True)
class Organisation:
    """A consortium organisation's public record."""

    id: str
    """Lowercase slug, e.g. `hospital-a`."""
    roles: tuple[str, ...]
    """Any of `member`, `supervisor`, `admin`."""
    sign_key: bytes
    """Current Ed25519 public key."""
    enc_key: bytes
    """Current X25519 public key (data keys are wrapped to it)."""
    status: str = "active"
    """`active` or `removed`."""
    since: int = 0
    """Height at which this record took its current form."""
    name: str = ""
    """Display name."""

    @property
    def sign_key_id(self) -> KeyId:
        return key_id(self.sign_key)

    @property
    def active(self) -> bool:
        return self.status == "active"

    def has_role(self, role: str) -> bool:
        return role in self.roles


def org_key(org: str) -> str:
    return f"org/{org}"


def org_to_value(org: Organisation) -> dict[str, Any]:
    return {
        "id": org.id,
        "roles": list(org.roles),
        "sign_key": org.sign_key,
        "enc_key": org.enc_key,
        "status": org.status,
        "since": org.since,
        "name": org.name,
    }


def org_from_value(value: Any) -> Organisation:
    try:
        return Organisation(
            id=value["id"],
            roles=tuple(value["roles"]),
            sign_key=value["sign_key"],
            enc_key=value["enc_key"],
            status=value["status"],
            since=value["since"],
            name=value.get("name", ""),
        )
    except (KeyError, TypeError) as exc:
        raise EncodingError(f"organisation record is malformed: {exc}") from exc
