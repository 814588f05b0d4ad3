"""Reading data to score in batches, and normalising each batch the way training data was cleaned.

Batch scoring must keep memory flat however large the file is, so the input is never loaded whole:
:func:`open_batches` streams CSV (pyarrow's streaming reader), Parquet (row-group batches) and JSON Lines
(lines in chunks) as Arrow record batches, reporting how far it has read; JSON arrays are parsed whole (they
cannot be streamed) and then handed out in batches too.

:class:`BatchNormalizer` applies :func:`fasttrack.data.clean.normalize` and
:func:`fasttrack.data.schema.prepare_features` to one batch at a time, with the schema deciding each feature's
type instead of the values of the batch at hand, so every batch gets the same column types: numeric features
become float64, boolean features booleans, categorical features text, exactly as in training (stripped, missing
markers missing, numbers as their category text). Columns the model does not use are copied through as text
(stripped, missing markers missing) from text formats, so a column cannot change type half-way through a file;
Parquet columns keep their types. Problems raise :class:`~fasttrack.errors.SchemaValidationError` naming the
column, like ``prepare_features``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from fasttrack.data import object_store
from fasttrack.data.schema import FeatureSchema, Schema
from fasttrack.data.sniff import (
    BOM,
    DEFAULT_MISSING_MARKERS,
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
from fasttrack.errors import DataError, SchemaValidationError, Violation

#: Rows per batch unless told otherwise: a few tens of MB of Arrow data for typical tables.
DEFAULT_BATCH_ROWS = 100_000
_MIN_BLOCK = 16 << 10
# pyarrow's streaming CSV reader reads up to 32 blocks ahead on a background thread, however slowly batches
# are consumed: small blocks, gathered into batches of batch_rows rows, keep that readahead at 32 MB.
_MAX_BLOCK = 1 << 20
_NUMERIC_DTYPES = ("int", "uint", "float", "Int", "UInt", "Float")
#: A batch of rows: a record batch, or a table of several chunks (see :class:`BatchStream`).
Batch: TypeAlias = pa.RecordBatch | pa.Table
#: A column of a batch.
Column: TypeAlias = pa.Array | pa.ChunkedArray


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
    does, and every CSV column is read as text, for :class:`BatchNormalizer` to type. Problems with the file
    raise a one-line :class:`~fasttrack.errors.DataError`.
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


def _open_raw(name: str, storage_options: dict[str, Any] | None) -> tuple[Any, int | None]:
    """A binary file handle on a path or URL, and its size when known."""
    try:
        if not is_url(name):
            path = local_file(name)
            return path.open("rb"), path.stat().st_size
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
    """A pyarrow input stream of the (decompressed) content of a binary file handle."""
    stream = pa.PythonFile(raw, mode="r")
    return pa.CompressedInputStream(stream, "gzip") if compressed else stream


def _head(name: str, compressed: bool, storage_options: dict[str, Any] | None) -> tuple[bytes, bool]:
    """The first bytes of the content (decompressed) and whether the content is longer."""
    raw, _ = _open_raw(name, storage_options)
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
    raw, size = _open_raw(name, storage_options)
    try:
        reader = pa_csv.open_csv(
            _text_stream(raw, compressed),
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

    return BatchStream(name, "csv", columns, "bytes", size, batches(), [reader, raw])


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
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([_json_text(v) for v in values], pa.string())
    if pa.types.is_nested(array.type) or pa.types.is_null(array.type):
        return pa.array([_json_text(v) for v in values], pa.string())
    return array


def _json_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return orjson.dumps(value).decode()


# ------------------------------------------------------------------------------ Arrow arrays, pandas-free
# pyarrow imports pandas (a quarter of a second) the first time pa.array(), pa.scalar() or Array.to_numpy()
# converts anything, to check whether it is a pandas object. Batch scoring never has pandas objects, so the
# arrays and scalars of the scoring path are made from buffers and read back through buffers instead.
def arrow_array(values: np.ndarray[Any, Any], missing: np.ndarray[Any, Any] | None = None) -> pa.Array:
    """A numeric or boolean numpy array as an Arrow array (null where ``missing`` is true)."""
    values = np.ascontiguousarray(values)
    if values.dtype == np.bool_:
        data = pa.py_buffer(np.packbits(values, bitorder="little"))
        kind: pa.DataType = pa.bool_()
    else:
        data, kind = pa.py_buffer(values), pa.from_numpy_dtype(values.dtype)
    validity = None
    if missing is not None and missing.any():
        validity = pa.py_buffer(np.packbits(~missing, bitorder="little"))
    return pa.Array.from_buffers(kind, len(values), [validity, data])


def arrow_strings(values: Sequence[str]) -> pa.Array:
    """Text as an Arrow string array."""
    encoded = [value.encode() for value in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(value) for value in encoded], out=offsets[1:])
    return pa.Array.from_buffers(
        pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    )


def arrow_scalar(value: float | str | None, kind: pa.DataType) -> pa.Scalar:
    """A float, text or null scalar of type ``kind``."""
    if value is None:
        return pa.nulls(1, kind)[0]
    if isinstance(value, str):
        return arrow_strings([value])[0]
    number = arrow_array(np.asarray([value], dtype=np.float64))
    return (number if kind == pa.float64() else number.cast(kind))[0]


_NAN = arrow_scalar(np.nan, pa.float64())
_FALSE = arrow_array(np.asarray([False]))[0]
_ZERO_ONE = arrow_array(np.asarray([0.0, 1.0]))


def float_values(column: Column) -> np.ndarray[Any, Any]:
    """A numeric column's values as a float64 numpy array, NaN where missing."""
    return _numpy_values(column, pa.float64(), np.float64, _NAN)


