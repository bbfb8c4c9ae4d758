"""Quarantine: deciding who is wrong when attestations disagree.

Every node signs `(height, block hash, state root)` after each commit and
compares its peers' attestations with its own (`ledger/attestations.py`).
A disagreement says that *somebody* is wrong, not who. One node cannot tell
a lying (or broken) peer from its own diverged state by looking at a single
attestation, but it can count: when more than half of the consortium's
nodes attest the same block and state at a height, and that is not what
this node holds, the odd one out is this node. It then quarantines itself:
it stops committing and serving writes, reports why in `/v1/ready`,
`/v1/status` and the `sharechain_ready` metric, and tells the operator to
run `sharechain node repair`. A peer whose attestation differs from ours
without such a quorum behind it is a *suspect*: it is reported (status,
the `sharechain_attestation_suspect` metric, a log line at most once a
minute per peer), its attestations change nothing here, and the honest
nodes go on committing. So one liar cannot halt the honest majority, and
a node with a tampered store cannot keep serving it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sharechain.ledger.attestations import Conflict

__all__ = ["AttestationJudge", "Verdict", "judge"]

log = logging.getLogger("sharechain.node.quarantine")  # the node's log, its name kept

LOG_EVERY = 60.0
"""Seconds between two log lines about the same suspect peer."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """Who is wrong, given every conflicting attestation seen so far."""

    against_us: Conflict | None
    """One conflict of a quorum that attests something else than we hold (we are wrong)."""
    quorum: tuple[str, ...]
    """The peers of that quorum (empty when there is none)."""
    suspects: tuple[str, ...]
    """Peers whose attestations disagree with us without a quorum behind them."""


def judge(conflicts: Sequence[Conflict], nodes: int) -> Verdict:
    """Decide from `conflicts` among `nodes` nodes (this one included) who is wrong.

    A quorum is more than half of `nodes` peers that attest the same block
    hash and state root at the same height, different from ours.
    """
    claims: dict[tuple[int, bytes, bytes], dict[str, Conflict]] = {}
    for c in conflicts:
        claim = (c.height, c.theirs.block_hash, c.theirs.state_root)
        claims.setdefault(claim, {})[c.peer] = c
    for claim in sorted(claims):
        peers = claims[claim]
        if 2 * len(peers) > nodes:
            first = peers[min(peers)]
            return Verdict(first, tuple(sorted(peers)), ())
    return Verdict(None, (), tuple(sorted({c.peer for c in conflicts})))


class AttestationJudge:
    """Applies verdicts to a node: quarantine itself, or report suspects. Thread-safe."""

    def __init__(
        self,
        org: str,
        nodes: int,
        quarantine: Callable[[str], None],
        report: Callable[[str, bool], None],
        *,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.org = org
        self.nodes = nodes
        """How many nodes attest, this one included (the quorum is more than half)."""
        self._quarantine = quarantine
        self._report = report
        self._now = now
        self._lock = threading.Lock()
        self._logged: dict[str, float] = {}
        self.verdict = Verdict(None, (), ())

    def review(self, conflicts: Sequence[Conflict]) -> Verdict:
        """Judge every conflict seen so far and act on the verdict."""
        verdict = judge(conflicts, self.nodes)
        with self._lock:
            self.verdict = verdict
            now = self._now()
            noisy = [
                peer
                for peer in verdict.suspects
                if now - self._logged.get(peer, -LOG_EVERY) >= LOG_EVERY
            ]
            for peer in noisy:
                self._logged[peer] = now
        for peer in verdict.suspects:
            self._report(peer, True)
        for peer in noisy:
            detail = next(c.describe() for c in reversed(conflicts) if c.peer == peer)
            log.warning(
                "ALERT %s: %s; its attestations are ignored (no quorum of %d nodes agrees "
                "with it); check that node",
                self.org,
                detail,
                self.nodes,
            )
        if verdict.against_us is not None:
            for peer in verdict.quorum:
                self._report(peer, False)
            c = verdict.against_us
            self._quarantine(
                f"quarantined: {len(verdict.quorum)} of {self.nodes} nodes "
                f"({', '.join(verdict.quorum)}) attest block {c.theirs.block_hash.hex()[:16]} "
                f"with state root {c.theirs.state_root.hex()[:16]} at height {c.height}, this "
                f"node holds {c.ours_hash.hex()[:16]} / {c.ours_state.hex()[:16]}: its store "
                "diverged; stop it, run `sharechain node repair` and start it again to resync"
            )
        return verdict
