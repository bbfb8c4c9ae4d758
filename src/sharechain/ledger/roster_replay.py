"""Membership replayed from evidence: who the members are, with which keys, at a height.

A proof bundle (`sharechain.ledger.bundles`) and the anchor light client
(`sharechain.contracts.anchors`) both need a consortium's roster at some point of
its chain without its state: they rebuild it from the genesis payload (the
founders, their roles and keys, the governance) and the membership transactions
after it, each proved in its block under a quorum checkpoint:

- `org.rotate-key`: signed by the key it replaces, with the new key's proof of
  possession; the sender's key becomes the new one;
- `org.propose` (admit or remove) by an active admin, and `org.vote` by active
  admins: tallied as the membership contract tallies them (yes votes of the
  active admins, the organisation concerned not counted, against governance
  `admission_votes`, default more than half); when a proposal passes, its
  organisation is admitted with the roles and key of the proposal, or removed.

Each piece of evidence carries its validation code, proved under its
block's `results_root`: one the chain refused is no evidence. Each is also
judged here by the rules the chain applied to it that a verifier can check:
the sender is an active member signing with its current key
(`unknown_sender`, `sender_removed`, `stale_key`, `bad_signature`), the
transaction's `created_at` lies in its block's validity window (`tx_expired`,
`tx_from_future`), and the membership contract's own conditions, so a
verifier does not take the chain's word for what it can recompute. Evidence
the chain would have refused is refused as evidence, with the reason;
evidence that is left out (a vote, a whole admission) cannot be noticed: the
roster is then the one before it, which a checkpoint cosigned by the real
members fails.

The replay's state is a plain map (`to_value` / `from_value`) so a contract
can keep it in world state between transactions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sharechain.codec import encode
from sharechain.crypto.signed_note import parse_note
from sharechain.crypto.signing import key_id, verify
from sharechain.errors import EncodingError, IntegrityError, InvalidSignatureError
from sharechain.ledger.identities import ROLES, check_org_id
from sharechain.ledger.transactions import TX_DOMAIN, SignedTransaction

__all__ = [
    "MEMBERSHIP_TYPES",
    "PROPOSE",
    "ROTATE",
    "VOTE",
    "EvidenceError",
    "Members",
    "Placed",
    "members_from_genesis",
    "proposal_id",
    "refuse_removed_signers",
]

PROPOSE = "org.propose"
VOTE = "org.vote"
ROTATE = "org.rotate-key"
MEMBERSHIP_TYPES = frozenset({PROPOSE, VOTE, ROTATE})
"""As `sharechain.contracts.membership` names them (the ledger may not import contracts)."""
ROTATE_DOMAIN = b"sharechain/rotate-key/v1\x00"
DEFAULT_VALIDITY_MS = 24 * 3_600_000
FUTURE_SKEW_MS = 30_000
MAX_NAME = 4096


class EvidenceError(IntegrityError):
    """Membership evidence is not what the chain accepted; the message says why."""


@dataclass(frozen=True, slots=True)
class Placed:
    """A membership transaction with where it sits in the chain."""

    stx: SignedTransaction
    """The decoded envelope."""
    height: int
    """Block height."""
    index: int
    """Position in the block."""
    timestamp: int
    """Its block's time (ms)."""
    code: str
    """Its validation code, proved under its block's `results_root`."""
    reason: str
    """Why it was refused; empty when valid."""


def proposal_id(tx_id: bytes) -> str:
    """The id the membership contract gives the proposal of transaction `tx_id`."""
    return hashlib.sha256(b"proposal\x000\x00" + tx_id).hexdigest()


