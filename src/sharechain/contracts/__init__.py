"""The data-sharing state machine: pure, deterministic contracts.

`default_registry()` is every contract a sharechain node runs: the notary,
membership, datasets, access requests, grants and risk control. See
docs/contracts.md for every transaction type, who may send it and its codes.
"""

from __future__ import annotations

from sharechain.contracts import access, anchors, datasets, epochs, grants, membership, notary, risk
from sharechain.ledger.contract import ContractRegistry

__all__ = ["default_registry"]


def default_registry() -> ContractRegistry:
    """All contracts, keyed by transaction type."""
    registry = notary.registry()
    for module in (membership, datasets, epochs, access, grants, risk, anchors):
        registry = registry.merged(module.registry())
    return registry
