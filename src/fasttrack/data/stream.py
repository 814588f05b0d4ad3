"""Reading data to score in batches: the input is streamed, never loaded whole.

Batch scoring must keep memory flat however large the file is: :func:`open_batches` streams CSV (pyarrow's
streaming reader, every column as text), Parquet (row-group batches, columns keep their types) and JSON Lines
(lines in chunks) as Arrow record batches, reporting how far it has read; JSON arrays are parsed whole (they
cannot be streamed) and then handed out in batches too. :class:`fasttrack.features.arrow.ArrowDriver` turns
each batch into the model's input.
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from fasttrack.data import object_store
from fasttrack.data.arrays import Batch, python_values
from fasttrack.data.sniff import (
    BOM,
    SNIFF_BYTES,
    binary_kind,
    first_line,
    is_number,
    is_url,
    local_file,
    resolve_format,
    sniff_delimiter,
    stem_suffix,
)
from fasttrack.errors import DataError
from fasttrack.features.rules import DEFAULT_RULES

#: Rows per batch unless told otherwise: a few tens of MB of Arrow data for typical tables.
DEFAULT_BATCH_ROWS = 100_000
_MIN_BLOCK = 16 << 10
# pyarrow's streaming CSV reader reads up to 32 blocks ahead on a background thread, however slowly batches
# are consumed: small blocks, gathered into batches of batch_rows rows, keep that readahead at 32 MB.
_MAX_BLOCK = 1 << 20


# ------------------------------------------------------------------------------------------------- reading
@dataclass
class BatchStream:
    """An open input, read batch by batch: iterate for ``(batch, position)`` pairs, then :meth:`close`.

    ``columns`` are the input's column names (stripped of surrounding spaces); every batch has them, in that
    order. A batch is a record batch, or for CSV a table whose chunks are the blocks read (gathering them into
    one record batch would copy every value). ``position`` is how far reading has got, in ``unit`` (``bytes``
    of the file, or ``rows``), out of ``total`` when the size is known.
    """

    source: str
    format: str
    columns: list[str]
    unit: Literal["bytes", "rows"]
    total: int | None
    _batches: Iterator[tuple[Batch, int]]
    _closers: list[Any] = field(default_factory=list)

    def __iter__(self) -> Iterator[tuple[Batch, int]]:
        return self._batches

    def close(self) -> None:
        """Release the file handles (safe to call twice)."""
        while self._closers:
            closer = self._closers.pop()
            try:
                closer.close()
            except Exception:  # closing a half-read remote file may fail; nothing is lost
                continue

    def __enter__(self) -> BatchStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_batches(
    source: str | Path,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    format: str | None = None,
    delimiter: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> BatchStream:
    """Open a CSV, JSON Lines, JSON or Parquet file (path or fsspec URL, optionally ``.gz``) for batch reading.

    Batches hold about ``batch_rows`` rows (CSV is read in blocks of up to 1 MB, gathered into batches of at
    least ``batch_rows`` rows). CSV delimiters are sniffed like :func:`~fasttrack.data.ingest.read_table`
    does, and every CSV column is read as text, for the feature contract to type
    (:class:`~fasttrack.features.arrow.ArrowDriver`). Problems with the file raise a one-line
    :class:`~fasttrack.errors.DataError`.
    """
    if batch_rows < 1:
        raise DataError(f"batch_rows must be at least 1, got {batch_rows}")
    name = str(source)
    fmt, compressed = resolve_format(name, format)
    if fmt == "csv":
        sep = delimiter or ("\t" if stem_suffix(name) == "tsv" else None)
        return _open_csv(name, compressed, sep, batch_rows, storage_options)
    if fmt == "parquet":
        return _open_parquet(name, batch_rows, storage_options)
    return _open_json(name, compressed, batch_rows, storage_options, lines=fmt == "jsonl")


def _open_raw(name: str, storage_options: dict[str, Any] | None, *, native: bool = False) -> tuple[Any, int | None]:
    """A binary file handle on a path or URL, and its size when known.

    With ``native``, a local file is opened by Arrow (``pa.OSFile``) for Arrow to read: then none of Arrow's
    threads calls back into Python for it (see :class:`_StoppableInput` for why that matters).
    """
    try:
        if not is_url(name):
            path = local_file(name)
            return (pa.OSFile(str(path)) if native else path.open("rb")), path.stat().st_size
        options = storage_options or {}
        if object_store.is_object_store_url(name):
            # The same endpoint, credentials and bounded retries as training data (see object_store).
            object_store.apply_network_defaults()
            options = object_store.storage_options(name, storage_options)
        import fsspec  # URLs only: its import (~0.05 s) is not paid for local files

        opened = fsspec.open(name, "rb", **options)
        size = None
        try:
            size = int(opened.fs.size(opened.path))
        except (OSError, TypeError, ValueError, NotImplementedError):
            size = None
        return opened.open(), size
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"file not found: {name}") from None
    except IsADirectoryError:
        raise DataError(f"{name} is a folder, not a file") from None
    except ImportError as exc:
        raise DataError(f"cannot open {name}: {exc}") from None
    except Exception as exc:  # fsspec backends raise many types; object-store ones get their one-line message
        message = object_store.error_message(exc, name) if is_url(name) else None
        if message is None and not isinstance(exc, OSError | ValueError):
            raise
        raise DataError(message or f"cannot read {name}: {exc}") from None


def _text_stream(raw: Any, compressed: bool) -> Any:
    """A pyarrow input stream of the (decompressed) content of a binary file handle (Arrow's own or Python's)."""
    stream = raw if isinstance(raw, pa.NativeFile) else pa.PythonFile(raw, mode="r")
    return pa.CompressedInputStream(stream, "gzip") if compressed else stream


class _StoppableInput:
    """The Python file (a URL's) that Arrow's read-ahead reads, which :meth:`stop` turns into an ended file.

    pyarrow's streaming CSV reader reads ahead on Arrow's thread pools; from a Python file, each read and the
    file's final release take the GIL on a pool thread. A thread that takes the GIL while the interpreter is
    finalising is ended by Python inside C++ code, which aborts the process ("terminate called without an active
    exception", SIGABRT, after the command's own output). :meth:`stop` waits for a read in progress and makes
    every later read return end-of-file at once, so that the read-ahead can be run to its end before the reader
    is dropped (see :class:`_CsvReading`). Local files never come here: Arrow reads them itself.
    """

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._state = threading.Condition()
        self._reading = 0
        self._stopped = False

    def read(self, size: int = -1) -> bytes:
        with self._state:
            if self._stopped:
                return b""
            self._reading += 1
        try:
            data: bytes = self._raw.read(size)
            return data
        finally:
            with self._state:
                self._reading -= 1
                self._state.notify_all()

    def stop(self) -> None:
        """Every later read ends the file; returns once no read is in progress."""
        with self._state:
            self._stopped = True
            self._state.wait_for(lambda: self._reading == 0)

    def tell(self) -> int:
        return int(self._raw.tell())

    def seekable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return bool(self._raw.closed)

    def close(self) -> None:
        self.stop()


class _CsvReading:
    """Closes a streaming CSV reader and its file so that none of Arrow's threads is left reading a Python file.

    For a URL (a :class:`_StoppableInput`) the input is stopped first and the reader consumed to its end (the
    blocks already read ahead are parsed and dropped): the read-ahead task has then returned, so nothing in Arrow
    reads the Python file any more, and both are closed on the thread closing the stream. A local file is
    Arrow's own: Arrow closes it once its read-ahead lets go of it (closing it here could pull the descriptor
    from under a read in progress).
    """

    def __init__(self, reader: Any, raw: Any, feed: _StoppableInput | None) -> None:
        self.reader = reader
        self.raw = raw
        self.feed = feed

    def close(self) -> None:
        if self.feed is None:
            self.reader.close()
            return
        self.feed.stop()
        try:
            while True:
                self.reader.read_next_batch()
        except (StopIteration, pa.ArrowException, OSError):  # its end, or the truncated last block's error
            pass
        self.reader.close()
        self.raw.close()


def _head(name: str, compressed: bool, storage_options: dict[str, Any] | None) -> tuple[bytes, bool]:
    """The first bytes of the content (decompressed) and whether the content is longer."""
    raw, _ = _open_raw(name, storage_options, native=True)
    try:
        stream = _text_stream(raw, compressed)
        try:
            data: bytes = stream.read(SNIFF_BYTES + 1)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{name} is not valid gzip data: {first_line(exc)}") from None
    finally:
        raw.close()
    return data[:SNIFF_BYTES], len(data) > SNIFF_BYTES


def _position(raw: Any) -> int:
    try:
        return int(raw.tell())
    except (OSError, ValueError):
        return 0


def _open_csv(
    name: str, compressed: bool, delimiter: str | None, batch_rows: int, storage_options: dict[str, Any] | None
) -> BatchStream:
    head, truncated = _head(name, compressed, storage_options)
    kind = binary_kind(head)
    if kind:
        raise DataError(f"{name} is not CSV text (it looks like {kind})")
    text = head.removeprefix(BOM).decode("utf-8", "replace")
    if not text.strip():
        raise DataError(f"empty file: {name}")
    if delimiter is None:
        delimiter = sniff_delimiter(text, truncated)
    if len(delimiter) != 1:
        raise DataError(f"a CSV delimiter must be one character, got {delimiter!r}")
    raw_names = next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
    if not raw_names:
        raise DataError(f"{name} has no columns")
    columns = _stripped_names(raw_names)
    if all(is_number(n) for n in columns):
        raise DataError(
            f"{name} has no header row: its first line ({delimiter.join(columns)[:80]}) looks like data; "
            "add a first line of column names"
        )
    lines = text.splitlines()[1 : -1 if truncated else None] or [text]
    # A block holds about batch_rows rows of the sample's average length, and always a few of the longest.
    average = sum(len(line.encode()) + 1 for line in lines) / len(lines)
    longest = max(len(line.encode()) + 1 for line in lines)
    block = int(min(max(batch_rows * average, 4 * longest, _MIN_BLOCK), _MAX_BLOCK))
    raw, size = _open_raw(name, storage_options, native=True)
    feed = None if isinstance(raw, pa.NativeFile) else _StoppableInput(raw)
    try:
        reader = pa_csv.open_csv(
            _text_stream(feed or raw, compressed),
            read_options=pa_csv.ReadOptions(block_size=block, use_threads=True),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            # Every column as text: the normaliser types the features by the schema, the rest stays text.
            # Empty fields are missing (cleaning says so too), which lets clean numbers convert in one step.
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(raw_names, pa.string()),
                strings_can_be_null=True,
                null_values=[""],
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raw.close()
        if "Empty CSV file" in str(exc):
            raise DataError(f"empty file: {name}") from None
        raise DataError(f"{name} is not valid CSV (expected UTF-8 text with a header row): {first_line(exc)}") from None
    if reader.schema.names != raw_names:
        columns = _stripped_names(reader.schema.names)

    def batches() -> Iterator[tuple[Batch, int]]:
        blocks: list[pa.RecordBatch] = []
        rows = 0
        while True:
            try:
                block = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                raise DataError(f"{name} is not valid CSV: {first_line(exc)}") from None
            blocks.append(block)
            rows += block.num_rows
            if rows >= batch_rows:
                yield _renamed(_joined(blocks), columns), _position(raw)
                blocks, rows = [], 0
        if blocks:
            yield _renamed(_joined(blocks), columns), _position(raw)

    return BatchStream(name, "csv", columns, "bytes", size, batches(), [_CsvReading(reader, raw, feed)])


def _open_parquet(name: str, batch_rows: int, storage_options: dict[str, Any] | None) -> BatchStream:
    raw, _ = _open_raw(name, storage_options)
    try:
        magic = raw.read(4)
        raw.seek(0)
        if magic != b"PAR1":
            looks = binary_kind(magic) or "text"
            raise DataError(f"{name} is not a Parquet file (it looks like {looks})")
        parquet = pq.ParquetFile(raw)
    except DataError:
        raw.close()
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raw.close()
        raise DataError(f"{name} is not a valid Parquet file: {first_line(exc)}") from None
    schema = parquet.schema_arrow
    # An unnamed pandas index is row labels, not data (read_table drops it the same way).
    names = [n for n in schema.names if not n.startswith("__index_level_")]
    columns = _stripped_names(names)

    def batches() -> Iterator[tuple[Batch, int]]:
        done = 0
        try:
            for batch in parquet.iter_batches(batch_size=batch_rows, columns=names, use_threads=True):
                done += batch.num_rows
                yield _renamed(batch, columns), done
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{name} is not a valid Parquet file: {first_line(exc)}") from None

    return BatchStream(name, "parquet", columns, "rows", parquet.metadata.num_rows, batches(), [parquet, raw])


def _open_json(
    name: str, compressed: bool, batch_rows: int, storage_options: dict[str, Any] | None, *, lines: bool
) -> BatchStream:
    raw, size = _open_raw(name, storage_options)
    handle: Any = raw
    if compressed:
        import gzip

        handle = gzip.GzipFile(fileobj=raw, mode="rb")
    head = handle.peek(SNIFF_BYTES) if hasattr(handle, "peek") else b""
    kind = binary_kind(head[:SNIFF_BYTES])
    if kind:
        raw.close()
        raise DataError(f"{name} is not JSON (it looks like {kind})")
    if lines:
        records = _json_lines(handle, name, batch_rows, raw)
    else:
        try:
            data = handle.read()
        except (OSError, EOFError) as exc:
            raw.close()
            raise DataError(f"cannot read {name}: {exc}") from None
        records = _json_array(data.removeprefix(BOM), name, batch_rows, size)
    try:
        first, position = next(records)
    except StopIteration:
        raw.close()
        raise DataError(f"empty file: {name}") from None
    except DataError:
        raw.close()
        raise
    # Later records may have keys the first batch lacked: they are ignored, so every batch has the same columns.
    keys = list(dict.fromkeys(key for record in first for key in record))
    columns = _stripped_names(keys)

    def batches() -> Iterator[tuple[Batch, int]]:
        yield _records_batch(first, keys, columns), position
        for chunk, done in records:
            yield _records_batch(chunk, keys, columns), done

    unit: Literal["bytes", "rows"] = "bytes" if lines else "rows"
    total = size if lines else None
    return BatchStream(name, "jsonl" if lines else "json", columns, unit, total, batches(), [handle, raw])


def _json_lines(handle: Any, name: str, batch_rows: int, raw: Any) -> Iterator[tuple[list[dict[str, Any]], int]]:
    chunk: list[dict[str, Any]] = []
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line.removeprefix(BOM) if number == 1 else line)
        except orjson.JSONDecodeError as exc:
            raise DataError(f"{name} line {number} is not valid JSON: {exc}") from None
        if not isinstance(record, dict):
            raise DataError(f"{name} line {number}: expected a JSON object, got {type(record).__name__}")
        chunk.append(record)
        if len(chunk) >= batch_rows:
            yield chunk, _position(raw)
            chunk = []
    if chunk:
        yield chunk, _position(raw)


def _json_array(
    data: bytes, name: str, batch_rows: int, size: int | None
) -> Iterator[tuple[list[dict[str, Any]], int]]:
    if not data.strip():
        raise DataError(f"empty file: {name}")
    try:
        loaded = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DataError(f"{name} is not valid JSON: {exc}") from None
    expected = 'expected an array of records ([{"col": value}, ...]) or an object of columns ({"col": [...]})'
    if isinstance(loaded, dict) and all(isinstance(c, list) for c in loaded.values()):
        lengths = {len(c) for c in loaded.values()}
        if len(lengths) > 1:
            raise DataError(f"{name}: the columns do not line up (lengths {sorted(lengths)})")
        keys = list(loaded)
        loaded = [dict(zip(keys, row, strict=True)) for row in zip(*loaded.values(), strict=True)]
    if not isinstance(loaded, list):
        raise DataError(f"{name}: {expected}; got {type(loaded).__name__}")
    if not all(isinstance(r, dict) for r in loaded):
        raise DataError(f"{name}: {expected}; the array holds non-objects")
    for start in range(0, len(loaded), batch_rows):
        yield loaded[start : start + batch_rows], min(start + batch_rows, len(loaded))


def _stripped_names(names: Sequence[str]) -> list[str]:
    stripped = [str(n).strip() or f"unnamed_{i}" for i, n in enumerate(names)]
    duplicates = sorted({n for n in stripped if stripped.count(n) > 1})
    if duplicates:
        shown = ", ".join(repr(n) for n in duplicates)
        raise DataError(f"duplicate column names (after stripping spaces): {shown}; column names must be unique")
    return stripped


def _joined(blocks: list[pa.RecordBatch]) -> Batch:
    """Record batches of one schema as one batch: a table whose chunks they are (nothing is copied)."""
    if len(blocks) == 1:
        return blocks[0]
    return pa.Table.from_batches(blocks)


def _renamed(batch: Batch, columns: list[str]) -> Batch:
    if batch.schema.names == columns:
        return batch
    if isinstance(batch, pa.Table):
        return batch.rename_columns(columns)
    return pa.RecordBatch.from_arrays(batch.columns, names=columns)


def _records_batch(records: list[dict[str, Any]], keys: list[str], columns: list[str]) -> pa.RecordBatch:
    arrays = [_json_column([record.get(key) for record in records]) for key in keys]
    return pa.RecordBatch.from_arrays(arrays, names=columns)


def _json_column(values: list[Any]) -> pa.Array:
    """JSON values as an Arrow array: their own type when uniform and flat, else their text."""
    array = python_values(values)
    if array is None or pa.types.is_nested(array.type) or pa.types.is_null(array.type):
        return pa.array([_json_text(v) for v in values], pa.string())
    return array


def _json_text(value: Any) -> str | None:
    """A value of a mixed JSON column as text: text as it is, scalars as the feature rules write them (``3.0`` is
    ``"3"``, so a category reads the same from a file as from a request), lists and objects as their JSON text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    text = DEFAULT_RULES.category(value)
    return text if isinstance(text, str) else None
