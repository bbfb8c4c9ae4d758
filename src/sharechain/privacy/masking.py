"""Masking a table: the orchestrator that turns a raw file into a release.

`apply(profile, source, target, ...)` reads the source twice. The first pass
coarsens the quasi-identifier and sensitive columns as the release will show
them and counts the groups over the whole file; from those counts it decides
which groups survive (>= k rows and, if asked, >= l distinct sensitive
values). The second pass applies every column rule to the surviving rows and
writes the release to a temporary file, renamed onto the target only when
everything succeeded. `check` is the first pass alone: what `apply` would
achieve, without writing.

The result is a `MaskReport`: the numbers a transformation record on the
chain carries (rows in and out, achieved k and l, epsilon spent) and what a
reviewer asks before sharing (which columns changed, how many people sit in
the smallest groups, whether the profile's targets are met).
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Final, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sharechain.privacy.anonymity import (
    ROWS,
    GroupCounter,
    GroupIndex,
    measure,
    passing_groups,
)
from sharechain.privacy.blocks import read_units
from sharechain.privacy.overlap import SWITCHING, NoiseAhead
from sharechain.privacy.profiles import (
    Drop,
    Keep,
    Noise,
    Profile,
    ProfileError,
    Rule,
    Tokenize,
)
from sharechain.privacy.rules import (
    NoiseStream,
    apply_rule,
    check_rule,
    group_key,
    reads_as_text,
)
from sharechain.privacy.tables import Batch, Spill, TableError, atomic_output, read_batches

__all__ = ["MaskReport", "Progress", "apply", "check"]

_NOISE_AHEAD: Final = 1 << 18
"""Draws per noised column made ahead of need, at most (2 MiB each); drawing
starts with pass 1 (`NoiseAhead.allow` keeps it to the rows parked so far)."""
_WORKERS: Final = 2
"""Batches masked at once (the machines this runs on have two cores or more)."""

_KEY: Final = "\x00key:"
"""Prefix of the group-key columns parked beside a masked batch."""

Progress = Callable[[int, int], None]
"""Called with (units done, units in all) as the file is read; units are bytes or rows."""


@dataclass(frozen=True, slots=True)
class MaskReport:
    """What masking a table did, and how re-identifiable the result is."""

    rows_in: int
    """Rows in the source."""
    rows_out: int
    """Rows in the release."""
    suppressed: int
    """Rows removed because their group missed k (or l)."""
    k_before: int
    """Smallest group before suppression."""
    k: int
    """Achieved k: the smallest group of the release."""
    l: int | None  # noqa: E741 - the standard name of distinct l-diversity
    """Achieved distinct l-diversity (None without sensitive attributes)."""
    groups: int
    """Quasi-identifier groups in the release."""
    smallest_group_share: float
    """Share of released rows in groups of exactly k rows."""
    columns_changed: tuple[str, ...]
    """Source columns released other than as they were (dropped ones included)."""
    columns_dropped: tuple[str, ...]
    """Source columns left out of the release."""
    epsilon: tuple[tuple[str, Fraction], ...]
    """Epsilon spent per noised column."""
    targets_met: bool
    """Whether the release has k and l at least the profile's targets."""

    @property
    def epsilon_total(self) -> Fraction:
        """Epsilon of the release as a whole: the columns' sum (sequential composition)."""
        return sum((e for _, e in self.epsilon), Fraction(0))


@dataclass(frozen=True, slots=True)
class _Plan:
    """The profile resolved against the source's columns."""

    rules: tuple[tuple[str, Rule], ...]
    """Every source column with its rule, in source order."""
    grouped: tuple[str, ...]
    """Quasi-identifiers, then sensitive attributes."""
    schema: pa.Schema
    """The source's column types (inferred from the first batch for CSV, then fixed)."""