@dataclass(slots=True)
class Members:
    """A consortium's membership as replayed so far."""

    orgs: dict[str, dict[str, Any]]
    """Organisation id -> `{"sign_key", "roles", "active"}`."""
    admission_votes: int
    """Governance `admission_votes` (0: more than half of the active admins)."""
    validity_ms: int
    """Governance `tx_validity_ms`."""
    open: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Open proposals by id: `{"action", "org", "roles", "sign_key", "yes", "no"}`."""
    last: tuple[int, int] = (0, 0)
    """(height, index) of the last transaction applied."""
    retired: dict[bytes, tuple[int, int]] = field(default_factory=dict)
    """Key ids rotated out in this replay -> where (for messages only, not kept)."""
    removed_at: dict[str, int] = field(default_factory=dict)
    """Organisations removed in this replay -> height (for messages only, not kept)."""

    def keys(self) -> dict[str, bytes]:
        """The active members' signing keys."""
        return {o: v["sign_key"] for o, v in self.orgs.items() if v["active"]}

    def to_value(self) -> dict[str, Any]:
        return {
            "orgs": {o: dict(v) for o, v in self.orgs.items()},
            "admission_votes": self.admission_votes,
            "validity_ms": self.validity_ms,
            "open": {p: dict(v) for p, v in self.open.items()},
            "last": list(self.last),
        }

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Members:
        return cls(
            {o: dict(v) for o, v in value["orgs"].items()},
            value["admission_votes"],
            value["validity_ms"],
            {p: dict(v) for p, v in value["open"].items()},
            (value["last"][0], value["last"][1]),
        )

    def replay(self, evidence: Sequence[Placed], until: int) -> None:
        """Apply `evidence` (membership transactions past `last`, below height `until`,
        in chain order); raise `EvidenceError` at the first the chain would have refused."""
        for t in evidence:
            where = f"{t.stx.tx.type} at height {t.height}"
            if (t.height, t.index) <= self.last:
                raise EvidenceError(
                    f"{where}: membership evidence must be in chain order, each once"
                )
            if t.height >= until:
                raise EvidenceError(
                    f"{where}: evidence must lie below the checkpoint's size {until}"
                )
            if t.stx.tx.type not in MEMBERSHIP_TYPES:
                raise EvidenceError(f"{where}: not a membership transaction")
            if t.code != "valid":
                raise EvidenceError(
                    f"{where}: the chain refused it ({t.code}), so it changed no membership"
                )
            self._admitted_tx(t, where)
            {ROTATE: self._rotate, PROPOSE: self._propose, VOTE: self._vote}[t.stx.tx.type](
                t, where
            )
            self.last = (t.height, t.index)

    def _admitted_tx(self, t: Placed, where: str) -> None:
        """The ledger's checks before any contract: sender, key, signature, time."""
        stx, org = t.stx, t.stx.tx.sender
        record = self.orgs.get(org)
        if record is None:
            raise EvidenceError(f"{where}: {org} is not a member (unknown_sender)")
        if not record["active"]:
            at = self.removed_at.get(org)
            since = f" at height {at}" if at is not None else ""
            raise EvidenceError(f"{where}: {org} was removed{since} (sender_removed)")
        if stx.key_id != key_id(record["sign_key"]):
            left = self.retired.get(stx.key_id)
            why = f", rotated out at height {left[0]}" if left else ""
            raise EvidenceError(f"{where}: not signed by {org}'s key of the time{why} (stale_key)")
        try:
            verify(record["sign_key"], stx.signature, TX_DOMAIN, stx.body)
        except InvalidSignatureError:
            raise EvidenceError(f"{where}: {org}'s signature does not verify") from None
        age = t.timestamp - stx.tx.created_at
        if age > self.validity_ms or -age > FUTURE_SKEW_MS:
            raise EvidenceError(f"{where}: signed outside its block's validity window")

    def _rotate(self, t: Placed, where: str) -> None:
        org, p = t.stx.tx.sender, t.stx.tx.payload
        new_key, enc_key, pop = p.get("sign_key"), p.get("enc_key"), p.get("proof")
        current = self.orgs[org]["sign_key"]
        if not isinstance(new_key, bytes) or not _key(new_key) or not _key(enc_key):
            raise EvidenceError(f"{where}: {org}'s rotation lacks a new 32-byte key")
        if new_key == current:
            raise EvidenceError(f"{where}: {org}'s rotation lacks a new 32-byte key")
        try:
            pop_msg = encode([org, new_key, enc_key])
            verify(new_key, pop if isinstance(pop, bytes) else b"", ROTATE_DOMAIN, pop_msg)
        except InvalidSignatureError as exc:
            raise EvidenceError(f"{where}: {org}'s rotation does not verify: {exc}") from None
        self.retired[key_id(current)] = (t.height, t.index)
        self.orgs[org] = {**self.orgs[org], "sign_key": new_key}

    def _admin(self, t: Placed, where: str) -> str:
        me = t.stx.tx.sender
        if "admin" not in self.orgs[me]["roles"]:
            raise EvidenceError(f"{where}: {me} is not an admin (denied)")
        return me

    def _propose(self, t: Placed, where: str) -> None:
        me, p = self._admin(t, where), t.stx.tx.payload
        action, target = p.get("action"), p.get("org")
        try:
            target = check_org_id(target if isinstance(target, str) else "")
        except ValueError:
            raise EvidenceError(f"{where}: the proposal names no organisation id") from None
        value: dict[str, Any] = {"action": action, "org": target, "yes": [me], "no": []}
        if action == "admit":
            roles = p.get("roles")
            if (
                target in self.orgs
                or not isinstance(roles, list)
                or not roles
                or len(roles) > 3
                or len(set(roles)) != len(roles)
                or any(r not in ROLES for r in roles)
                or not _key(p.get("sign_key"))
                or not _key(p.get("enc_key"))
                or not isinstance(p.get("name", ""), str)
                or len(p.get("name", "")) > MAX_NAME
            ):
                raise EvidenceError(f"{where}: the admission of {target} was refused by the chain")
            value.update(roles=list(roles), sign_key=p["sign_key"])
        elif action == "remove":
            if not self.orgs.get(target, {}).get("active") or target == me:
                raise EvidenceError(f"{where}: the removal of {target} was refused by the chain")
        else:
            raise EvidenceError(f"{where}: action must be admit or remove")
        pid = proposal_id(t.stx.id)
        self.open[pid] = value
        self._tally(pid, t)

    def _vote(self, t: Placed, where: str) -> None:
        me, p = self._admin(t, where), t.stx.tx.payload
        pid, yes = p.get("proposal"), p.get("approve", True)
        value = self.open.get(pid) if isinstance(pid, str) else None
        if value is None or not isinstance(pid, str):
            raise EvidenceError(f"{where}: votes on a proposal that is not open in the evidence")
        if not isinstance(yes, bool) or me == value["org"] or me in value["yes"] + value["no"]:
            raise EvidenceError(f"{where}: {me}'s vote was refused by the chain")
        side = "yes" if yes else "no"
        value[side] = [*value[side], me]
        self._tally(pid, t)

    def _tally(self, pid: str, t: Placed) -> None:
        value = self.open[pid]
        target = value["org"]
        admins = {o for o, v in self.orgs.items() if v["active"] and "admin" in v["roles"]} - {
            target
        }
        need = self.admission_votes or len(admins) // 2 + 1
        yes, no = len(admins & set(value["yes"])), len(admins & set(value["no"]))
        if yes >= need:
            del self.open[pid]
            if value["action"] == "admit":
                self.orgs[target] = {
                    "sign_key": value["sign_key"],
                    "roles": value["roles"],
                    "active": True,
                }
            else:
                self.orgs[target] = {**self.orgs[target], "active": False}
                self.removed_at[target] = t.height
        elif len(admins) - no < need:
            del self.open[pid]


