"""The output files of batch scoring: CSV, Parquet, JSON Lines and JSON, appended batch by batch.

CSV goes through pyarrow's formatter in pieces on two threads (with whole numbers written as integers when the
text is the same), Parquet through pyarrow's writer, JSON Lines and JSON record by record with orjson.
:class:`BackgroundWriter` writes on a thread of its own, at most two batches behind the scoring.
"""

from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from fasttrack.errors import DataError


class Writer:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.schema: pa.Schema | None = None

    def write(self, table: pa.Table) -> None:
        if self.schema is None:
            self.schema = table.schema
            self.open(table.schema)
        elif table.schema != self.schema:
            try:
                table = table.cast(self.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
                raise DataError(f"a column changes type half-way through the input: {exc}") from None
        self.append(table)

    def open(self, schema: pa.Schema) -> None:
        raise NotImplementedError

    def append(self, table: pa.Table) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class ParquetWriter(Writer):
    """Parquet through pyarrow's incremental writer."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writer: pq.ParquetWriter | None = None

    def open(self, schema: pa.Schema) -> None:
        self.writer = pq.ParquetWriter(str(self.path), schema)

    def append(self, table: pa.Table) -> None:
        assert self.writer is not None
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class CsvWriter(Writer):
    """CSV through pyarrow's formatter, each table cut into pieces formatted on ``threads`` threads at once.

    Formatting numbers is most of the cost of writing CSV (about 0.1 s per million floats) and pyarrow does
    it without the GIL, so the pieces format in parallel; they are written in order. The text is what
    ``pyarrow.csv.CSVWriter`` writes for the whole table: a quoted header, then the rows.
    """

    def __init__(self, path: Path, *, threads: int = 2) -> None:
        super().__init__(path)
        self.threads = max(threads, 1)
        self.handle: Any = None
        self.pool: ThreadPoolExecutor | None = None
        self.header = True

    def open(self, schema: pa.Schema) -> None:
        self.handle = self.path.open("wb")
        if self.threads > 1:
            self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="fasttrack-csv")

    def append(self, table: pa.Table) -> None:
        header, self.header = self.header, False
        if self.pool is None or table.num_rows < 2 * _MIN_PIECE_ROWS:
            self.handle.write(_csv_bytes(table, header=header))
            return
        size = -(-table.num_rows // self.threads)
        pieces = [table.slice(start, size) for start in range(0, table.num_rows, size)]
        jobs = [self.pool.submit(_csv_bytes, piece, header=header and i == 0) for i, piece in enumerate(pieces)]
        for job in jobs:
            self.handle.write(job.result())

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.handle is not None:
            self.handle.close()


#: Tables shorter than twice this are formatted as they are, not cut into pieces.
_MIN_PIECE_ROWS = 4096
# pyarrow formats CSV in slices of batch_size rows (default 1024), converting each column of each slice: larger
# slices cut that overhead by a quarter for a table of 15 columns.
_WRITE_OPTIONS = {header: pa_csv.WriteOptions(include_header=header, batch_size=32_768) for header in (True, False)}


def _csv_bytes(table: pa.Table, *, header: bool) -> pa.Buffer:
    """``table`` as CSV text, the text pyarrow writes for it, in about half the time: dictionary columns are
    decoded first (pyarrow formats them more slowly than the plain text they stand for), and float columns
    holding whole numbers are formatted as integers (see :func:`_whole_numbers`)."""
    columns = list(table.columns)
    for index, column in enumerate(columns):
        if pa.types.is_dictionary(column.type):
            columns[index] = column.cast(column.type.value_type)
        elif pa.types.is_float64(column.type):
            columns[index] = _whole_numbers(column) or column
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(pa.Table.from_arrays(columns, names=table.column_names), sink, _WRITE_OPTIONS[header])
    return sink.getvalue()


#: pyarrow formats a float64 that is a whole number below 1e10 in size like the int64 of the same value
#: (``62.0`` is ``62``); from 1e10 on it switches to exponents (``1e+10``).
_WHOLE_LIMIT = 1e10


def _whole_numbers(column: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """A float64 column as int64 when every value (nulls' slots included) is whole, below ``_WHOLE_LIMIT`` in
    size and not ``-0.0`` (``-0`` as a float, ``0`` as an integer): then both print the same CSV text."""
    chunks = []
    for chunk in column.chunks:
        data = chunk.buffers()[1]
        if data is None:
            return None
        values = np.frombuffer(data, dtype=np.float64, count=len(chunk), offset=chunk.offset * 8)
        if not bool((np.abs(values) < _WHOLE_LIMIT).all()):  # NaN fails too
            return None
        if not np.array_equal(values.astype(np.int64), values):
            return None
        zeros = values == 0
        if zeros.any() and bool(np.signbit(values[zeros]).any()):
            return None
        chunks.append(chunk.cast(pa.int64(), safe=False))
    return pa.chunked_array(chunks, pa.int64())


class JsonWriter(Writer):
    """JSON Lines (one record per line) or, with ``array``, one JSON array of records."""

    def __init__(self, path: Path, *, array: bool) -> None:
        super().__init__(path)
        self.array = array
        self.handle: Any = None
        self.first = True

    def open(self, schema: pa.Schema) -> None:
        self.handle = self.path.open("wb")
        if self.array:
            self.handle.write(b"[")

    def append(self, table: pa.Table) -> None:
        # Column by column (dictionary columns decoded first: their values one by one are slow to fetch);
        # orjson writes NaN as null, like the missing value it stands for. Each record goes straight into
        # one buffer: orjson's output objects are large, so a list of them would hold gigabytes.
        names = table.column_names
        columns = [_json_values(column) for column in table.columns]
        separator = b",\n" if self.array else b"\n"
        buffer = bytearray()
        for row in zip(*columns, strict=True):
            if not self.first:
                buffer += separator
            buffer += orjson.dumps(dict(zip(names, row, strict=True)), option=orjson.OPT_SERIALIZE_NUMPY)
            self.first = False
        self.handle.write(buffer)

    def close(self) -> None:
        if self.handle is None and self.array:
            self.handle = self.path.open("wb")
            self.handle.write(b"[")
        if self.handle is not None:
            self.handle.write(b"]\n" if self.array else b"" if self.first else b"\n")
            self.handle.close()


def _json_values(column: pa.ChunkedArray) -> Any:
    """A column's values for orjson: float32 as numpy scalars (written with float32's shortest digits)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_float32(column.type) and column.null_count == 0:
        return column.to_numpy()
    return column.to_pylist()


def writer_for(fmt: str, path: Path) -> Writer:
    if fmt == "csv":
        return CsvWriter(path, threads=min(_cores(), 2))
    if fmt == "parquet":
        return ParquetWriter(path)
    return JsonWriter(path, array=fmt == "json")


def _cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class BackgroundWriter:
    """Writes tables on a thread of its own (pyarrow's writers release the GIL), at most two batches behind."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.queue: queue.Queue[pa.Table | None] = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="fasttrack-writer", daemon=True)

    def __enter__(self) -> BackgroundWriter:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            while (table := self.queue.get()) is not None:
                if self.error is None:
                    self.writer.write(table)
        except BaseException as exc:  # handed to the producing thread
            self.error = exc
            while self.queue.get() is not None:  # keep draining so the producer never blocks
                pass
        finally:
            try:
                self.writer.close()
            except BaseException as exc:
                self.error = self.error or exc

    def write(self, table: pa.Table) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(table)

    def __exit__(self, *exc: object) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and exc[0] is None:
            raise self.error
