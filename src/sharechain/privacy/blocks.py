"""A table read as units of work that the caller's threads parse themselves.

`tables.read_batches` parses a CSV file on one reader thread, a block at a
time; when every batch is then masked on two threads, that reader is the
slowest stage. `read_units` instead hands out each block of raw bytes (cut at
row ends, as `tables` cuts them) with a `load` function that parses it, so the
masking threads parse as well: two blocks are parsed at once, each on its
own thread (pyarrow's parser is not asked to spread one block over threads
of its own: that costs more processor time for no gain here). The column
types must be known (the first block's, as `tables.read_batches` inferred
them), so every block parses alike. A Parquet file's units are its batches,
read ahead on a thread as `tables.read_batches` reads them.

A parse error raises the same `TableError`, naming the line and column, from
`load`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from sharechain.privacy.tables import (
    TableError,
    _header_names,
    _located,
    _parquet_batches,
    _prefetched,
    _row_blocks,
    is_parquet,
)

__all__ = ["Unit", "read_units"]


@dataclass(frozen=True, slots=True)
class Unit:
    """A slice of a table, to be parsed by whoever calls `load`."""

    load: Callable[[], pa.RecordBatch | None]
    """The rows (None for a block without any: a header alone)."""
    done: int
    """Units read so far (bytes for CSV, rows for Parquet)."""
    total: int
    """Units in the whole file."""


def read_units(path: Path, types: pa.Schema, only: tuple[str, ...] | None) -> Iterator[Unit]:
    """The file's units; `types` fixes every column's type, `only` the columns parsed."""
    if not path.is_file():
        raise TableError(f"{path} does not exist or is not a file")
    if is_parquet(path):
        for batch in _prefetched(_parquet_batches(path, only)):
            yield Unit(partial(_loaded, batch.data), batch.done, batch.total)
        return
    total = path.stat().st_size
    if total == 0:
        raise TableError(f"{path} is empty; a CSV file needs a header line")
    column_types = {f.name: f.type for f in types}
    names: list[str] | None = None
    done = 0
    with path.open("rb") as f:
        for chunk in _row_blocks(f):
            done += len(chunk)
            parse = partial(_parse, path, chunk, names, column_types, only)
            if names is None:
                names = _header_names(path, chunk)  # the header is in the first block only
            yield Unit(parse, done, total)


def _loaded(batch: pa.RecordBatch) -> pa.RecordBatch:
    return batch


def _parse(
    path: Path,
    chunk: bytes | memoryview,
    names: list[str] | None,
    types: dict[str, pa.DataType],
    only: tuple[str, ...] | None,
) -> pa.RecordBatch | None:
    """One block's rows (`names` None: the block starts with the header)."""
    try:
        table = pacsv.read_csv(
            pa.py_buffer(chunk),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=only or ()),
        )
    except pa.ArrowInvalid as exc:
        raise _located(path, str(exc)) from None
    if not table.num_rows:
        return None
    batch: pa.RecordBatch = table.combine_chunks().to_batches()[0]  # one chunk: one batch
    return batch