def _plan(source: Path, profile: Profile) -> _Plan:
    """Resolve the profile against the source's header and first batch's types."""
    text = frozenset(name for name, rule in profile.columns if reads_as_text(rule))
    first = next(read_batches(source, text=text, ahead=False), None)
    if first is None:
        raise TableError(f"{source} has no rows to mask")
    schema = first.data.schema
    names = schema.names
    for column in (
        *(c for c, _ in profile.columns),
        *profile.quasi_identifiers,
        *profile.sensitive,
    ):
        if column not in names:
            raise ProfileError(
                f"the profile names column {column!r}, which {source.name} does not have "
                f"(its columns: {', '.join(names)})",
                column,
            )
    rules = tuple((name, profile.rule(name)) for name in names)
    for name, rule in rules:
        check_rule(name, rule, schema.field(name).type)
    return _Plan(rules, profile.quasi_identifiers + profile.sensitive, schema)


def _grouped_forms(plan: _Plan, batch: pa.RecordBatch) -> pa.Table:
    """The grouped columns, equal where the release shows them equal (`rules.group_key`).

    Tokens are compared by their source value, which they map one to one.
    """
    rules = dict(plan.rules)
    # Start from the batch's rows with no columns, so a profile without
    # quasi-identifiers still counts every row (as one group).
    forms = pa.Table.from_batches([batch]).select([])
    for name in plan.grouped:
        forms = forms.append_column(name, group_key(name, rules[name], batch.column(name)))
    return forms


@dataclass(frozen=True, slots=True)
class _Census:
    """The first pass: groups of the whole file, and which survive."""

    plan: _Plan
    """The profile resolved against the source."""
    groups: pa.Table
    """One row per quasi-identifier group (see `anonymity.GroupCounter`)."""
    keep: pa.Array
    """Which groups the release keeps."""
    rows_in: int
    """Rows in the source."""
    units: int
    """Progress units of one pass over the source (bytes of CSV, rows of Parquet)."""


class _Masker(Protocol):
    """What pass 1 hands every unit of the source to when it masks as it counts (`apply`)."""

    columns: tuple[str, ...]
    """The source columns it needs (the others are not parsed)."""

    def take(self, load: Callable[[], pa.RecordBatch | None], counter: GroupCounter) -> None:
        """Parse (`load`), mask and count a unit into `counter` (now or by `finish`)."""

    def finish(self, counter: GroupCounter) -> int:
        """Complete every unit taken, its counts included; the rows taken in all."""


def _census(
    profile: Profile,
    source: Path,
    progress: Progress | None,
    passes: int,
    *,
    plan: _Plan | None = None,
    masker: _Masker | None = None,
) -> _Census:
    """Count the groups of `source`; `masker` takes every unit of it to parse and mask.

    Without `masker` only the grouped columns are parsed; with it, those it needs too.
    """
    plan = plan if plan is not None else _plan(source, profile)
    counter = GroupCounter(profile.quasi_identifiers, profile.sensitive)
    rows = units = 0
    only = plan.grouped or (plan.schema.names[0],)
    if masker is None:
        batches = read_batches(source, types=plan.schema, only=only)
        for batch in _reporting(batches, progress, 0, passes):
            rows += batch.data.num_rows
            units = batch.total
            counter.add(_grouped_forms(plan, batch.data))
    else:
        only = tuple(n for n in plan.schema.names if n in {*only, *masker.columns})
        for unit in read_units(source, plan.schema, only):
            if progress is not None:
                progress(unit.done, passes * unit.total)
            units = unit.total
            masker.take(unit.load, counter)
        rows = masker.finish(counter)
    if rows == 0:
        raise TableError(f"{source} has no rows to mask")
    groups = counter.groups()
    keep = passing_groups(groups, profile.k, profile.l)
    if not profile.suppress:
        keep = pa.repeat(pa.scalar(True), len(groups))
    if not pc.any(keep).as_py():
        largest = pc.max(groups.column(ROWS)).as_py()
        raise ProfileError(
            f"k = {profile.k}{'' if profile.l is None else f', l = {profile.l}'} cannot be met: "
            f"every one of the {rows} rows would be suppressed (the largest group has {largest} "
            "rows); lower k or l, or generalise the quasi-identifiers more"
        )
    return _Census(plan, groups, keep, rows, units)


