"""Attestations: each peer's signed word on what it committed.

After committing block `h` a node signs `(height, block hash, state root)`
with its organisation's key and serves its recent attestations to the other
nodes. Every node compares the attestations it collects with its own store:
an attestation that names a different block hash or state root at a height
both have committed means the chain forked or a peer's state diverged. A
node outvoted by a quorum of its peers quarantines itself and names the
repair; a lone peer that disagrees is reported and its attestations ignored
(`sharechain.ledger.quarantine`). etcd tolerates crashes, not lies, and this
is how a lie (or a bug) is caught.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from sharechain.codec import encode
from sharechain.crypto.signing import SigningKey, verify
from sharechain.errors import InvalidSignatureError
from sharechain.ledger.hex_records import from_hex_json, to_hex_json
from sharechain.ledger.store import Head

__all__ = [
    "ATTESTATION_DOMAIN",
    "Attestation",
    "AttestationBook",
    "Conflict",
    "PeerView",
    "sign_attestation",
    "verify_attestation",
]

ATTESTATION_DOMAIN = b"sharechain/attestation/v1\x00"
_KEEP = 64


@dataclass(frozen=True, slots=True)
class Attestation:
    """An organisation's signed statement that it committed a block with a given state."""

    org: str
    """The attesting organisation."""
    height: int
    """Height of the committed block."""
    block_hash: bytes
    """Its header hash."""
    state_root: bytes
    """The running state root after it."""
    signature: bytes
    """Ed25519 signature of the org over `ATTESTATION_DOMAIN || CBOR(statement)`."""

    def statement(self) -> bytes:
        return _statement(self.org, self.height, self.block_hash, self.state_root)

    def to_json(self) -> dict[str, Any]:
        return to_hex_json(self)

    @classmethod
    def from_json(cls, value: Any) -> Attestation:
        return from_hex_json(cls, value, "attestation", ("block_hash", "state_root"))


def _statement(org: str, height: int, block_hash: bytes, state_root: bytes) -> bytes:
    return encode({"org": org, "height": height, "block": block_hash, "state": state_root})


def sign_attestation(org: str, key: SigningKey, head: Head) -> Attestation:
    """Attest to `head` as `org`."""
    sig = key.sign(ATTESTATION_DOMAIN, _statement(org, head.height, head.hash, head.state_root))
    return Attestation(org, head.height, head.hash, head.state_root, sig)


def verify_attestation(att: Attestation, public_key: bytes) -> None:
    """Raise `InvalidSignatureError` unless `public_key` signed `att`."""
    verify(public_key, att.signature, ATTESTATION_DOMAIN, att.statement())


@dataclass(frozen=True, slots=True)
class Conflict:
    """A peer's attestation that disagrees with this node's chain."""

    peer: str
    """The organisation that attested."""
    height: int
    """Height both committed."""
    theirs: Attestation
    """What the peer signed."""
    ours_hash: bytes
    """Our block hash at that height."""
    ours_state: bytes
    """Our state root at that height."""

    def describe(self) -> str:
        what = "block hash" if self.theirs.block_hash != self.ours_hash else "state root"
        return (
            f"{self.peer} attests a different {what} at height {self.height} "
            f"({self.theirs.block_hash.hex()[:16]} / {self.theirs.state_root.hex()[:16]} vs ours "
            f"{self.ours_hash.hex()[:16]} / {self.ours_state.hex()[:16]})"
        )


@dataclass(frozen=True, slots=True)
class PeerView:
    """What this node knows of one peer's attestations."""

    org: str
    """The peer organisation."""
    height: int
    """Highest height it attested (-1 if none seen)."""
    checked: int
    """Highest height of its attestations we compared with our own chain (-1 if none)."""
    agrees: bool
    """False once any of its attestations conflicted with ours."""
    latest: Attestation | None = None
    """Its highest attestation received (signature checked), compared or not yet."""


class AttestationBook:
    """Own recent attestations, peers' latest ones, and conflicts. Thread-safe."""

    def __init__(self, org: str, key: SigningKey, meta: Callable[[int], Head | None]) -> None:
        self.org = org
        self._key = key
        self._meta = meta
        self._lock = threading.Lock()
        self._own: list[Attestation] = []
        self._pending: dict[str, dict[int, Attestation]] = {}
        self._received: dict[str, dict[int, Attestation]] = {}
        """Each peer's recent attestations whose signature checked: a peer serves the same
        ones poll after poll, and checking each again cost more than the polling itself."""
        self._peers: dict[str, PeerView] = {}
        self.conflicts: list[Conflict] = []

    def rekey(self, key: SigningKey) -> None:
        """Sign this node's next attestations with `key` (its organisation rotated keys)."""
        self._key = key

    def attest(self, head: Head) -> Attestation:
        att = sign_attestation(self.org, self._key, head)
        with self._lock:
            self._own.append(att)
            del self._own[:-_KEEP]
        return att

    def own(self, since: int = 0) -> list[Attestation]:
        with self._lock:
            return [a for a in self._own if a.height >= since]

    def receive(self, att: Attestation, public_key: bytes | None) -> Conflict | None:
        """Check a peer's attestation; returns a new conflict if it disagrees with us.

        Attestations with a bad signature or from an unknown organisation are
        ignored (they prove nothing); ones above our height wait until we get there.
        """
        if att.org == self.org or public_key is None:
            return None
        with self._lock:
            if self._received.get(att.org, {}).get(att.height) == att:
                return None  # seen, checked and filed already
        try:
            verify_attestation(att, public_key)
        except InvalidSignatureError:
            return None
        with self._lock:
            received = self._received.setdefault(att.org, {})
            received[att.height] = att
            if len(received) > 2 * _KEEP:
                for h in sorted(received)[:-_KEEP]:
                    del received[h]
            view = self._peers.get(att.org, PeerView(att.org, -1, -1, True))
            latest = att if view.latest is None or att.height >= view.latest.height else view.latest
            view = PeerView(att.org, latest.height, view.checked, view.agrees, latest)
            self._peers[att.org] = view
            pending = self._pending.setdefault(att.org, {})
            pending[att.height] = att
            if len(pending) > _KEEP:
                for h in sorted(pending)[:-_KEEP]:
                    del pending[h]
        return self.recheck(att.org)

    def recheck(self, org: str | None = None) -> Conflict | None:
        """Compare pending attestations at heights we have now committed."""
        found: Conflict | None = None
        with self._lock:
            orgs = [org] if org is not None else list(self._pending)
            for peer in orgs:
                pending = self._pending.get(peer, {})
                for h in sorted(pending):
                    ours = self._meta(h)
                    if ours is None:
                        break
                    att = pending.pop(h)
                    view = self._peers[peer]
                    agrees = att.block_hash == ours.hash and att.state_root == ours.state_root
                    self._peers[peer] = PeerView(
                        peer, view.height, max(view.checked, h), view.agrees and agrees, view.latest
                    )
                    if not agrees:
                        found = Conflict(peer, h, att, ours.hash, ours.state_root)
                        self.conflicts.append(found)
        return found

    def peers(self) -> list[PeerView]:
        with self._lock:
            return sorted(self._peers.values(), key=lambda p: p.org)

    def attested(self, orgs: Collection[str]) -> dict[str, dict[int, bytes]]:
        """The block hashes each of `orgs` signed at the heights of its recent attestations
        (signatures checked)."""
        with self._lock:
            return {
                org: {h: a.block_hash for h, a in self._received.get(org, {}).items()}
                for org in orgs
            }
