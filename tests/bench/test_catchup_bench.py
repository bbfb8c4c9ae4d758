"""The catch-up benchmark: a fresh node applies a whole backlog, judged by the ceiling."""

from __future__ import annotations

from sharechain.bench import catchup
from sharechain.bench.ledger import cores


def test_a_small_backlog_is_committed_whole_locally_and_from_a_peer() -> None:
    figures = catchup.run(transactions=1_200, block_size=300)
    assert figures["catchup_transactions"] == 1_200
    assert figures["catchup_block_size"] == 300
    assert figures["catchup_tx_per_s"] > 0
    assert figures["catchup_cpu_us_per_tx"] > 0
    # The share is the rate over (verifications a second per core x cores): a node
    # that verifies every signature cannot pass 1, and it did commit (run raises
    # where the node's head differs from the orderer's).
    assert 0 < figures["catchup_share_of_ceiling"] < 1
    rate = figures["catchup_ed25519_verify_per_s_per_core"]
    share = figures["catchup_tx_per_s"] / (rate * cores())
    assert abs(figures["catchup_share_of_ceiling"] - share) < 0.002

    # Then over HTTP from a peer, through a slow link: run raises unless the node
    # reached the peer's head that way too.
    assert figures["catchup_link_delay_ms"] == catchup.LINK_DELAY_MS
    link = figures["catchup_link_tx_per_s"]
    assert link > 0
    assert abs(figures["catchup_link_ratio"] - link / figures["catchup_tx_per_s"]) < 0.05
