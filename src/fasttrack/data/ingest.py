"""Reading tabular data (CSV, JSON, JSON Lines, Parquet; paths, fsspec URLs, SQL queries), then cleaning it.

:func:`read_table` turns a file into a pandas frame with the format's natural types and refuses bad input with
one clear :class:`~fasttrack.errors.DataError` line; :func:`ingest` adds the cleaning step, a fingerprint of the
result and the source's lineage (an object store's ETag and version id), so a training run can record exactly
which data it saw. :func:`ingest_query` does the same for a SQL query on a database.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from fasttrack.data import object_store
from fasttrack.data.clean import CleanOptions, CleanReport, clean
from fasttrack.data.schema import Schema
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
from fasttrack.errors import ConfigError, DataError


@dataclass(frozen=True)
class IngestResult:
    """A cleaned data set with its cleaning report, where it came from, and a fingerprint of its content.

    ``lineage`` holds what else identifies the source: ``kind`` (``file``, ``url``, ``object`` or ``sql``), an
    object store's ``etag`` and ``version_id``, a SQL source's password-free ``db`` URL and ``query``.
    ``schema`` is the schema inferred for a target (:func:`fasttrack.ingest` with ``target``), else ``None``.
    """

    frame: pd.DataFrame
    report: CleanReport
    source: str
    fingerprint: str
    lineage: dict[str, str] = field(default_factory=dict)
    schema: Schema | None = None


def read_table(
    source: str | Path,
    *,
    format: str | None = None,
    delimiter: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Read a CSV, JSON, JSON Lines or Parquet file from a local path or an fsspec URL into a pandas frame.

    The format comes from ``format`` (``csv``, ``json``, ``jsonl``, ``parquet``) or else from the file
    extension, optionally followed by ``.gz``. CSV delimiters are sniffed among ``,`` ``;`` tab and ``|`` unless
    ``delimiter`` is given; values keep the format's natural types (empty CSV strings stay empty strings, so
    :func:`~fasttrack.data.clean.clean` decides what is missing), except dates and times, which are kept as
    text because the schema has no date kind. Every problem with the input -- a missing, empty or headerless
    file, an unknown format, content that is not what the extension says -- raises a one-line ``DataError``.
    """
    return _read_source(str(source), format, delimiter, storage_options)[0]


def _read_source(
    name: str, format: str | None, delimiter: str | None, storage_options: dict[str, Any] | None
) -> tuple[pd.DataFrame, dict[str, str]]:
    """:func:`read_table`, also returning the source's lineage (see :class:`IngestResult`)."""
    fmt, compressed = resolve_format(name, format)
    data, lineage = _read_bytes(name, storage_options)
    if compressed:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{name} is not valid gzip data: {exc}") from None
    data = data.removeprefix(BOM)
    if not data.strip():
        raise DataError(f"empty file: {name}")
    if fmt == "csv":
        sep = delimiter or ("\t" if stem_suffix(name) == "tsv" else None)
        frame = _read_csv(data, name, sep)
    elif fmt == "parquet":
        frame = read_parquet_bytes(data, name)
    else:
        frame = _read_json(data, name, lines=fmt == "jsonl")
    if frame.shape[1] == 0:
        raise DataError(f"{name} has no columns")
    if len(frame) == 0:
        raise DataError(f"{name} has a header but no data rows")
    return frame, lineage