def _reporting(
    batches: Iterator[Batch], progress: Progress | None, index: int, passes: int
) -> Iterator[Batch]:
    for batch in batches:
        if progress is not None:
            progress(index * batch.total + batch.done, passes * batch.total)
        yield batch


def _report(profile: Profile, census: _Census) -> MaskReport:
    before = measure(census.groups)
    after = measure(census.groups.filter(census.keep))
    changed = tuple(name for name, rule in census.plan.rules if not isinstance(rule, Keep))
    dropped = tuple(name for name, rule in census.plan.rules if isinstance(rule, Drop))
    epsilon = tuple((n, r.epsilon) for n, r in census.plan.rules if isinstance(r, Noise))
    met = after.k >= profile.k and (profile.l is None or (after.l or 0) >= profile.l)
    return MaskReport(
        census.rows_in,
        after.rows,
        census.rows_in - after.rows,
        before.k,
        after.k,
        after.l,
        after.groups,
        after.smallest_group_share,
        changed,
        dropped,
        epsilon,
        met,
    )


_Parked = tuple[pa.RecordBatch, pa.Table] | None
"""A unit masked (released columns and group keys) with its group counts; None: no rows."""


def _masked(
    released: tuple[tuple[str, Rule], ...],
    plan: _Plan,
    load: Callable[[], pa.RecordBatch | None],
    token_key: bytes | None,
    counter: GroupCounter,
) -> _Parked:
    """One unit parsed, its released columns then its group keys (`_KEY` + column name),
    and its group counts (`GroupCounter.partial`).

    Noised columns stay raw here: their noise is added in pass 2, to the
    surviving rows only.
    """
    data = load()
    if data is None:
        return None
    forms = _grouped_forms(plan, data)
    columns = [
        data.column(name)
        if isinstance(rule, Noise)
        else apply_rule(name, rule, data.column(name), token_key=token_key)
        for name, rule in released
    ]
    columns += [forms.column(name).combine_chunks() for name in forms.column_names]
    names = [n for n, _ in released] + [_KEY + n for n in forms.column_names]
    return pa.RecordBatch.from_arrays(columns, names=names), counter.partial(forms)


class _Parking:
    """Pass 1's masker: units parsed, masked and counted on `_WORKERS` threads (pyarrow's
    parser and kernels and the C tokeniser run without the interpreter lock), parked in
    file order. One unit more than the workers waits in the pool, so neither idles while
    this thread parks a result and reads the next block. `parked` hears the rows parked
    so far (the noise is drawn for no more rows than that)."""

    def __init__(
        self,
        pool: ThreadPoolExecutor,
        spill: Spill,
        plan: _Plan,
        released: tuple[tuple[str, Rule], ...],
        token_key: bytes | None,
        parked: Callable[[int], None],
    ) -> None:
        self._pool = pool
        self._spill = spill
        self._parked = parked
        self._job = partial(_masked, released, plan)
        self._token_key = token_key
        self.columns = tuple(name for name, _ in released)
        self._running: deque[Future[_Parked]] = deque()
        self._rows = 0

    def take(self, load: Callable[[], pa.RecordBatch | None], counter: GroupCounter) -> None:
        self._running.append(self._pool.submit(self._job, load, self._token_key, counter))
        if len(self._running) > _WORKERS:
            self._park(counter)

    def finish(self, counter: GroupCounter) -> int:
        while self._running:
            self._park(counter)
        return self._rows

    def _park(self, counter: GroupCounter) -> None:
        parked = self._running.popleft().result()
        if parked is not None:
            batch, part = parked
            counter.add_partial(part)
            self._spill.write(batch)
            self._rows += batch.num_rows
            self._parked(self._rows)


