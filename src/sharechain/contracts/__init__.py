"""The data-sharing state machine: pure, deterministic contracts.

`default_registry()` is every contract a sharechain node runs.
"""

from __future__ import annotations

from sharechain.contracts import notary
from sharechain.ledger.contract import ContractRegistry

__all__ = ["default_registry"]


def default_registry() -> ContractRegistry:
    """All contracts, keyed by transaction type."""
    return notary.registry()
