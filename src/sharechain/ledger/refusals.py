"""Refusals: each node's signed word that its validation fails a member's block.

A member's signed block from the ordering log that fails a node's validation
(threat 41), or whose time is too far from the node's clock (threat 43), is
voided unless most peers besides its orderer committed it: then the node's
own validation is the odd one, and it halts. A peer that has not said yet
was counted as one that did not commit, so a peer late to report (a loaded
machine, a poll lost) could make a node with a wrong clock void an honest
block instead of halting.

So a node that refuses a block says so: it signs `(org, height, block hash)`
and serves its recent refusals in its status, beside its attestations. A
node judging a block then counts three kinds of peer: those that committed
it (attested that height or beyond), those that refused that very block, and
those that have said neither yet, which it waits for (`node.arrivals`). A
refusal is only ever added, never withdrawn: an honest node that refuses a
block never commits it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from sharechain.codec import encode
from sharechain.crypto.signing import SigningKey, verify
from sharechain.errors import EncodingError, InvalidSignatureError
from sharechain.ledger.hex_records import from_hex_json, to_hex_json

__all__ = ["KEEP", "REFUSAL_DOMAIN", "Refusal", "RefusalBook", "sign_refusal", "verify_refusal"]

REFUSAL_DOMAIN = b"sharechain/refusal/v1\x00"
KEEP = 16
"""Refusals a node serves (its latest), and keeps of each peer's."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """An organisation's signed statement that its node refuses a block."""

    org: str
    """The refusing organisation."""
    height: int
    """Height of the refused block."""
    block_hash: bytes
    """Its header hash."""
    signature: bytes
    """Ed25519 signature of the org over `REFUSAL_DOMAIN || CBOR(statement)`."""

    def statement(self) -> bytes:
        return _statement(self.org, self.height, self.block_hash)

    def to_json(self) -> dict[str, Any]:
        return to_hex_json(self)

    @classmethod
    def from_json(cls, value: Any) -> Refusal:
        return from_hex_json(cls, value, "refusal", ("block_hash",))


def _statement(org: str, height: int, block_hash: bytes) -> bytes:
    return encode({"org": org, "height": height, "refused": block_hash})


def sign_refusal(org: str, key: SigningKey, height: int, block_hash: bytes) -> Refusal:
    """Refuse the block `block_hash` at `height` as `org`."""
    sig = key.sign(REFUSAL_DOMAIN, _statement(org, height, block_hash))
    return Refusal(org, height, block_hash, sig)


def verify_refusal(refusal: Refusal, public_key: bytes) -> None:
    """Raise `InvalidSignatureError` unless `public_key` signed `refusal`."""
    verify(public_key, refusal.signature, REFUSAL_DOMAIN, refusal.statement())


class RefusalBook:
    """This node's latest refusals and its peers'. Thread-safe."""

    def __init__(self, org: str, key: Callable[[], SigningKey]) -> None:
        self.org = org
        self._key = key
        self._lock = threading.Lock()
        self._own: list[Refusal] = []
        self._received: dict[str, dict[tuple[int, bytes], Refusal]] = {}

    def refuse(self, height: int, block_hash: bytes) -> Refusal:
        """Sign and serve this node's refusal of `block_hash` at `height` (once)."""
        with self._lock:
            for held in self._own:
                if (held.height, held.block_hash) == (height, block_hash):
                    return held
        refusal = sign_refusal(self.org, self._key(), height, block_hash)
        with self._lock:
            self._own.append(refusal)
            del self._own[:-KEEP]
        return refusal

    def own(self) -> list[Refusal]:
        with self._lock:
            return list(self._own)

    def receive(self, org: str, values: object, public_key: bytes | None) -> int:
        """File `org`'s refusals as its status served them (at most `KEEP` read);
        how many new ones checked. Another organisation's, a malformed one and one
        whose signature does not check are ignored: they prove nothing."""
        if org == self.org or public_key is None or not isinstance(values, list):
            return 0
        filed = 0
        for value in values[:KEEP]:
            try:
                refusal = Refusal.from_json(value)
            except EncodingError:
                continue
            key = (refusal.height, refusal.block_hash)
            if refusal.org != org:
                continue  # a node speaks for its own organisation only
            with self._lock:
                if self._received.get(org, {}).get(key) == refusal:
                    continue
            try:
                verify_refusal(refusal, public_key)
            except InvalidSignatureError:
                continue
            with self._lock:
                held = self._received.setdefault(org, {})
                held[key] = refusal
                for old in sorted(held)[:-KEEP]:
                    del held[old]
            filed += 1
        return filed

    def refusing(self, orgs: Collection[str], height: int, block_hash: bytes) -> list[str]:
        """Which of `orgs` signed a refusal of `block_hash` at `height`, sorted."""
        with self._lock:
            return sorted(
                org for org in orgs if (height, block_hash) in self._received.get(org, {})
            )
