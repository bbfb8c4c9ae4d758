"""The history checker on synthetic histories: a correct one passes, each violation is named."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from sharechain.faults.history import (
    ChainBlock,
    CommittedTx,
    HistoryViolationError,
    NodeChain,
    Operation,
    check_history,
)


def _id(n: int) -> bytes:
    return hashlib.sha256(b"tx%d" % n).digest()


def _block(height: int, *txs: CommittedTx) -> ChainBlock:
    digest = hashlib.sha256(repr((height, txs)).encode()).digest()
    return ChainBlock(height, digest, hashlib.sha256(digest).digest(), txs)


def _history() -> tuple[list[Operation], list[ChainBlock]]:
    """Three records, a grant used, revoked, then a use refused as revoked."""
    blocks = [
        _block(0),
        _block(1, CommittedTx(_id(1), "valid", "notary.record"), CommittedTx(_id(2), "valid")),
        _block(
            2,
            CommittedTx(_id(3), "valid", "grant.read", "g-1"),
            CommittedTx(_id(4), "valid", "grant.revoke", "g-1"),
        ),
        _block(
            3,
            CommittedTx(_id(5), "revoked", "grant.read", "g-1"),
            CommittedTx(_id(1), "replay", "notary.record"),  # a client's retry, refused
        ),
    ]
    ops = [
        Operation(_id(1), "a", True, "valid", 1),
        Operation(_id(2), "b", False),  # timed out, committed anyway: allowed
        Operation(_id(3), "a", True, "valid", 2),
        Operation(_id(4), "b", True, "valid", 2),
        Operation(_id(5), "a", True, "revoked", 3),
        Operation(_id(6), "c", False),  # never committed: allowed, it was not acknowledged
    ]
    return ops, blocks


def _chains(blocks: list[ChainBlock], n: int = 3) -> list[NodeChain]:
    return [NodeChain(f"org-{i}", tuple(blocks)) for i in range(n)]


def _violations(ops: list[Operation], chains: list[NodeChain], **kw: bool) -> set[str]:
    with pytest.raises(HistoryViolationError) as caught:
        check_history(ops, chains, **kw)
    assert str(len(caught.value.violations)) in str(caught.value)
    return {v.property for v in caught.value.violations}


def test_a_correct_history_passes() -> None:
    ops, blocks = _history()
    report = check_history(ops, _chains(blocks))
    assert (report.operations, report.acknowledged, report.committed) == (6, 4, 5)
    assert (report.height, report.nodes, report.revoked_grants) == (3, 3, 1)


def test_an_acknowledged_transaction_missing_from_the_chain() -> None:
    ops, blocks = _history()
    ops.append(Operation(_id(9), "a", True, "valid", 3))
    assert _violations(ops, _chains(blocks)) == {"acknowledged_once"}


def test_an_acknowledged_transaction_applied_twice() -> None:
    ops, blocks = _history()
    blocks.append(_block(4, CommittedTx(_id(1), "valid", "notary.record")))
    assert _violations(ops, _chains(blocks)) == {"acknowledged_once"}


def test_an_acknowledgement_that_lied_about_height_or_code() -> None:
    ops, blocks = _history()
    ops[0] = replace(ops[0], height=2)
    assert _violations(ops, _chains(blocks)) == {"acknowledged_once"}
    ops, blocks = _history()
    ops[4] = replace(ops[4], code="valid")
    assert _violations(ops, _chains(blocks)) == {"acknowledged_once"}


def test_an_unacknowledged_transaction_applied_twice() -> None:
    ops, blocks = _history()
    blocks.append(_block(4, CommittedTx(_id(2), "denied", "notary.record")))
    assert _violations(ops, _chains(blocks)) == {"at_most_once"}


def test_nodes_that_disagree_on_a_hash_or_a_state_root() -> None:
    ops, blocks = _history()
    chains = _chains(blocks)
    forked = list(blocks)
    forked[2] = replace(forked[2], hash=bytes(32))
    chains[1] = NodeChain("org-1", tuple(forked))
    assert _violations(ops, chains) == {"nodes_agree"}
    diverged = list(blocks)
    diverged[3] = replace(diverged[3], state_root=bytes(32))
    chains[1] = NodeChain("org-1", tuple(diverged))
    assert _violations(ops, chains) == {"nodes_agree"}


def test_a_node_left_behind() -> None:
    ops, blocks = _history()
    chains = _chains(blocks)
    chains[2] = NodeChain("org-2", tuple(blocks[:3]))
    assert _violations(ops, chains) == {"nodes_agree"}
    check_history(ops, chains, same_head=False)  # a prefix agrees: fine mid-run


def test_a_grant_used_after_its_revocation() -> None:
    ops, blocks = _history()
    blocks[3] = _block(3, CommittedTx(_id(5), "valid", "grant.key-release", "g-1"))
    ops[4] = replace(ops[4], code="valid")
    assert _violations(ops, _chains(blocks)) == {"no_use_after_revoke"}


def test_every_violation_is_listed_at_once() -> None:
    ops, blocks = _history()
    blocks[3] = _block(3, CommittedTx(_id(5), "valid", "grant.read", "g-1"))
    ops.append(Operation(_id(9), "a", True, "valid", 3))
    chains = _chains(blocks)
    chains[0] = NodeChain("org-0", tuple(blocks[:2]))
    assert _violations(ops, chains) == {
        "acknowledged_once",
        "nodes_agree",
        "no_use_after_revoke",
    }


def test_no_chain_at_all() -> None:
    assert _violations([], []) == {"nodes_agree"}