def int_values(column: Column, null: int) -> np.ndarray[Any, Any]:
    """An integer column's values as an int32 numpy array, ``null`` where missing."""
    # Dictionary indices from Parquet may be narrower than int32 (pandas' categories: int8): the cast widens them.
    return _numpy_values(column, pa.int32(), np.int32, arrow_array(np.asarray([null], dtype=np.int32))[0])


def _numpy_values(column: Column, kind: pa.DataType, dtype: type[Any], fill: pa.Scalar) -> np.ndarray[Any, Any]:
    """``column`` cast to ``kind``, nulls replaced by ``fill``, as a numpy view of its data (one copy at most)."""
    if column.type != kind:
        column = column.cast(kind)
    if column.null_count:
        column = pc.fill_null(column, fill)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    data = column.buffers()[1]
    if data is None:  # no rows
        return np.empty(0, dtype=dtype)
    size = np.dtype(dtype).itemsize
    return np.frombuffer(data, dtype=dtype, count=len(column), offset=column.offset * size)


# --------------------------------------------------------------------------------------------- normalising
@dataclass
class CategoricalColumn:
    """A categorical feature's values as ``codes`` into the distinct ``categories`` (-1: missing)."""

    codes: np.ndarray[Any, Any]
    categories: list[str]

    def values(self, missing: Any) -> np.ndarray[Any, Any]:
        """The values as an object array of ``str``, with ``missing`` for missing ones."""
        table = np.empty(len(self.categories) + 1, dtype=object)
        table[:] = [*self.categories, missing]
        return table[self.codes]  # type: ignore[no-any-return]  # -1 picks ``missing``, the last entry

    def mapped(self, table: np.ndarray[Any, Any], missing: Any) -> np.ndarray[Any, Any]:
        """The values through ``table`` (one entry per category), with ``missing`` for missing ones."""
        return np.append(table, np.asarray([missing], dtype=table.dtype))[self.codes]  # type: ignore[no-any-return]

    def arrow(self) -> pa.DictionaryArray:
        """The values as an Arrow dictionary array of text (nulls missing)."""
        indices = arrow_array(self.codes.astype(np.int32), missing=self.codes < 0)
        return pa.DictionaryArray.from_arrays(indices, arrow_strings(self.categories))


@dataclass
class ScoringBatch:
    """One normalised batch: the columns to write out and the model's feature values.

    ``table`` holds the input's columns (features typed by the schema, other columns as described in the
    module docstring). ``numeric`` maps numeric and boolean features to float64 arrays (NaN missing);
    ``categorical`` maps categorical features to :class:`CategoricalColumn`. Features absent from the input
    are in neither (all missing).
    """

    table: pa.Table
    numeric: dict[str, np.ndarray[Any, Any]]
    categorical: dict[str, CategoricalColumn]

    @property
    def rows(self) -> int:
        """Rows in the batch."""
        return int(self.table.num_rows)


