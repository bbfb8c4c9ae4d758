"""Tables on disk: CSV and Parquet read and written in batches of bounded size.

Masking reads a file twice (group sizes first, then the release) and never
holds more than one batch of it, so a file of any size fits in a fixed amount
of memory. The format follows the file name: `.parquet` or `.pq` is Parquet,
anything else CSV with a header line.

CSV column types are inferred from the first block and then fixed, so both
passes see the same types; a later value that does not fit (a word in a
column of numbers) is an error naming its line, as is a line with the wrong
number of fields. pyarrow reports neither line number, so on such an error the
file is scanned again with Python's `csv` module to find it (error path only).

Batches that must wait for the end of a pass (masking knows which rows to
suppress only once it has seen them all) are parked in a `Spill`: an
uncompressed Arrow IPC file next to the target, written and read back at
memory speed (the operating system's page cache) without holding it in the
process, and deleted whatever happens.

Output goes to a temporary file next to the target and is renamed over it only
when everything succeeded: an error leaves no partial file behind.
"""

from __future__ import annotations

import csv
import os
import queue
import re
import secrets
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc
import pyarrow.parquet as pq

from sharechain.errors import SharechainError
from sharechain.handoff import put_until

__all__ = [
    "Batch",
    "Spill",
    "TableError",
    "TableWriter",
    "atomic_output",
    "is_parquet",
    "read_batches",
]

_BLOCK: Final = 4 << 20
"""CSV bytes parsed per batch."""
_ROWS: Final = 1 << 16
"""Parquet rows per batch."""
_ENCODERS: Final = 2
"""CSV batches encoded at once."""
_CONVERSION = re.compile(
    r"In CSV column #(\d+): (?:Row #\d+: )?CSV conversion error to (\S+): "
    r"invalid value '(.*)'"
)


class TableError(SharechainError):
    """An input table is unreadable or malformed; says which line or column."""

    def __init__(self, message: str, *, line: int | None = None, column: str | None = None):
        super().__init__(message)
        self.line = line
        """The 1-based line of a CSV file at fault (the header is line 1), when known."""
        self.column = column
        """The column at fault, when known."""


@dataclass(frozen=True, slots=True)
class Batch:
    """A slice of a table and how far into the file it reaches."""

    data: pa.RecordBatch
    """The rows."""
    done: int
    """Units read so far (bytes for CSV, rows for Parquet)."""
    total: int
    """Units in the whole file."""


def is_parquet(path: Path) -> bool:
    """Whether `path` names a Parquet file (by its suffix)."""
    return path.suffix.lower() in (".parquet", ".pq")


def read_batches(
    path: Path,
    *,
    text: frozenset[str] = frozenset(),
    types: pa.Schema | None = None,
    only: tuple[str, ...] | None = None,
    ahead: bool = True,
) -> Iterator[Batch]:
    """The file's batches. CSV columns in `text` are read as text; `types` fixes all types;
    `only` reads just those columns (the others are not even parsed). `ahead` parses the
    next batch on a thread while this one is used (not worth it for the first batch alone)."""
    if not path.is_file():
        raise TableError(f"{path} does not exist or is not a file")
    if is_parquet(path):
        batches = _parquet_batches(path, only)
    else:
        batches = _csv_batches(path, text, types, only)
    yield from _prefetched(batches) if ahead else batches


_END: Final = object()