def refuse_removed_signers(note: str, members: Members) -> None:
    """Raise `EvidenceError` if a member removed by vote cosigned `note`: the roster
    would only call its key unknown; this says why it no longer counts."""
    try:
        signatures = parse_note(note).signatures
    except EncodingError:
        return  # the checkpoint's own check gives the reason
    for sig in signatures:
        org = sig.name.split("/", 1)[0]
        if org in members.orgs and not members.orgs[org]["active"]:
            at = members.removed_at.get(org)
            raise EvidenceError(
                f"the checkpoint is cosigned by {org}, removed from the consortium by vote"
                + (f" at height {at}" if at is not None else "")
                + ": its cosignature no longer counts"
            )


def _key(value: Any) -> bool:
    return isinstance(value, bytes) and len(value) == 32


def members_from_genesis(payload: Any) -> Members:
    """The founders (roles, keys) and governance of a genesis payload."""
    try:
        orgs = {
            o["id"]: {"sign_key": o["sign_key"], "roles": list(o["roles"]), "active": True}
            for o in payload["organisations"]
        }
        governance = payload["governance"] or {}
    except (KeyError, TypeError):
        raise EvidenceError("genesis payload lacks its organisations or governance") from None
    if not all(isinstance(o, str) and _key(v["sign_key"]) for o, v in orgs.items()):
        raise EvidenceError("genesis organisations need a text id and a 32-byte signing key each")
    if not isinstance(governance, Mapping):
        raise EvidenceError("genesis governance must be a map")
    votes = governance.get("admission_votes", 0)
    validity = governance.get("tx_validity_ms", DEFAULT_VALIDITY_MS)
    for name, v in (("admission_votes", votes), ("tx_validity_ms", validity)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise EvidenceError(f"genesis governance {name} must be a count")
    return Members(orgs, votes, validity)
