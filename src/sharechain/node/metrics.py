"""Prometheus metrics of one node, in a registry of its own.

A registry per node (not the process-global default) so that several nodes
can live in one test process without clashing.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["NodeMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class NodeMetrics:
    """The metrics a node exports at `/metrics`."""

    registry: CollectorRegistry
    """The node's own registry."""
    height: Gauge
    """Height of the last committed block."""
    block_commit_seconds: Histogram
    """Time to validate (when received) and commit one block."""
    tx_latency_seconds: Histogram
    """Submit-to-commit latency of transactions submitted to this node."""
    transactions: Counter
    """Committed transactions by validation code."""
    blocks_appended: Counter
    """Blocks this node appended to the ordering service, by outcome (won, lost)."""
    peer_height: Gauge
    """Each peer's height as last reported."""
    attestation_conflicts: Gauge
    """Number of conflicting attestations seen (see `attestation_suspect` and `ready`)."""
    attestation_suspect: Gauge
    """1 for a peer whose attestations disagree with ours without a quorum (ignored)."""
    ready: Gauge
    """1 when the node serves its API, 0 when it refuses (tampered store, conflict)."""
    catch_up_blocks_left: Gauge
    """Blocks left to commit while the node catches up (0 once it is current)."""
    catch_up_eta_seconds: Gauge
    """Seconds left at the rate so far while it catches up (0 once it is current)."""
    leader_doubts: Counter
    """Times this node stopped forwarding to a leader's term that failed its batches."""
    unvouched_blocks: Counter
    """Blocks refused because they are not the ones its peers vouch for (`node.vouching`)."""
    member_refusals: Counter
    """Signed requests refused (429) because their organisation had its share under way."""
    member_blocks_judged: Counter
    """Members' blocks from the log this node refused, by orderer and outcome (voided,
    halted): `node.arrivals`."""
    judging_seconds: Histogram
    """Seconds from refusing a member's block to voiding it or halting on it."""

    @classmethod
    def create(cls) -> NodeMetrics:
        r = CollectorRegistry(auto_describe=True)
        return cls(
            r,
            Gauge("sharechain_block_height", "Height of the last committed block", registry=r),
            Histogram(
                "sharechain_block_commit_seconds",
                "Time to validate and commit one block",
                buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            Histogram(
                "sharechain_tx_commit_latency_seconds",
                "Submit-to-commit latency of transactions submitted to this node",
                buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            Counter(
                "sharechain_transactions",
                "Committed transactions by validation code",
                ["code"],
                registry=r,
            ),
            Counter(
                "sharechain_blocks_appended",
                "Blocks offered to the ordering service by this node, by outcome",
                ["outcome"],
                registry=r,
            ),
            Gauge("sharechain_peer_height", "Peer heights as last reported", ["peer"], registry=r),
            Gauge(
                "sharechain_attestation_conflicts",
                "Conflicting attestations seen",
                registry=r,
            ),
            Gauge(
                "sharechain_attestation_suspect",
                "1 for a peer whose attestations disagree with a quorum (they are ignored)",
                ["peer"],
                registry=r,
            ),
            Gauge("sharechain_ready", "1 when the node serves its API", registry=r),
            Gauge(
                "sharechain_catch_up_blocks_left",
                "Blocks left to commit while the node catches up (0 once current)",
                registry=r,
            ),
            Gauge(
                "sharechain_catch_up_eta_seconds",
                "Seconds left at the rate so far while the node catches up (0 once current)",
                registry=r,
            ),
            Counter(
                "sharechain_leader_doubts",
                "Times this node appended around a leader that failed or falsely answered "
                "a forwarded batch, by leader",
                ["leader"],
                registry=r,
            ),
            Counter(
                "sharechain_unvouched_blocks",
                "Blocks refused while catching up because they are not the chain the peers' "
                "attestations vouch for, by source (etcd, peer)",
                ["source"],
                registry=r,
            ),
            Counter(
                "sharechain_member_refusals",
                "Signed requests refused (429) because their organisation had its share of "
                "requests under way on this node (Limits.requests_per_member), by organisation",
                ["org"],
                registry=r,
            ),
            Counter(
                "sharechain_member_blocks_judged",
                "Members' blocks from the ordering log this node refused (content or time), "
                "by orderer and outcome: voided, or halted (most peers committed it)",
                ["orderer", "outcome"],
                registry=r,
            ),
            Histogram(
                "sharechain_member_block_judging_seconds",
                "Seconds from refusing a member's block to voiding it or halting on it "
                "(waiting for the peers' word)",
                buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120),
                registry=r,
            ),
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