def _prefetched(batches: Iterator[Batch]) -> Iterator[Batch]:
    """`batches`, parsed one ahead on a background thread.

    pyarrow parses without the interpreter lock, so the next batch is parsed
    while the caller masks this one. Errors are raised in the caller; a caller
    that stops early stops the thread and closes the file.
    """
    ready: queue.Queue[object] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def hand_over(item: object) -> bool:
        return put_until(ready, item, stop.is_set, 0.05)

    def pump() -> None:
        try:
            for batch in batches:
                if not hand_over(batch):
                    return
            hand_over(_END)
        except BaseException as exc:  # handed to the caller, which re-raises it
            hand_over(exc)

    thread = threading.Thread(target=pump, name="table-reader", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, Batch)
            yield item
    finally:
        stop.set()
        thread.join()
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def _check_names(path: Path, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise TableError(
                f"{path}: column name {name!r} appears twice in the header; rename one",
                line=1,
                column=name,
            )
        seen.add(name)


def _parquet_batches(path: Path, only: tuple[str, ...] | None) -> Iterator[Batch]:
    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise TableError(f"{path} is not a readable Parquet file: {exc}") from None
    _check_names(path, file.schema_arrow.names)
    total = file.metadata.num_rows
    done = 0
    with file:
        for batch in file.iter_batches(batch_size=_ROWS, columns=only):
            done += batch.num_rows
            yield Batch(batch, done, total)


def _csv_batches(
    path: Path, text: frozenset[str], types: pa.Schema | None, only: tuple[str, ...] | None
) -> Iterator[Batch]:
    """The CSV file cut at row ends into blocks of about `_BLOCK` bytes, each parsed whole.

    pyarrow's streaming reader would read the whole file ahead of a slower
    consumer (a 300 MiB file sat in memory) and reads on threads of its own
    that may call back into Python as the interpreter exits. Here the file is
    read on the caller's thread, one block at a time, and each block is
    parsed by `read_csv` on all cores.
    """
    total = path.stat().st_size
    if total == 0:
        raise TableError(f"{path} is empty; a CSV file needs a header line")
    column_types: dict[str, pa.DataType] = (
        {f.name: f.type for f in types} if types is not None else dict.fromkeys(text, pa.string())
    )
    names: list[str] | None = None
    fixed = types is not None
    done = 0
    with path.open("rb") as f:
        for chunk in _row_blocks(f):
            done += len(chunk)
            try:
                table = pacsv.read_csv(
                    pa.py_buffer(chunk),
                    read_options=pacsv.ReadOptions(column_names=names),
                    parse_options=pacsv.ParseOptions(newlines_in_values=True),
                    convert_options=pacsv.ConvertOptions(
                        column_types=column_types, include_columns=only or ()
                    ),
                )
            except pa.ArrowInvalid as exc:
                raise _located(path, str(exc)) from None
            if names is None:
                names = _header_names(path, chunk)  # the header is in the first block only
            if not fixed and table.num_rows:
                # The first rows' types hold for the rest; a column empty so far is text.
                inferred = {
                    fd.name: pa.string() if pa.types.is_null(fd.type) else fd.type
                    for fd in table.schema
                }
                column_types = {**inferred, **column_types}
                table = table.cast(pa.schema([(n, column_types[n]) for n in table.column_names]))
                fixed = True
            for batch in table.combine_chunks().to_batches():
                yield Batch(batch, done, total)


def _header_names(path: Path, chunk: bytes | memoryview) -> list[str]:
    """The header's column names (checked for duplicates), for the blocks after the first."""
    reader = pacsv.open_csv(
        pa.py_buffer(chunk), parse_options=pacsv.ParseOptions(newlines_in_values=True)
    )
    names: list[str] = reader.schema.names
    reader.close()
    _check_names(path, names)
    return names


def _row_blocks(f: BinaryIO) -> Iterator[bytes | memoryview]:
    """The file in blocks that each end at the end of a row.

    A newline ends a row unless it is inside a quoted field, that is unless an
    odd number of quote characters precede it in the block (RFC 4180 doubles
    quotes inside quoted fields, so the count's parity tells).
    """
    carry = b""
    while block := f.read(_BLOCK):
        data = carry + block
        end = data.rfind(b"\n")
        while end >= 0 and data.count(b'"', 0, end) % 2:
            end = data.rfind(b"\n", 0, end)
        if end < 0:
            carry = data  # a row longer than a block: read on
            continue
        carry = data[end + 1 :]
        yield memoryview(data)[: end + 1]  # no copy of the block
    if carry.strip():
        yield carry


def _located(path: Path, message: str) -> TableError:
    """A TableError for pyarrow's CSV `message`, with the line found by a rescan."""
    if "Empty CSV file" in message:
        return TableError(f"{path} is empty; a CSV file needs a header line")
    conversion = _CONVERSION.search(message)
    try:
        with path.open(newline="", encoding="utf-8", errors="replace") as f:
            rows = csv.reader(f)
            header = next(rows, [])
            for row in rows:
                if conversion is None and len(row) != len(header):
                    return TableError(
                        f"{path}, line {rows.line_num}: {len(row)} fields where the header "
                        f"has {len(header)}; fix or remove the line",
                        line=rows.line_num,
                    )
                if conversion is not None:
                    index, kind, value = int(conversion[1]), conversion[2], conversion[3]
                    if index < len(row) and row[index] == value and index < len(header):
                        return TableError(
                            f"{path}, line {rows.line_num}, column {header[index]!r}: "
                            f"{value!r} is not {kind} like the rows before it; fix the value "
                            "or give the column one type throughout",
                            line=rows.line_num,
                            column=header[index],
                        )
    except OSError:
        pass
    return TableError(f"{path} is not a well-formed CSV file: {message}")


class TableWriter:
    """Writes batches to a CSV or Parquet file; the schema is that of the first batch.

    Encoding happens on background threads (pyarrow releases the interpreter
    lock while it does), so the next batch is masked meanwhile: CSV batches
    are encoded two at a time, each to its own buffer (the header with the
    first), and the buffers appended in order; Parquet batches are written
    one at a time. An error surfaces at a later call or at `close`.
    """

    def __init__(self, path: Path, *, parquet: bool) -> None:
        self._path = path
        self._parquet = parquet
        self._file: BinaryIO | None = None
        self._pq: pq.ParquetWriter | None = None
        self._pool = ThreadPoolExecutor(max_workers=_ENCODERS, thread_name_prefix="table-writer")
        self._pending: deque[Future[pa.Buffer | None]] = deque()

    def write(self, batch: pa.RecordBatch) -> None:
        if self._parquet:
            self._drain(0)  # one Parquet writer: one batch at a time, in order
            self._pending.append(self._pool.submit(self._write_parquet, batch))
            return
        header = self._file is None
        if header:
            self._file = self._path.open("wb")
        self._pending.append(self._pool.submit(_csv_bytes, batch, header))
        self._drain(_ENCODERS)

    def _drain(self, keep: int) -> None:
        """Finish pending work, oldest first, until at most `keep` remain."""
        while len(self._pending) > keep:
            data = self._pending.popleft().result()
            if data is not None:
                assert self._file is not None
                self._file.write(data)

    def _write_parquet(self, batch: pa.RecordBatch) -> None:
        if self._pq is None:
            self._pq = pq.ParquetWriter(self._path, batch.schema)
        self._pq.write_batch(batch)

    def close(self) -> None:
        """Finish the last writes and close the file; raises what a write raised."""
        try:
            self._drain(0)
        finally:
            for future in self._pending:  # after an error: what is left is not written
                future.cancel()
            self._pending.clear()
            self._pool.shutdown(wait=True)
            if self._pq is not None:
                self._pq.close()
            if self._file is not None:
                self._file.close()
            self._pq = self._file = None


def _csv_bytes(batch: pa.RecordBatch, header: bool) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    pacsv.write_csv(batch, sink, write_options=pacsv.WriteOptions(include_header=header))
    return sink.getvalue()


@contextmanager
def atomic_output(target: Path) -> Iterator[TableWriter]:
    """A writer to a temporary file beside `target`, renamed onto it only on success."""
    if not target.parent.is_dir():
        raise TableError(f"cannot write {target}: directory {target.parent} does not exist")
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    writer = TableWriter(temp, parquet=is_parquet(target))
    try:
        yield writer
        writer.close()
        os.replace(temp, target)
    except BaseException:
        try:
            writer.close()
        finally:
            temp.unlink(missing_ok=True)
        raise


class Spill:
    """Batches parked on disk beside `target` until a pass ends; deleted on exit.

    Use as a context manager: `write` batches of one schema, then read them
    back in order with `batches` (as many times as needed).
    """

    def __init__(self, target: Path) -> None:
        if not target.parent.is_dir():
            raise TableError(f"cannot write {target}: directory {target.parent} does not exist")
        self.path = target.with_name(f".{target.name}.{secrets.token_hex(4)}.spill")
        """The parking file (hidden, next to the target)."""
        self.rows = 0
        """Rows parked so far."""
        self._sink: pa.OSFile | None = None
        self._writer: pa.ipc.RecordBatchFileWriter | None = None

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish()
        self.path.unlink(missing_ok=True)

    def write(self, batch: pa.RecordBatch) -> None:
        if self._writer is None:
            self._sink = pa.OSFile(str(self.path), "wb")
            self._writer = pa.ipc.new_file(self._sink, batch.schema)
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def _finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def batches(self) -> Iterator[Batch]:
        """The parked batches in order (read into memory one at a time, not mapped)."""
        self._finish()
        if not self.path.exists():
            return
        done = 0
        with pa.OSFile(str(self.path), "rb") as source:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                done += batch.num_rows
                yield Batch(batch, done, self.rows)
