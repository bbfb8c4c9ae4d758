"""The history checker: what a run under faults must never have done.

During a soak run every transaction a client submits is logged as an
`Operation`: which node it went to, and whether an acknowledgement (a
receipt with a code and a height) came back, or the call failed or timed
out. Afterwards each node's chain is read (`chain_from_store`) and
`check_history` proves four properties:

- ``acknowledged_once``: every acknowledged transaction is in the chain
  exactly once with a state-changing inclusion, at the height and with the
  code its receipt gave (an acknowledgement is a promise);
- ``at_most_once``: no transaction, acknowledged or not, is included twice
  other than as a ``replay`` (a retried submission must not apply twice);
- ``nodes_agree``: all nodes have the same block hash and state root at every
  height they share, and (after the run, once caught up) the same head;
- ``no_use_after_revoke``: no key release or read under a grant is valid
  after the grant's revocation was committed.

A fifth, ``no_plaintext_at_non_grantee``, is judged from files, not chains:
`sharechain.faults.dataflow.plaintext_found` searches every file of the run
for the plaintexts the soak published, and `schedule.run_soak` reports each
file outside the owner's source and the grantee's copy as a violation, and
each file holding a published data key in the clear (`dataflow.key_found`).

A violation raises `HistoryViolationError` listing every one found, so a
failing run says everything that went wrong at once; a clean run returns a
`HistoryReport` with the counts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from sharechain.contracts.grants import KEY_RELEASE, READ, REVOKE
from sharechain.errors import EncodingError, SharechainError
from sharechain.ledger.blocks import decode_block
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import decode_transaction
from sharechain.ledger.validation import REPLAY, VALID

__all__ = [
    "PROPERTIES",
    "ChainBlock",
    "CommittedTx",
    "HistoryReport",
    "HistoryViolationError",
    "NodeChain",
    "Operation",
    "Violation",
    "chain_from_store",
    "check_history",
]

PROPERTIES: Final = (
    "acknowledged_once",
    "at_most_once",
    "nodes_agree",
    "no_use_after_revoke",
    "no_plaintext_at_non_grantee",
    "foreign_keys_swept",
)
GRANT_USES: Final = frozenset({KEY_RELEASE, READ})
"""Transaction types that use a grant (a revoked grant must refuse them)."""


@dataclass(frozen=True, slots=True)
class Operation:
    """One transaction a client submitted, and what it was told."""

    tx_id: bytes
    """The transaction id."""
    node: str
    """The organisation whose node it was submitted to."""
    acknowledged: bool
    """True when a receipt came back (False: an error or a timeout, outcome unknown)."""
    code: str = ""
    """The receipt's validation code (acknowledged only)."""
    height: int = -1
    """The receipt's block height (acknowledged only)."""


@dataclass(frozen=True, slots=True)
class CommittedTx:
    """One transaction as a block holds it."""

    tx_id: bytes
    """Its id."""
    code: str
    """Its validation code in the block."""
    type: str = ""
    """Its type (empty when it does not decode)."""
    grant: str | None = None
    """The grant its payload names, if any."""


@dataclass(frozen=True, slots=True)
class ChainBlock:
    """One block of a node's chain, as the checker needs it."""

    height: int
    """Its height."""
    hash: bytes
    """Its header hash."""
    state_root: bytes
    """The state root after it."""
    txs: tuple[CommittedTx, ...]
    """Its transactions in block order."""


@dataclass(frozen=True, slots=True)
class NodeChain:
    """One node's chain at the end of a run."""

    org: str
    """The node's organisation."""
    blocks: tuple[ChainBlock, ...]
    """Its blocks from genesis, in height order."""


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken property."""

    property: str
    """One of `PROPERTIES`."""
    detail: str
    """What was seen, with ids and heights."""


@dataclass(frozen=True, slots=True)
class HistoryReport:
    """A history that kept every property."""

    operations: int
    """Operations the clients logged."""
    acknowledged: int
    """Of which acknowledged."""
    committed: int
    """Distinct transactions in the chain."""
    height: int
    """The nodes' common head height."""
    nodes: int
    """Chains compared."""
    revoked_grants: int
    """Grants revoked in the chain (the revocation property had something to check)."""


class HistoryViolationError(SharechainError):
    """A run broke at least one property; `violations` lists every one found."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        shown = "; ".join(f"{v.property}: {v.detail}" for v in violations[:10])
        more = f" (and {len(violations) - 10} more)" if len(violations) > 10 else ""
        super().__init__(f"{len(violations)} history violation(s): {shown}{more}")
        self.violations = tuple(violations)


def chain_from_store(org: str, store: Store) -> NodeChain:
    """Read a node's chain from its store (stopped or running)."""
    blocks = []
    for height, data in store.iter_blocks():
        block = decode_block(data)
        meta = store.block_meta(height)
        if meta is None:  # iter_blocks just returned it; the store only grows
            raise EncodingError(f"block {height} vanished from {store.path}")
        txs = []
        for raw, tx_id, result in zip(block.txs, block.tx_ids, block.results, strict=True):
            kind, grant = "", None
            try:
                tx = decode_transaction(raw).tx
                kind = tx.type
                value = tx.payload.get("grant") if isinstance(tx.payload, dict) else None
                grant = value if isinstance(value, str) else None
            except EncodingError:
                pass  # recorded as bad_encoding: neither a grant use nor a revocation
            txs.append(CommittedTx(tx_id, result.code, kind, grant))
        blocks.append(ChainBlock(height, meta.hash, meta.state_root, tuple(txs)))
    return NodeChain(org, tuple(blocks))