def fingerprint(frame: pd.DataFrame) -> str:
    """A sha256 hex digest of a frame's column names, dtypes and values, in row order (the index is ignored).

    Identical data gives the identical digest in any process, so the digest can identify a training set in
    run metadata and tell whether two runs saw the same data.
    """
    digest = hashlib.sha256()
    header = [[str(name), str(dtype)] for name, dtype in frame.dtypes.items()]
    digest.update(json.dumps([header, len(frame)]).encode())
    if frame.shape[1] and len(frame):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def ingest(
    source: str | Path,
    *,
    target: str | None,
    options: CleanOptions | None = None,
    format: str | None = None,
    delimiter: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> IngestResult:
    """Read a data file with :func:`read_table`, clean it with :func:`~fasttrack.data.clean.clean`, fingerprint it.

    ``target`` names the column to predict (``None`` for data without one, e.g. data to score); rows without
    a target are dropped and the target is never dropped as a constant or identifier column.
    """
    raw, lineage = _read_source(str(source), format, delimiter, storage_options)
    frame, report = clean(raw, target, options)
    return IngestResult(frame=frame, report=report, source=str(source), fingerprint=fingerprint(frame), lineage=lineage)


def ingest_query(query: str, db: str, *, target: str | None, options: CleanOptions | None = None) -> IngestResult:
    """Run a SQL query on a database (a SQLAlchemy URL) and clean and fingerprint the result like :func:`ingest`.

    The result's ``source`` and lineage hold the URL without its password, and the query.
    """
    from fasttrack.data.sql import read_sql, redact_url

    raw = read_sql(query, db)
    frame, report = clean(raw, target, options)
    safe = redact_url(db)
    return IngestResult(
        frame=frame,
        report=report,
        source=safe,
        fingerprint=fingerprint(frame),
        lineage={"kind": "sql", "db": safe, "query": query},
    )


def _read_bytes(name: str, storage_options: dict[str, Any] | None) -> tuple[bytes, dict[str, str]]:
    # Data sets of this tool fit in memory; reading bytes once lets every format share the checks below.
    if not is_url(name):
        path = local_file(name)
        try:
            return path.read_bytes(), {"kind": "file"}
        except OSError as exc:
            raise DataError(f"cannot read {name}: {exc.strerror or exc}") from None
    if not object_store.is_object_store_url(name):
        return _read_url(name, storage_options), {"kind": "url"}
    object_store.apply_network_defaults()
    try:
        fs, path = fsspec.core.url_to_fs(name, **object_store.storage_options(name, storage_options))
        # info() first: it tells a missing bucket from a missing key, and gives the object's ETag and version.
        info = fs.info(path)
        if info.get("type") == "directory":
            raise DataError(f"{name} is a folder, not a file")
        data: bytes = fs.cat_file(path)
    except DataError:
        raise
    except ImportError as exc:
        raise DataError(
            f"cannot open {name}: {exc} (install FastTrack's s3 or gcs extra: make install EXTRAS=s3)"
        ) from None
    except Exception as exc:  # s3fs, gcsfs and botocore raise many types; each becomes one line or is re-raised
        message = object_store.error_message(exc, name)
        if message is None and not (isinstance(exc, OSError | ValueError) or object_store.is_object_store_error(exc)):
            raise
        raise DataError(message or f"cannot read {name}: {first_line(exc)}") from None
    return data, {"kind": "object", **object_store.object_identity(info)}


def _read_url(name: str, storage_options: dict[str, Any] | None) -> bytes:
    try:
        with fsspec.open(name, "rb", **(storage_options or {})) as handle:
            data: bytes = handle.read()
    except FileNotFoundError:
        raise DataError(f"file not found: {name}") from None
    except IsADirectoryError:
        raise DataError(f"{name} is a folder, not a file") from None
    except ImportError as exc:
        raise DataError(f"cannot open {name}: {exc}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {name}: {exc}") from None
    return data


def _read_csv(data: bytes, name: str, delimiter: str | None) -> pd.DataFrame:
    frame: pd.DataFrame = csv_table(data, name, delimiter).to_pandas()
    return frame


def csv_table(
    data: bytes, name: str, delimiter: str | None, column_types: dict[str, pa.DataType] | None = None
) -> pa.Table:
    """CSV bytes (a header line, then rows) as the Arrow table :func:`read_table` makes its frame from: types
    inferred by Arrow, dates and times kept as text, unless ``column_types`` sets every column's type (how the
    Dask engine reads each block with the types the whole data set infers, :mod:`fasttrack.data.dask_ingest`)."""
    kind = binary_kind(data)
    if kind:
        raise DataError(f"{name} is not CSV text (it looks like {kind})")
    if delimiter is None:
        delimiter = sniff_delimiter(data[:SNIFF_BYTES].decode("utf-8", "replace"), len(data) > SNIFF_BYTES)
    if len(delimiter) != 1:
        raise DataError(f"a CSV delimiter must be one character, got {delimiter!r}")
    if not data.endswith((b"\n", b"\r")):
        # pyarrow sees a lone header line without a newline as an empty file; the newline makes it a header.
        data += b"\n"
    parse = pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=b'"' in data)
    # Empty strings stay strings: the cleaning step decides which values are missing, with its markers.
    convert = pa_csv.ConvertOptions(
        strings_can_be_null=False, quoted_strings_can_be_null=False, column_types=column_types or {}
    )
    try:
        table = pa_csv.read_csv(pa.BufferReader(data), parse_options=parse, convert_options=convert)
        temporal = [f.name for f in table.schema if pa.types.is_temporal(f.type)]
        if temporal:
            # Read dates and times again as text, exactly as written (the schema has no date kind).
            convert.column_types = dict.fromkeys(temporal, pa.string())
            table = pa_csv.read_csv(pa.BufferReader(data), parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as exc:
        raise DataError(f"{name} is not valid CSV (expected UTF-8 text with a header row): {first_line(exc)}") from None
    # pyarrow reads a column with invalid UTF-8 as bytes rather than failing.
    undecodable = [f.name for f in table.schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
    if undecodable:
        raise DataError(f"{name} is not UTF-8 text (column {undecodable[0]!r} has other bytes); save it as UTF-8")
    names = [n.strip() for n in table.column_names]
    if all(is_number(n) for n in names):
        raise DataError(
            f"{name} has no header row: its first line ({delimiter.join(names)[:80]}) looks like data; "
            "add a first line of column names"
        )
    return table


def read_parquet_bytes(data: bytes, name: str) -> pd.DataFrame:
    """A Parquet file's bytes as the frame :func:`read_table` gives (a named pandas index becomes a column)."""
    if not data.startswith(b"PAR1"):
        looks = binary_kind(data) or "text"
        raise DataError(f"{name} is not a Parquet file (it looks like {looks})")
    try:
        frame: pd.DataFrame = pq.read_table(pa.BufferReader(data)).to_pandas()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"{name} is not a valid Parquet file: {first_line(exc)}") from None
    if isinstance(frame.index, pd.RangeIndex):
        return frame
    # A named index written by pandas is data (e.g. an id); an unnamed one is only row labels.
    return frame.reset_index(drop=all(n is None for n in frame.index.names))


def _read_json(data: bytes, name: str, *, lines: bool) -> pd.DataFrame:
    kind = binary_kind(data)
    if kind:
        raise DataError(f"{name} is not JSON (it looks like {kind})")
    if lines:
        records: list[Any] = []
        for number, line in enumerate(data.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise DataError(f"{name} line {number} is not valid JSON: {exc}") from None
            if not isinstance(record, dict):
                raise DataError(f"{name} line {number}: expected a JSON object, got {type(record).__name__}")
            records.append(record)
        return pd.DataFrame.from_records(records)
    try:
        loaded = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DataError(f"{name} is not valid JSON: {exc}") from None
    expected = 'expected an array of records ([{"col": value}, ...]) or an object of columns ({"col": [...]})'
    if isinstance(loaded, list):
        if not all(isinstance(r, dict) for r in loaded):
            raise DataError(f"{name}: {expected}; the array holds non-objects")
        if not loaded:
            raise DataError(f"{name} has no records (an empty JSON array)")
        return pd.DataFrame.from_records(loaded)
    if isinstance(loaded, dict) and all(isinstance(c, list | dict) for c in loaded.values()):
        try:
            frame = pd.DataFrame(loaded)
        except ValueError as exc:
            raise DataError(f"{name}: the columns do not line up: {first_line(exc)}") from None
        return frame.reset_index(drop=True)
    raise DataError(f"{name}: {expected}; got {type(loaded).__name__}")


def frame_suffix(path: str | Path) -> str:
    """The extension :func:`save_frame` writes ``path`` by; ``ConfigError`` for one it cannot write (checked before
    long work, so a typo fails at once)."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv", ".jsonl", ".ndjson", ".json"):
        raise ConfigError(f"cannot write {path}: use .parquet, .csv, .json or .jsonl")
    return suffix


def save_frame(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a frame as its extension says (``.parquet``, ``.csv``, ``.json``, ``.jsonl``), atomically.

    The file appears complete or not at all: it is written beside its final name and renamed into place.
    """
    path = Path(path)
    suffix = frame_suffix(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if suffix in (".parquet", ".pq"):
            frame.to_parquet(tmp, index=False)
        elif suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_json(tmp, orient="records", lines=suffix != ".json")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