class BatchNormalizer:
    """Turns raw batches with the given ``columns`` into :class:`ScoringBatch` es for ``schema``.

    Raises :class:`~fasttrack.errors.SchemaValidationError` at once when a feature the training data always
    had is absent, and for each batch with values of the wrong type or infinite numbers.
    """

    def __init__(self, schema: Schema, columns: Sequence[str], *, missing_markers: Sequence[str] | None = None):
        self.schema = schema
        self.columns = list(columns)
        markers = DEFAULT_MISSING_MARKERS if missing_markers is None else missing_markers
        self._markers = {m.strip().lower() for m in markers}
        self._marker_set = arrow_strings(sorted(self._markers))
        self._features = {f.name: f for f in schema.features}
        absent = [f.name for f in schema.features if f.name not in set(self.columns) and not f.nullable]
        if absent:
            raise SchemaValidationError([Violation(name, "required column is missing") for name in absent])

    def normalize(self, batch: Batch) -> ScoringBatch:
        """One raw batch, normalised; every problem in it raised at once."""
        arrays: list[Column] = []
        numeric: dict[str, np.ndarray[Any, Any]] = {}
        categorical: dict[str, CategoricalColumn] = {}
        violations: list[Violation] = []
        for name, array in zip(self.columns, batch.columns, strict=True):
            feature = self._features.get(name)
            if feature is None:
                arrays.append(self._passthrough(array))
            elif feature.kind == "categorical":
                column = self._categorical(array, feature)
                categorical[name] = column
                arrays.append(column.arrow())
            else:
                values, problems = self._numeric(array, feature)
                violations += [Violation(name, p) for p in problems]
                numbers = float_values(values)
                numeric[name] = numbers
                if feature.kind == "boolean":
                    arrays.append(pc.cast(values, pa.bool_()))
                else:
                    arrays.append(values)
        if violations:
            raise SchemaValidationError(violations)
        table = pa.Table.from_arrays(arrays, names=self.columns)
        return ScoringBatch(table=table, numeric=numeric, categorical=categorical)

    # -- one column per kind -------------------------------------------------------------------------------
    def _text(self, array: Column) -> Column:
        """Text stripped of surrounding spaces, with empty text and missing markers made missing."""
        if pa.types.is_dictionary(array.type):
            array = _decoded(array)
        if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
            array = pc.cast(array, pa.string())
        stripped = pc.utf8_trim_whitespace(array)
        marker = pc.is_in(pc.utf8_lower(stripped), value_set=self._marker_set)
        return pc.if_else(marker, arrow_scalar(None, stripped.type), stripped)

    def _passthrough(self, array: Column) -> Column:
        if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
            return self._text(array)
        return array

    def _numeric(self, array: Column, feature: FeatureSchema) -> tuple[Column, list[str]]:
        """float64 values (null missing) of a numeric or boolean feature, and what was wrong."""
        boolean = feature.kind == "boolean"
        kind = array.type
        if pa.types.is_dictionary(kind):
            array, kind = _decoded(array), array.type.value_type
        if pa.types.is_null(kind):
            return pa.nulls(len(array), pa.float64()), []
        if pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind):
            values = pc.cast(array, pa.float64())
            if boolean and not pa.types.is_boolean(kind):
                bad = pc.fill_null(pc.invert(pc.is_in(values, value_set=_ZERO_ONE)), _FALSE)
                return self._reject(array, values, bad, "expected true or false (or 0/1)")
            return self._finite(values)
        if not boolean:
            try:  # clean numbers (the usual case) convert at once; anything else takes the careful path below
                return self._finite(pc.cast(array, pa.float64()))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        text = self._text(array)
        if boolean:
            lower = pc.utf8_lower(text)
            flags = pc.if_else(
                pc.equal(lower, arrow_scalar("true", pa.string())),
                arrow_scalar(1.0, pa.float64()),
                pc.if_else(
                    pc.equal(lower, arrow_scalar("false", pa.string())),
                    arrow_scalar(0.0, pa.float64()),
                    arrow_scalar(None, pa.float64()),
                ),
            )
            # 0/1 written as numbers count too: cleaning turns such a column into numbers.
            numbers = self._parse_numbers(text)
            zero_one = pc.is_in(numbers, value_set=_ZERO_ONE)
            flags = pc.coalesce(flags, pc.if_else(zero_one, numbers, arrow_scalar(None, pa.float64())))
            bad = pc.and_(pc.is_valid(text), pc.is_null(flags))
            return self._reject(array, flags, bad, "expected true or false")
        numbers = self._parse_numbers(text)
        bad = pc.and_(pc.is_valid(text), pc.is_null(numbers))
        return self._reject(array, numbers, bad, "expected a number")

    @staticmethod
    def _parse_numbers(text: Column) -> Column:
        """Text as float64; text that is not a number becomes null (the fast path raises nothing)."""
        try:
            return pc.cast(text, pa.float64())
        except pa.ArrowInvalid:
            parsed = [_float_or_none(v) for v in text.to_pylist()]
            missing = np.asarray([v is None for v in parsed], dtype=bool)
            numbers = np.asarray([math.nan if v is None else v for v in parsed], dtype=np.float64)
            return arrow_array(numbers, missing=missing)

    def _reject(self, raw: Column, values: Column, bad: Column, expected: str) -> tuple[Column, list[str]]:
        count = pc.sum(bad).as_py() or 0
        if not count:
            return self._finite(values)
        shown_values = pc.unique(pc.utf8_trim_whitespace(pc.cast(pc.filter(raw, bad), pa.string()))).to_pylist()
        shown = ", ".join(repr(v) for v in shown_values[:3]) + (", ..." if len(shown_values) > 3 else "")
        problems = [f"{expected}, got {shown} ({count} rows)"]
        return values, problems

    @staticmethod
    def _finite(values: Column) -> tuple[Column, list[str]]:
        """The values with NaN made missing (``"nan"`` is a missing marker), and a problem per infinity."""
        nan = pc.is_nan(values)
        if pc.any(nan).as_py():
            values = pc.if_else(nan, arrow_scalar(None, pa.float64()), values)
        infinite = pc.sum(pc.is_inf(values)).as_py() or 0
        return values, ([f"{infinite} infinite values"] if infinite else [])

    def _categorical(self, array: Column, feature: FeatureSchema) -> CategoricalColumn:
        dictionary, indices = _dictionary_encoded(array)
        numeric_categories = feature.dtype.startswith(_NUMERIC_DTYPES)
        # Normalise the distinct values only (a few, however many rows), merging those that become equal.
        position: dict[str, int] = {}
        remap = [
            -1
            if (category := self._category(value, numeric_categories)) is None
            else position.setdefault(category, len(position))
            for value in dictionary.to_pylist()
        ]
        remap.append(-1)  # where nulls point
        codes = np.asarray(remap, dtype=np.intp)[int_values(indices, len(remap) - 1)]
        return CategoricalColumn(codes=codes, categories=list(position))

    def _category(self, value: Any, numeric_categories: bool) -> str | None:
        """One distinct value as the category text training saw (``None``: missing)."""
        if value is None:
            return None
        if isinstance(value, str):
            text = value.strip()
            if not text or text.lower() in self._markers:
                return None
            if numeric_categories:
                return _number_text(text) or text
            return text
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return None if math.isnan(value) else str(value).removesuffix(".0")
        return str(value)