def _surviving(
    names: list[str],
    grouped: tuple[str, ...],
    keeper: Callable[[pa.Table], pa.Array | None] | None,
    parked: pa.RecordBatch,
) -> pa.RecordBatch:
    """The released columns of a parked batch, without the rows of suppressed groups."""
    data = parked.select(names)
    if keeper is None:
        return data
    kept = keeper(pa.table([parked.column(_KEY + n) for n in grouped], grouped))
    return data if kept is None else data.filter(kept)


def _in_order(
    pool: ThreadPoolExecutor,
    work: Callable[[pa.RecordBatch], pa.RecordBatch],
    batches: Iterator[Batch],
) -> Iterator[tuple[Batch, pa.RecordBatch]]:
    """`work` on each batch's rows on the pool (one more queued than it has workers),
    results in order."""
    running: deque[tuple[Batch, Future[pa.RecordBatch]]] = deque()
    for batch in batches:
        running.append((batch, pool.submit(work, batch.data)))
        if len(running) > _WORKERS:
            done, future = running.popleft()
            yield done, future.result()
    while running:
        done, future = running.popleft()
        yield done, future.result()


def check(profile: Profile, source: Path, *, progress: Progress | None = None) -> MaskReport:
    """What `apply` would achieve on `source`, without writing anything."""
    return _report(profile, _census(profile, source, progress, 1))


def apply(
    profile: Profile,
    source: Path,
    target: Path,
    *,
    token_key: bytes | None = None,
    progress: Progress | None = None,
    rng: np.random.Generator | None = None,
) -> MaskReport:
    """Write the release of `source` under `profile` to `target`; all or nothing.

    `token_key` (32 bytes, from `privacy.tokens.derive_token_key`) is needed
    when the profile tokenizes a column; `rng` draws the noise (default: a
    generator seeded from the operating system's randomness).
    """
    tokenized = [name for name, rule in profile.columns if isinstance(rule, Tokenize)]
    if tokenized and token_key is None:
        raise ProfileError(
            f"the profile tokenizes {', '.join(tokenized)}: give a tokenisation key", tokenized[0]
        )
    plan = _plan(source, profile)
    generator = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
    noise = {n: NoiseStream(n, r, generator) for n, r in plan.rules if isinstance(r, Noise)}
    released = tuple((n, r) for n, r in plan.rules if not isinstance(r, Drop))
    if not released:
        raise ProfileError("the profile drops every column: there is nothing to release")
    with (
        Spill(target) as spill,
        ThreadPoolExecutor(_WORKERS, thread_name_prefix="mask") as pool,
        SWITCHING.lowered(),
        NoiseAhead(noise, _NOISE_AHEAD) as draws,
    ):
        # Pass 1 masks every row while it counts the groups, and parks the
        # result with each row's group key.
        parking = _Parking(pool, spill, plan, released, token_key, draws.allow)
        census = _census(profile, source, progress, 2, plan=plan, masker=parking)
        report = _report(profile, census)
        if not report.targets_met:
            raise ProfileError(
                f"the table misses the profile's targets (k = {report.k} < {profile.k} or l too "
                "low) and the profile does not suppress; set `suppress: true` or generalise more"
            )
        # Pass 2 drops the rows of the groups that missed k (or l) from the
        # parked release (on the workers, `_WORKERS` batches at a time) and
        # adds the noise, drawn in order (a seeded generator gives one
        # release) on a thread since pass 1 began.
        keeper = None
        if not pc.all(census.keep).as_py():
            keeper = GroupIndex(census.groups, profile.quasi_identifiers).keeper(census.keep)
        names = [n for n, _ in released]
        surviving = partial(_surviving, names, plan.grouped, keeper)
        with atomic_output(target) as out:
            for batch, data in _in_order(pool, surviving, spill.batches()):
                if progress is not None:  # in the source's units, as pass 1 reported
                    units = census.units
                    progress(units + units * batch.done // batch.total, 2 * units)
                if data.num_rows:
                    columns = [
                        draws.add_to(n, data.column(n)) if n in noise else data.column(n)
                        for n in names
                    ]
                    out.write(pa.RecordBatch.from_arrays(columns, names=names))
    return report
