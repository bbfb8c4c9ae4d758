"""Group counting over batches, the k/l measures, and group membership by code."""

from __future__ import annotations

import random

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycanon import anonymity as pycanon

from sharechain.privacy import anonymity
from sharechain.privacy.anonymity import (
    ROWS,
    GroupCounter,
    GroupIndex,
    distinct_column,
    group_table,
    measure,
    passing_groups,
)

values = st.one_of(st.none(), st.sampled_from(["a", "b", "c"]))
Row = tuple[str | None, int | None, str]


def table_of(rows: list[Row]) -> pa.Table:
    a, b, s = zip(*rows, strict=True) if rows else ((), (), ())
    return pa.table(
        {
            "a": pa.array(a, pa.string()),
            "b": pa.array(b, pa.int64()),
            "s": pa.array(s, pa.string()),
        }
    )


rows_strategy = st.lists(
    st.tuples(values, st.one_of(st.none(), st.integers(0, 3)), st.sampled_from(["x", "y", "z"])),
    min_size=1,
    max_size=200,
)


@settings(max_examples=60, deadline=None)
@given(rows=rows_strategy, cut=st.integers(0, 200))
def test_batches_count_like_the_whole(rows: list[Row], cut: int) -> None:
    table = table_of(rows)
    counter = GroupCounter(["a", "b"], ["s"])
    counter.add(table.slice(0, cut))
    counter.add(table.slice(cut))
    groups = counter.groups()
    expected: dict[tuple[str | None, int | None], set[str]] = {}
    sizes: dict[tuple[str | None, int | None], int] = {}
    for a, b, s in rows:
        expected.setdefault((a, b), set()).add(s)
        sizes[(a, b)] = sizes.get((a, b), 0) + 1
    got = {
        (a, b): (n, d)
        for a, b, n, d in zip(
            groups["a"].to_pylist(),
            groups["b"].to_pylist(),
            groups[ROWS].to_pylist(),
            groups[distinct_column("s")].to_pylist(),
            strict=True,
        )
    }
    assert got == {key: (sizes[key], len(expected[key])) for key in sizes}
    m = measure(groups)
    assert m.rows == len(rows) and m.groups == len(sizes)
    assert m.k == min(sizes.values()) and m.l == min(len(v) for v in expected.values())


@settings(max_examples=40, deadline=None)
@given(rows=rows_strategy, k=st.integers(1, 6))
def test_membership_by_code_matches_the_groups(rows: list[Row], k: int) -> None:
    table = table_of(rows)
    groups = group_table(table, ["a", "b"], ["s"])
    keep = passing_groups(groups, k, None)
    index = GroupIndex(groups, ["a", "b"])
    member = index.member(table, pc.filter(index.codes_of_groups, keep)).to_pylist()
    sizes: dict[tuple[str | None, int | None], int] = {}
    for a, b, _ in rows:
        sizes[(a, b)] = sizes.get((a, b), 0) + 1
    assert member == [sizes[(a, b)] >= k for a, b, _ in rows]


def test_consolidation_keeps_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(anonymity, "_CONSOLIDATE", 5)
    r = random.Random(3)
    rows = [(r.choice("abcdefg"), r.randint(0, 5), r.choice("xyz")) for _ in range(2000)]
    counter = GroupCounter(["a", "b"], ["s"])
    for i in range(0, 2000, 100):
        counter.add(table_of(rows[i : i + 100]))
    assert measure(counter.groups()) == measure(group_table(table_of(rows), ["a", "b"], ["s"]))


def test_l_diversity_and_share_agree_with_pycanon() -> None:
    r = random.Random(4)
    rows = [(r.choice("abc"), r.randint(0, 2), r.choice("xyz")) for _ in range(300)]
    m = measure(group_table(table_of(rows), ["a", "b"], ["s"]))
    frame = pd.DataFrame(rows, columns=["a", "b", "s"])
    assert m.k == pycanon.k_anonymity(frame, ["a", "b"])
    assert m.l == pycanon.l_diversity(frame, ["a", "b"], ["s"])
    sizes = frame.groupby(["a", "b"]).size()
    assert m.smallest_group_share == pytest.approx(sizes[sizes == m.k].sum() / 300)


def test_no_quasi_identifiers_is_one_group_and_l_targets_filter() -> None:
    table = table_of([("a", 1, "x"), ("b", 2, "x"), ("a", 1, "y")])
    whole = measure(group_table(table, [], ["s"]))
    assert (whole.k, whole.groups, whole.l) == (3, 1, 2)
    groups = group_table(table, ["a"], ["s"])
    assert passing_groups(groups, 1, 2).to_pylist() == [n == "a" for n in groups["a"].to_pylist()]
    assert measure(groups.slice(0, 0)).k == 0


@settings(max_examples=40, deadline=None)
@given(rows=rows_strategy, k=st.integers(1, 6))
def test_keeper_keeps_exactly_the_rows_of_passing_groups(rows: list[Row], k: int) -> None:
    """Both ways of `GroupIndex.keeper` (few groups removed: candidates first; many: codes)."""
    table = table_of(rows)
    groups = group_table(table, ["a", "b"], ["s"])
    keep = passing_groups(groups, k, None)
    kept = GroupIndex(groups, ["a", "b"]).keeper(keep)(table)
    sizes: dict[tuple[str | None, int | None], int] = {}
    for a, b, _ in rows:
        sizes[(a, b)] = sizes.get((a, b), 0) + 1
    expected = [sizes[(a, b)] >= k for a, b, _ in rows]
    assert (kept.to_pylist() if kept is not None else [True] * len(rows)) == expected