def _check_agreement(
    chains: Sequence[NodeChain], same_head: bool, out: list[Violation]
) -> NodeChain:
    """Compare every height; returns the longest chain (the reference)."""
    reference = max(chains, key=lambda c: len(c.blocks))
    for chain in chains:
        for mine, theirs in zip(chain.blocks, reference.blocks, strict=False):
            if mine.height != theirs.height:
                out.append(
                    Violation("nodes_agree", f"{chain.org} has a gap: {mine.height} at a slot")
                )
                break
            if (mine.hash, mine.state_root) != (theirs.hash, theirs.state_root):
                out.append(
                    Violation(
                        "nodes_agree",
                        f"{chain.org} and {reference.org} differ at height {mine.height}: "
                        f"hash {mine.hash.hex()[:16]} vs {theirs.hash.hex()[:16]}, state root "
                        f"{mine.state_root.hex()[:16]} vs {theirs.state_root.hex()[:16]}",
                    )
                )
                break
        if same_head and len(chain.blocks) != len(reference.blocks):
            out.append(
                Violation(
                    "nodes_agree",
                    f"{chain.org} stopped at height {len(chain.blocks) - 1}, "
                    f"{reference.org} reached {len(reference.blocks) - 1}",
                )
            )
    return reference


def _inclusions(chain: NodeChain) -> dict[bytes, list[tuple[int, str]]]:
    """Every state-changing inclusion (any code but replay) of each transaction."""
    seen: dict[bytes, list[tuple[int, str]]] = defaultdict(list)
    for block in chain.blocks:
        for tx in block.txs:
            if tx.code != REPLAY:
                seen[tx.tx_id].append((block.height, tx.code))
    return seen


def _check_operations(
    operations: Iterable[Operation],
    seen: dict[bytes, list[tuple[int, str]]],
    out: list[Violation],
) -> None:
    acked: set[bytes] = set()
    for op in operations:
        if not op.acknowledged:
            continue
        acked.add(op.tx_id)
        found = seen.get(op.tx_id, [])
        if len(found) != 1:
            out.append(
                Violation(
                    "acknowledged_once",
                    f"{op.tx_id.hex()[:16]} (acknowledged by {op.node} at height {op.height}) "
                    f"is in the chain {len(found)} times",
                )
            )
        elif found[0] != (op.height, op.code) and op.height >= 0:
            out.append(
                Violation(
                    "acknowledged_once",
                    f"{op.tx_id.hex()[:16]} was acknowledged by {op.node} as {op.code} at height "
                    f"{op.height} but is {found[0][1]} at height {found[0][0]}",
                )
            )
    for tx_id, found in seen.items():
        if len(found) > 1 and tx_id not in acked:
            heights = ", ".join(f"{h} ({c})" for h, c in found)
            out.append(
                Violation("at_most_once", f"{tx_id.hex()[:16]} is applied at heights {heights}")
            )


def _check_revocations(chain: NodeChain, out: list[Violation]) -> int:
    revoked: dict[str, int] = {}
    for block in chain.blocks:
        for tx in block.txs:
            if tx.code != VALID or tx.grant is None:
                continue
            if tx.type == REVOKE:
                revoked.setdefault(tx.grant, block.height)
            elif tx.type in GRANT_USES and tx.grant in revoked:
                out.append(
                    Violation(
                        "no_use_after_revoke",
                        f"{tx.type} {tx.tx_id.hex()[:16]} used grant {tx.grant} at height "
                        f"{block.height}, after its revocation at height {revoked[tx.grant]}",
                    )
                )
    return len(revoked)


def check_history(
    operations: Sequence[Operation], chains: Sequence[NodeChain], *, same_head: bool = True
) -> HistoryReport:
    """Prove the four properties; raise `HistoryViolationError` naming every violation."""
    if not chains:
        raise HistoryViolationError([Violation("nodes_agree", "no chain to check")])
    violations: list[Violation] = []
    reference = _check_agreement(chains, same_head, violations)
    seen = _inclusions(reference)
    _check_operations(operations, seen, violations)
    revoked = _check_revocations(reference, violations)
    if violations:
        raise HistoryViolationError(violations)
    return HistoryReport(
        operations=len(operations),
        acknowledged=sum(op.acknowledged for op in operations),
        committed=len(seen),
        height=len(reference.blocks) - 1,
        nodes=len(chains),
        revoked_grants=revoked,
    )
