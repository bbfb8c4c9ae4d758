"""World-state views used while a block executes.

`BlockState` layers the block's pending writes over the store; `TxState`
layers one transaction's writes over the block, so a rejected transaction is
dropped whole. Values are kept decoded while the block runs and encoded once
at commit; the encoded writes are what `state_delta_hash` commits to.

Values read are shared, not copied: a committed value is decoded once per
block and every later read of the key gets the same object, as a value
written earlier in the block always did. Handlers therefore never change a
value they read in place; they copy it (`dict(value)`) and replace nested
values rather than mutate them. `CHECK_READS` (on in the test suite) checks
this at the end of every block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any, TypeVar

from sharechain.codec import decode_trusted, encode

__all__ = ["BlockState", "RecentValues", "StateReader", "TxState", "derived"]

T = TypeVar("T")

_ABSENT = object()

CHECK_READS = False
"""Re-encode every value read at the end of a block and fail if a handler changed
one in place (a debugging aid: it costs an encode per key read)."""


def _overlay(
    below: Iterator[tuple[str, Any]], writes: dict[str, Any], prefix: str
) -> Iterator[tuple[str, Any]]:
    """`below` (a prefix scan) with `writes` (None: deleted) laid over it, in key order."""
    merged = dict(below)
    for k, v in writes.items():
        if k.startswith(prefix):
            if v is None:
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


class RecentValues:
    """Committed values of the keys the last blocks read or wrote, decoded.

    Consecutive blocks concern the same records: a request written in one
    block is approved in the next, a grant issued in one is used in the next.
    The ledger keeps what each block read and wrote, as of the height it
    committed, and the next block reads from here before the store; no SQLite
    read and no decoding for those keys. The values are only ever used for
    the block right after `height`, and the ledger checks that height against
    the store's head, so a store that another process advanced is never
    shadowed. At most `limit` keys, the oldest dropped first.
    """

    def __init__(self, limit: int = 8192) -> None:
        self.height = -1
        """The height these values are as of (-1: none yet)."""
        self._values: dict[str, Any] = {}
        self._limit = limit

    def at(self, height: int) -> dict[str, Any] | None:
        """The values, if they are those of the store at `height`."""
        return self._values if self.height == height and self._values else None

    def advance(self, height: int, after: dict[str, Any]) -> None:
        """Block `height` committed; `after` holds keys it read or wrote, as of its end."""
        values = self._values
        if self.height != height - 1:
            values.clear()
        values.update(after)
        excess = len(values) - self._limit
        if excess > 0:  # first inserted, first dropped (a hot key is re-read once)
            for key in list(islice(values, excess)):
                del values[key]
        self.height = height

    def clear(self) -> None:
        self._values.clear()
        self.height = -1


class BlockState(StateReader):
    """The store plus the writes of the transactions committed so far in a block."""

    def __init__(
        self,
        store: Any,
        recent: dict[str, Any] | None = None,
        preloaded: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(store)
        self.writes: dict[str, Any] = {}
        """Values written by the block's transactions so far; None deletes the key."""
        # Committed values read during this block, decoded (None: no such
        # key), starting with those loaded ahead for it (`preloaded`, which it
        # takes over). The store does not change while a block executes, and
        # contracts re-read the same few keys (the sender, the dataset,
        # settings) many times per block.
        self._read: dict[str, Any] = preloaded if preloaded is not None else {}
        self._recent = recent if recent is not None else {}

    def get(self, key: str) -> Any | None:
        v = self.writes.get(key, _ABSENT)
        if v is _ABSENT:
            v = self._read.get(key, _ABSENT)
            if v is _ABSENT:
                v = self._first_read(key)
        return v

    def _first_read(self, key: str) -> Any | None:
        """The committed value of `key`, read for the first time in this block."""
        v = self._recent.get(key, _ABSENT)
        if v is _ABSENT:
            raw = self._store.get(key)
            v = None if raw is None else decode_trusted(raw)
        self._read[key] = v
        return v

    def after(self) -> dict[str, Any]:
        """Every key this block read or wrote, with its value at the block's end (None: absent).

        Called once, when the block has run: the dict returned is the block's read
        cache, its writes laid over it in place (no copy of either)."""
        after = self._read
        after.update(self.writes)
        return after

    def scan(self, prefix: str) -> Iterator[tuple[str, Any]]:
        return _overlay(super().scan(prefix), self.writes, prefix)

    def encoded_writes(self) -> dict[str, bytes | None]:
        if CHECK_READS:
            self._check_reads()
        # In key order: the delta hash and the store sort them again, and an
        # already sorted list sorts in one pass.
        writes = self.writes
        return {k: None if (v := writes[k]) is None else encode(v) for k in sorted(writes)}

    def _check_reads(self) -> None:
        for key, value in self._read.items():
            raw = self._store.get(key)
            if (None if raw is None else encode(value)) != raw:
                raise AssertionError(f"a contract changed the value of {key!r} it read, in place")


class TxState:
    """One transaction's view: its own writes over the block's."""

    __slots__ = ("_block", "touched", "writes")

    def __init__(self, block: BlockState) -> None:
        self._block = block
        self.writes: dict[str, Any] = {}
        """This transaction's writes; None deletes the key (`put` refuses None)."""
        self.touched: list[str] = []

    def get(self, key: str) -> Any | None:
        # `BlockState.get`, inline (a call less on each of the many reads a block makes)
        v = self.writes.get(key, _ABSENT)
        if v is _ABSENT:
            block = self._block
            v = block.writes.get(key, _ABSENT)
            if v is _ABSENT:
                v = block._read.get(key, _ABSENT)
                if v is _ABSENT:
                    v = block._first_read(key)
        return v

    def put(self, key: str, value: Any) -> None:
        if value is None:
            raise ValueError("store None by deleting the key")
        self.writes[key] = value

    def delete(self, key: str) -> None:
        self.writes[key] = None

    def touch(self, key: str) -> None:
        self.touched.append(key)

    def scan(self, prefix: str) -> Iterator[tuple[str, Any]]:
        return _overlay(self._block.scan(prefix), self.writes, prefix)

    def fold(self) -> None:
        """Fold the writes into the block (`commit` without the list of keys)."""
        self._block.writes.update(self.writes)

    def commit(self) -> list[str]:
        """Fold the writes into the block; returns the keys this transaction concerned:
        those it wrote, then the others it touched."""
        self.fold()
        writes = self.writes
        keys = list(writes)
        keys += [k for k in self.touched if k not in writes]
        return keys


_derived: dict[int, tuple[Any, Callable[[Any], Any], Any]] = {}
"""id(value) -> (value, parse, parse(value))."""
_MAX_DERIVED = 256


def derived(value: Any, parse: Callable[[Any], T]) -> T:
    """`parse(value)`, computed once per value object.

    Within a block every read of a key returns the same object, so a record
    parsed on each use (the sender's organisation, the governance settings) is
    parsed once per block. The entry keeps `value` alive, so its id cannot be
    reused by another object while the entry stands; values read are never
    changed in place (see the module docstring), so the result stays right.
    """
    # Keyed by the value's id alone (a tuple key costs more to build and hash than
    # the lookup): a value parsed two ways keeps the last, the other is parsed again.
    key = id(value)
    hit = _derived.get(key)
    if hit is not None and hit[0] is value and hit[1] is parse:
        result: T = hit[2]
        return result
    result = parse(value)
    if len(_derived) >= _MAX_DERIVED:
        _derived.clear()
    _derived[key] = (value, parse, result)
    return result
