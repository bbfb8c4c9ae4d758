"""The seam between the ledger and the contracts it runs.

The ledger knows nothing of data sharing: it is given a `ContractRegistry`
mapping transaction types to handlers. A handler is a pure function of the
world state, the transaction and the block context; it reads and writes state
through `State`, and refuses a transaction by raising `Reject` with a
validation code and a reason the sender can read back. A rejected
transaction's writes are discarded, but the keys it `touch`ed still enter the
history index, so an audit trail also shows refused attempts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sharechain.ledger.transactions import SignedTransaction

__all__ = ["BlockContext", "ContractRegistry", "Handler", "Reject", "State"]


class Reject(Exception):
    """Raised by a handler to refuse a transaction with a validation code."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class BlockContext:
    """What a handler may know about the block it runs in."""

    height: int
    """Height of the block being executed."""
    timestamp: int
    """Block time in milliseconds: the only clock contracts have."""
    orderer: str
    """Organisation that ordered the block."""
    index: int = 0
    """Position of the transaction in the block."""


class State(Protocol):
    """World state as a handler sees it (its own writes included)."""

    def get(self, key: str) -> Any | None: ...
    def put(self, key: str, value: Any) -> None: ...
    def delete(self, key: str) -> None: ...
    def touch(self, key: str) -> None:
        """Record that this transaction concerns `key` (history index) without writing it."""
        ...

    def scan(self, prefix: str) -> Iterator[tuple[str, Any]]:
        """Every key starting with `prefix`, in key order, with its value."""
        ...


Handler = Callable[[State, SignedTransaction, BlockContext], None]


@dataclass(frozen=True, slots=True)
class ContractRegistry:
    """Transaction types and the handlers that execute them."""

    handlers: Mapping[str, Handler] = field(default_factory=dict)
    """Handler per transaction type."""
    unindexed: tuple[str, ...] = ()
    """State-key prefixes left out of the history index: derived data (secondary
    indexes, counters) whose own trail nobody asks for. Their writes still
    commit and still count in `state_delta_hash`."""

    def merged(self, other: ContractRegistry) -> ContractRegistry:
        clash = set(self.handlers) & set(other.handlers)
        if clash:
            raise ValueError(f"transaction types registered twice: {sorted(clash)}")
        unindexed = tuple(sorted(set(self.unindexed) | set(other.unindexed)))
        return ContractRegistry({**self.handlers, **other.handlers}, unindexed)
