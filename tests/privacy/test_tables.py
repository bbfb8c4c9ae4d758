"""Reading CSV in row-aligned blocks gives the table pyarrow reads whole."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharechain.privacy import tables
from sharechain.privacy.tables import TableError, TableWriter, atomic_output, read_batches

cells = st.text(alphabet='ab ,"\n', max_size=12)


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(st.tuples(cells, st.integers(-99, 99)), min_size=1, max_size=60))
def test_blocks_split_only_between_rows(rows: list[tuple[str, int]]) -> None:
    table = pa.table({"text": [t for t, _ in rows], "n": [n for _, n in rows]})
    path = Path(f"/tmp/sharechain-test-tables-{random.getrandbits(64):x}.csv")
    try:
        pacsv.write_csv(table, path)
        whole = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types={"text": pa.string()}),
        )
        saved = tables._BLOCK
        tables._BLOCK = 16  # many blocks, most rows cut by a block edge
        try:
            batches = list(read_batches(path, text=frozenset({"text"})))
        finally:
            tables._BLOCK = saved
        assert pa.Table.from_batches([b.data for b in batches]).equals(whole)
        assert batches[-1].done == batches[-1].total == path.stat().st_size
    finally:
        path.unlink(missing_ok=True)


def test_a_row_longer_than_a_block_is_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tables, "_BLOCK", 8)
    path = tmp_path / "long.csv"
    path.write_text('a,b\n"' + "x" * 100 + '",1\nshort,2\n')
    got = pa.Table.from_batches([b.data for b in read_batches(path)])
    assert got.to_pydict() == {"a": ["x" * 100, "short"], "b": [1, 2]}


def test_a_reader_stopped_early_closes_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a\n" + "1\n" * 1000)
    batches = read_batches(path)
    first = next(batches)
    assert first.data.num_rows == 1000
    batches.close()


def test_writer_errors_surface_and_leave_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    with pytest.raises(pa.ArrowException), atomic_output(target) as out:
        out.write(pa.record_batch({"a": [[1]]}))  # CSV has no lists: the writer thread fails
        out.write(pa.record_batch({"a": [[2]]}))
    assert list(tmp_path.iterdir()) == []
    writer = TableWriter(tmp_path / "ok.parquet", parquet=True)
    writer.write(pa.record_batch({"a": [1, 2]}))
    writer.close()
    assert (tmp_path / "ok.parquet").stat().st_size > 0
    with pytest.raises(TableError, match="not a readable Parquet"):
        list(read_batches(_not_parquet(tmp_path)))


def _not_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "fake.parquet"
    path.write_text("a,b\n1,2\n")
    return path
