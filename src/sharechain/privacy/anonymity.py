"""k-anonymity, distinct l-diversity, and suppression of the groups that miss them.

An attacker who knows some of a person's attributes from elsewhere (birth
date, sex, postcode: the *quasi-identifiers*) can find that person's row in a
release by matching them; Sweeney showed in 2002 that birth date, sex and
ZIP code alone single out most Americans. Rows with equal quasi-identifiers
form a *group*. A release is k-anonymous when every group has at least k rows,
so a match always leaves at least k candidates; it is distinctly l-diverse
when every group shows at least l distinct values of each sensitive
attribute, so that even knowing the group does not reveal the diagnosis
(a group of five rows that all say "HIV" is 5-anonymous and discloses it).

Neither property protects against everything: an attacker who knows that a
person is *not* in some group, or holds background knowledge about value
frequencies, or combines two releases of overlapping rows, can still narrow
candidates down (see docs/privacy.md).

Suppression removes the rows of every group below k (or below l). Group sizes
are a property of the whole file, so `GroupCounter` first accumulates them
over all batches; `GroupIndex` then decides, batch by batch and without a
join, whether each row's group survives: each quasi-identifier value becomes
its index among that column's distinct values, and the indices of a row are
combined column by column into one integer code, re-numbered densely after
each column so the code never outgrows 64 bits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "ROWS",
    "Anonymity",
    "GroupCounter",
    "GroupIndex",
    "distinct_column",
    "group_table",
    "measure",
    "passing_groups",
]

ROWS: Final = "\x00rows"
"""Column of a group table holding the group's row count."""
_ALL: Final = "\x00all"
"""A constant key, so a profile without quasi-identifiers has one group: the table."""
_CONSOLIDATE: Final = 1 << 18
"""Partial group rows held before they are merged."""


def distinct_column(sensitive: str) -> str:
    """Column of a group table holding the distinct count of `sensitive`."""
    return f"\x00distinct:{sensitive}"


@dataclass(frozen=True, slots=True)
class Anonymity:
    """How re-identifiable a (released) table is."""

    rows: int
    """Rows in the table."""
    groups: int
    """Distinct quasi-identifier combinations."""
    k: int
    """Size of the smallest group (0 for an empty table)."""
    l: int | None  # noqa: E741 - the standard name of distinct l-diversity
    """Fewest distinct values of a sensitive attribute in a group (None without any)."""
    smallest_group_share: float
    """Share of rows in groups of exactly `k` rows: how many people sit at the worst risk."""


class GroupCounter:
    """Accumulates group sizes and distinct sensitive values over a file's batches."""

    def __init__(self, quasi_identifiers: Sequence[str], sensitive: Sequence[str]) -> None:
        self._keys = (*quasi_identifiers, _ALL)
        self._sensitive = tuple(sensitive)
        self._parts: list[pa.Table] = []
        self._held = 0

    def add(self, table: pa.Table) -> None:
        """Count a batch: `table` holds the quasi-identifier and sensitive columns as released."""
        self.add_partial(self.partial(table))

    def partial(self, table: pa.Table) -> pa.Table:
        """The counts of one batch, for `add_partial`; safe to call from any thread."""
        table = table.append_column(_ALL, _constant(len(table)))
        columns = [*self._keys, *self._sensitive]
        part = table.group_by(columns, use_threads=False).aggregate([([], "count_all")])
        return _named(part, columns, "count_all", ROWS)

    def add_partial(self, part: pa.Table) -> None:
        """Add the counts `partial` made of a batch (from one thread at a time)."""
        self._parts.append(part)
        self._held += len(part)
        if self._held > _CONSOLIDATE and len(self._parts) > 1:
            self._parts = [self._merged()]
            self._held = len(self._parts[0])

    def _merged(self) -> pa.Table:
        columns = [*self._keys, *self._sensitive]
        merged = pa.concat_tables(self._parts).group_by(columns, use_threads=False)
        return _named(merged.aggregate([(ROWS, "sum")]), columns, f"{ROWS}_sum", ROWS)

    def groups(self) -> pa.Table:
        """One row per group: the quasi-identifiers, `ROWS`, and a distinct count per sensitive."""
        if not self._parts:
            return pa.table({ROWS: pa.array([], pa.int64())})
        combos = self._merged()
        aggs: list[tuple[str, str, pc.CountOptions | None]] = [(ROWS, "sum", None)]
        aggs += [(s, "count_distinct", pc.CountOptions(mode="all")) for s in self._sensitive]
        out = combos.group_by(list(self._keys), use_threads=False).aggregate(aggs)
        out = out.select(
            [*self._keys, f"{ROWS}_sum", *(f"{s}_count_distinct" for s in self._sensitive)]
        )
        return out.rename_columns([*self._keys, ROWS, *map(distinct_column, self._sensitive)])


def _constant(n: int) -> pa.Array:
    return pa.repeat(pa.scalar(0, pa.int8()), n)


def _named(table: pa.Table, keys: Sequence[str], aggregate: str, name: str) -> pa.Table:
    """`table` with the keys first and its one aggregate column renamed to `name`."""
    return table.select([*keys, aggregate]).rename_columns([*keys, name])


