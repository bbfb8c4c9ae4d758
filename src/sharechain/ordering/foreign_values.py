"""Foreign values: what sits in the ordering keyspace but is not a block of this chain.

etcd only orders bytes. Whoever holds an etcd client certificate (a member's
node, an operator) can put anything at `blocks/<h>`: junk, a block for
another height, or a well-formed block signed by an organisation that is
not an active member. The compare-and-set append then sees the height as
taken. Halting on such a value would let one etcd client stop the
consortium, so every node instead refuses it with a logged reason and
*voids* the slot: it deletes that exact value (a compare on the value, so a
block appended meanwhile is never touched) and reads the height again; the
leader then appends its block there.

Only checks that every honest node answers alike are used here: decoding,
the height, the link to the previous block, the orderer's signature by an
active member, and the body against the signed header (its `tx_root` and
`results_root`: the signature covers the header alone, so a body swapped
under a genuine header is nobody's block). A value that passes them is a
member's signed block; if it
fails later checks (re-execution, its time against the node's clock),
`node.arrivals` voids it too unless most peers committed that height, and
keeps it as evidence of its orderer's fault (threats 41 and 43 in
docs/security.md).

The checks read the node's copy of the chain through `ChainCopy` (its store
and ledger); the node that follows the log passes itself. The alarms are
logged under `sharechain.node`, with the node's other alerts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sharechain.crypto.signing import verify
from sharechain.errors import EncodingError, InvalidSignatureError
from sharechain.ledger.blocks import BLOCK_DOMAIN, body_matches, decode_block
from sharechain.ledger.chain import Ledger
from sharechain.ledger.store import Store

__all__ = ["ChainCopy", "Foreign", "ForeignAlarm", "foreign_reason"]

log = logging.getLogger("sharechain.node")

LOG_EVERY = 10.0
"""Seconds between two ALERT lines about foreign values (each one is counted)."""


class ChainCopy(Protocol):
    """The node's copy of the chain, as far as the checks read it."""

    @property
    def store(self) -> Store:
        """Its block store (the previous block's hash)."""

    @property
    def ledger(self) -> Ledger:
        """Its ledger (the orderer's key and membership at the head)."""


@dataclass(frozen=True, slots=True)
class Foreign:
    """A value refused as not a block of this chain."""

    height: int
    """The height (etcd key) it sits at."""
    data: bytes
    """Its exact bytes (voiding compares them)."""
    reason: str
    """Why it was refused."""


def foreign_reason(node: ChainCopy, height: int, data: bytes, *, links: bool = True) -> str | None:
    """Why `data` at `height` cannot be a block of this chain; None if it may be one.

    The caller holds the node's commit lock and has committed `height - 1`. Without
    `links`, only whether it is a block for `height` that an active member signed.
    """
    try:
        block = decode_block(data)
    except EncodingError as exc:
        return f"not a block ({exc})"
    h = block.header
    if h.height != height:
        return f"a block for height {h.height}, not {height}"
    previous = node.store.block_meta(height - 1) if links else None
    if previous is not None and h.prev_hash != previous.hash:
        return f"a block that does not link to block {height - 1}"
    orderer = node.ledger.organisation(h.orderer)
    if orderer is None or not orderer.active:
        return f"a block signed by {h.orderer!r}, not an active member"
    try:
        verify(orderer.sign_key, block.signature, BLOCK_DOMAIN, h.encoded())
    except InvalidSignatureError:
        return f"a block whose signature is not {h.orderer}'s"
    if not body_matches(block):
        return f"a block whose transactions or results are not those {h.orderer} signed"
    return None


class ForeignAlarm:
    """Counts and logs (rate-limited) the foreign values a node refused."""

    def __init__(self, org: str, *, now: Callable[[], float] = time.monotonic) -> None:
        self.org = org
        self._now = now
        self._last = -LOG_EVERY
        self.refused = 0
        """How many foreign values this node refused since it started."""
        self.latest = ""
        """The last one's height and reason ("" if none)."""

    def raise_alarm(self, foreign: Foreign, voided: bool) -> None:
        height, reason = foreign.height, foreign.reason
        self.refused += 1
        what = "voided it" if voided else "it was gone or replaced already"
        self.latest = f"height {height}: {reason}"
        now = self._now()
        if now - self._last >= LOG_EVERY:
            self._last = now
            log.error(
                "ALERT %s refused a foreign value in the ordering keyspace at height %d: %s; "
                "%s and reads the height again (%d refused so far). Someone with an etcd "
                "client certificate wrote it: check etcd's log for the client",
                self.org,
                height,
                reason,
                what,
                self.refused,
            )