def _decoded(array: Column) -> Column:
    """A dictionary column as the plain column of its values."""
    return pc.cast(array, array.type.value_type)


def _dictionary_encoded(array: Column) -> tuple[pa.Array, Column]:
    """A column's distinct values and, per row, the index of its value among them (null: missing)."""
    if isinstance(array, pa.ChunkedArray):
        if pa.types.is_dictionary(array.type):  # chunks may have dictionaries of their own
            array = _decoded(array)
        encoded = pc.dictionary_encode(array)
        if encoded.num_chunks == 0:
            return pa.nulls(0, array.type), pa.chunked_array([], pa.int32())
        dictionary = encoded.chunk(0).dictionary
        if all(chunk.dictionary.equals(dictionary) for chunk in encoded.chunks[1:]):  # pyarrow shares one
            return dictionary, pa.chunked_array([chunk.indices for chunk in encoded.chunks])
        array = array.combine_chunks()
    encoded = array if pa.types.is_dictionary(array.type) else pc.dictionary_encode(array)
    return encoded.dictionary, encoded.indices


def _float_or_none(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _number_text(text: str) -> str | None:
    """Numeric text as the category text cleaning gives its number (``"03"`` -> ``"3"``, ``"2.50"`` -> ``"2.5"``)."""
    try:
        return str(int(text))
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    return str(number).removesuffix(".0")