def passing_groups(groups: pa.Table, k: int, l_target: int | None) -> pa.Array:
    """Boolean mask of the groups that have >= k rows and, if asked, >= l distinct values."""
    ok = pc.greater_equal(groups[ROWS], k)
    if l_target is not None:
        for name in groups.column_names:
            if name.startswith("\x00distinct:"):
                ok = pc.and_(ok, pc.greater_equal(groups[name], l_target))
    return ok.combine_chunks() if isinstance(ok, pa.ChunkedArray) else ok


def measure(groups: pa.Table) -> Anonymity:
    """k, l and the smallest groups' share of a group table (already suppressed, if at all)."""
    rows = int(pc.sum(groups[ROWS]).as_py() or 0)
    if rows == 0:
        return Anonymity(0, 0, 0, None, 0.0)
    k = int(pc.min(groups[ROWS]).as_py())
    distinct = [n for n in groups.column_names if n.startswith("\x00distinct:")]
    l_value = min((int(pc.min(groups[n]).as_py()) for n in distinct), default=None)
    at_k = pc.sum(pc.filter(groups[ROWS], pc.equal(groups[ROWS], k))).as_py()
    return Anonymity(rows, len(groups), k, l_value, int(at_k) / rows)


def group_table(
    table: pa.Table, quasi_identifiers: Sequence[str], sensitive: Sequence[str]
) -> pa.Table:
    """The group table of an in-memory table (for checking a release)."""
    counter = GroupCounter(quasi_identifiers, sensitive)
    counter.add(table.select([*quasi_identifiers, *sensitive]))
    return counter.groups()


class GroupIndex:
    """Maps rows to their group's integer code, so membership is a set lookup."""

    def __init__(self, groups: pa.Table, quasi_identifiers: Sequence[str]) -> None:
        self._keys = (*quasi_identifiers, _ALL)
        self._groups = groups
        self._values: list[pa.Array] = []
        self._steps: list[pa.Array] = []
        for key in self._keys:
            self._values.append(pc.unique(groups[key].combine_chunks()))
        self.codes_of_groups = self._codes(groups, learn=True)
        """Code of each row of `groups`, in order."""

    def _codes(self, table: pa.Table, *, learn: bool = False) -> pa.Array:
        code: pa.Array | None = None
        for j, (key, values) in enumerate(zip(self._keys, self._values, strict=True)):
            column = table[key] if key != _ALL else _constant(len(table))
            index = pc.cast(pc.index_in(column, value_set=values, skip_nulls=False), pa.int64())
            if code is None:
                code = index
                continue
            raw = pc.add(pc.multiply(code, len(values)), index)
            if learn:
                self._steps.append(pc.unique(raw))
            code = pc.cast(pc.index_in(raw, value_set=self._steps[j - 1]), pa.int64())
        assert code is not None
        return code.combine_chunks() if isinstance(code, pa.ChunkedArray) else code

    def member(self, table: pa.Table, codes: pa.Array) -> pa.Array:
        """Boolean mask: whether each row of `table` belongs to a group whose code is in `codes`."""
        return pc.is_in(self._codes(table), value_set=codes)

    def keeper(self, keep: pa.Array) -> Callable[[pa.Table], pa.Array | None]:
        """A function giving, for a table of grouped columns, whether each row's group is kept.

        `keep` marks the groups (rows of the group table) that survive; the
        tables asked about hold rows of the table the groups were counted on.
        None means every row is kept. When most groups survive, a row can
        only be removed if each of its quasi-identifiers is among the removed
        groups' values of that column: those few rows alone get their group
        code looked up. Otherwise the lookup goes through the kept groups
        (a hash set is built per call), and a row of no known group is not kept.
        """
        removed = pc.invert(keep)
        if pc.sum(pc.cast(removed, pa.int64())).as_py() * 2 > len(keep):
            kept_codes = pc.filter(self.codes_of_groups, keep)
            return lambda table: pc.is_in(self._codes(table), value_set=kept_codes)
        removed_codes = pc.filter(self.codes_of_groups, removed)
        if not len(removed_codes):
            return lambda table: None
        keys = [key for key in self._keys if key != _ALL]
        candidates = [pc.unique(pc.filter(self._groups[key], removed)) for key in keys]

        def kept(table: pa.Table) -> pa.Array | None:
            if not keys:  # one group, the whole table, and it is removed
                return pa.repeat(pa.scalar(False), len(table))
            maybe = None
            for key, values in zip(keys, candidates, strict=True):
                hit = pc.is_in(table[key], value_set=values, skip_nulls=False)
                maybe = hit if maybe is None else pc.and_(maybe, hit)
            rows = pc.indices_nonzero(maybe).to_numpy()
            if not len(rows):
                return None
            codes = self._codes(table.take(rows))
            out = pc.is_in(codes, value_set=removed_codes).to_numpy(zero_copy_only=False)
            mask = np.ones(len(table), dtype=np.bool_)
            mask[rows[out]] = False
            return pa.array(mask)

        return kept
