"""World-state views used while a block executes.

`BlockState` layers the block's pending writes over the store; `TxState`
layers one transaction's writes over the block, so a rejected transaction is
dropped whole. Values are kept decoded while the block runs and encoded once
at commit; the encoded writes are what `state_delta_hash` commits to.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sharechain.codec import decode_trusted, encode

__all__ = ["BlockState", "StateReader", "TxState"]

_DELETED = object()


def _overlay(
    below: Iterator[tuple[str, Any]], writes: dict[str, Any], prefix: str
) -> Iterator[tuple[str, Any]]:
    """`below` (a prefix scan) with `writes` laid over it, in key order."""
    merged = dict(below)
    for k, v in writes.items():
        if k.startswith(prefix):
            if v is _DELETED:
                merged.pop(k, None)
            else:
                merged[k] = v
    return iter(sorted(merged.items()))


class StateReader:
    """Read-only state: committed values, decoded. Base of the overlays."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def get(self, key: str) -> Any | None:
        raw = self._store.get(key)
        return None if raw is None else decode_trusted(raw)

    def scan(self, prefix: str) -> Iterator[tuple[str, Any]]:
        for key, raw in self._store.scan(prefix):
            yield key, decode_trusted(raw)


class BlockState(StateReader):
    """The store plus the writes of the transactions committed so far in a block."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.writes: dict[str, Any] = {}
        # Committed bytes read during this block (None: absent). The store does
        # not change while a block executes, and contracts re-read the same few
        # keys (the sender, the dataset, settings) many times per block. Bytes,
        # not decoded values, so a handler mutating what it read changes nothing.
        self._raw: dict[str, bytes | None] = {}

    def get(self, key: str) -> Any | None:
        if key in self.writes:
            v = self.writes[key]
            return None if v is _DELETED else v
        if key in self._raw:
            raw = self._raw[key]
        else:
            raw = self._raw[key] = self._store.get(key)
        return None if raw is None else decode_trusted(raw)

    def scan(self, prefix: str) -> Iterator[tuple[str, Any]]:
        return _overlay(super().scan(prefix), self.writes, prefix)

    def encoded_writes(self) -> dict[str, bytes | None]:
        return {k: None if v is _DELETED else encode(v) for k, v in self.writes.items()}


class TxState:
    """One transaction's view: its own writes over the block's."""

    def __init__(self, block: BlockState) -> None:
        self._block = block
        self.writes: dict[str, Any] = {}
        self.touched: list[str] = []

    def get(self, key: str) -> Any | None:
        if key in self.writes:
            v = self.writes[key]
            return None if v is _DELETED else v
        return self._block.get(key)

    def put(self, key: str, value: Any) -> None:
        if value is None:
            raise ValueError("store None by deleting the key")
        self.writes[key] = value

    def delete(self, key: str) -> None:
        self.writes[key] = _DELETED

    def touch(self, key: str) -> None:
        self.touched.append(key)

    def scan(self, prefix: str) -> Iterator[tuple[str, Any]]:
        return _overlay(self._block.scan(prefix), self.writes, prefix)

    def commit(self) -> list[str]:
        """Fold the writes into the block; returns the keys this transaction concerned."""
        self._block.writes.update(self.writes)
        keys = list(self.writes)
        keys.extend(k for k in self.touched if k not in self.writes)
        return keys
