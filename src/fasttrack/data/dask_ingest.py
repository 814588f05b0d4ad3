"""Ingest on a Dask cluster: a glob or a folder of CSV or Parquet files cleaned out of core (docs/scale.md).

:func:`ingest_dask` gives what :func:`fasttrack.data.ingest.ingest` gives for the same rows in one file -- the
same cleaned values and dtypes, the same :class:`~fasttrack.data.clean.CleanReport`, the same fingerprint --
without any process holding the whole data set. Each figure is per-partition work on the workers plus a small
global decision on the client, made by the very functions the single-machine path uses
(:func:`~fasttrack.data.clean.value_stats`, :func:`~fasttrack.data.clean.value_plan`,
:func:`~fasttrack.data.clean.column_drops`), so the two engines cannot drift apart.

Reading keeps the single-machine reader's meaning. A CSV block is parsed by the same Arrow reader
(:func:`~fasttrack.data.ingest.csv_table`); Arrow infers a column's type from all its values, so the blocks'
types are first found one by one and then joined by Arrow's own order of inference (null, integer, boolean,
..., float, text), and every block is read again with the joined types: a column that is numeric in one file
and has a ``?`` in another is text everywhere, as it would be in one file. CSV files are split into blocks at
line ends, so a quoted value must not span lines (as with Dask's own ``read_csv``); compressed files are one
block each. Parquet files are one partition each, read like :func:`~fasttrack.data.ingest.read_table` reads one;
a column typed differently by different files takes the type concatenating them would give.

Passes over the data (each reads the files again rather than holding them): types (CSV only), value
statistics, rows (missing targets, row numbers, row hashes), duplicates (only when two rows hash alike),
column facts, then the fingerprint. Duplicate rows are found by a distributed count of row hashes; the rows
whose hash repeats -- every copy, nothing else -- are compared exactly on the client.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import pandas as pd

from fasttrack.data.clean import (
    CleanOptions,
    CleanReport,
    ColumnFacts,
    ValuePlan,
    ValueStats,
    apply_value_plan,
    column_drops,
    record_values,
    value_plan,
    value_stats,
)
from fasttrack.data.dask_read import (
    DEFAULT_BLOCKSIZE,
    as_task,
    csv_header,
    current_client,
    dataset_files,
    partitions,
    small_results,
)
from fasttrack.data.ingest import csv_table, read_parquet_bytes
from fasttrack.data.schema import Schema
from fasttrack.data.sniff import BOM
from fasttrack.errors import DataError
from fasttrack.features.rules import Rules

if TYPE_CHECKING:
    import dask.dataframe as dd
    from dask.delayed import Delayed
    from distributed import Client

#: Arrow's order of type inference for a CSV column, reduced to what the cleaned frame can tell apart (dates
#: and times are read as text, so they rank as text).
_NULL, _INT, _BOOL, _REAL, _TEXT = "null", "int64", "bool", "float64", "string"


@dataclass(frozen=True)
class DaskIngestResult:
    """A cleaned data set on a Dask cluster: the lazy cleaned frame (partitions in file and row order, each with
    its own index from 0), the cleaning report, the source, the fingerprint :func:`fasttrack.data.ingest.ingest`
    would give the same rows, the lineage and, with a target, the schema."""

    frame: dd.DataFrame
    report: CleanReport
    source: str
    fingerprint: str
    lineage: dict[str, str] = field(default_factory=dict)
    schema: Schema | None = None


def ingest_dask(
    source: str,
    *,
    target: str | None,
    options: CleanOptions | None = None,
    format: str | None = None,
    delimiter: str | None = None,
    storage_options: dict[str, Any] | None = None,
    blocksize: int = DEFAULT_BLOCKSIZE,
    task: Literal["auto", "classification", "regression"] = "auto",
    max_categories: int = 50,
    min_category_count: int = 5,
    client: Client | None = None,
) -> DaskIngestResult:
    """Read and clean ``source`` (a file, glob or folder of CSV or Parquet files, local or ``s3://``; see
    :func:`~fasttrack.data.dask_read.dataset_files`) on a Dask cluster, as :func:`~fasttrack.data.ingest.ingest`
    would clean the same rows in one file, and with a ``target`` describe it
    (:func:`~fasttrack.data.dask_describe.infer_schema_dask` with ``task``, ``max_categories`` and
    ``min_category_count``).

    ``client`` is the cluster to use (default: the current default client, e.g. inside
    :func:`fasttrack.cluster.dask_client`). Files must share their columns, in the same order.

    Raises
    ------
    DataError
        Unreadable or inconsistent files, no data rows, or what :func:`~fasttrack.data.clean.clean` refuses.
    """
    client = current_client(client)
    options = options or CleanOptions()
    store_options = _store_options(source, storage_options)
    files, fmt = dataset_files(source, format=format, storage_options=store_options)
    reader, parts = _reader(files, fmt, delimiter, store_options, blocksize)
    reader = reader.with_types(small_results(client, [reader.types_of(p) for p in parts]))
    frame, report = _clean(reader, parts, target, options, client)
    fingerprint = stream_fingerprint(frame, client)
    schema = None
    if target is not None:
        from fasttrack.data.dask_describe import infer_schema_dask

        schema = infer_schema_dask(
            frame,
            cleaned_target(target),
            task,
            max_categories=max_categories,
            min_category_count=min_category_count,
            dropped_columns=report.dropped_columns,
            missing_markers=options.missing_markers,
            client=client,
        )
    lineage = {"kind": "dataset", "format": fmt, "files": str(len(files))}
    return DaskIngestResult(
        frame=frame, report=report, source=source, fingerprint=fingerprint, lineage=lineage, schema=schema
    )


def cleaned_target(target: str) -> str:
    """The target's column name after cleaning: cleaning strips every column name, and
    :func:`~fasttrack.data.clean.clean` takes ``" y"`` to name column ``"y"``."""
    return target.strip()


def stream_fingerprint(frame: dd.DataFrame, client: Client | None = None) -> str:
    """:func:`fasttrack.data.ingest.fingerprint` of a Dask frame, equal to the single-machine digest of the same rows.

    The digest's header needs the row count, so the partitions' lengths come first; then each partition's row
    hashes are computed on the workers and fed to one sha256 in partition order, one partition at a time.
    """
    client = current_client(client)
    # The hashes stay on the workers until their turn; only their lengths come first, for the header.
    futures = client.compute([as_task(_row_hash_bytes)(p) for p in partitions(frame)])  # type: ignore[no-untyped-call]
    lengths = client.gather([client.submit(len, f, pure=False) for f in futures])  # type: ignore[no-untyped-call]
    rows = sum(lengths) // 8
    digest = hashlib.sha256()
    header = [[str(name), str(dtype)] for name, dtype in frame.dtypes.items()]
    digest.update(json.dumps([header, int(rows)]).encode())
    for future in futures:
        if len(frame.columns):
            digest.update(future.result())
        future.release()
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ reading
@dataclass(frozen=True)
class _Reader:
    """How a partition's bytes become its raw frame, shipped to the workers with each task (no local state).

    ``types`` is the joined column types (CSV: an Arrow type name per column; Parquet: a pandas dtype per
    column), ``None`` in the first pass that finds them.
    """

    fmt: str
    header: bytes
    delimiter: str
    names: tuple[str, ...]
    types: dict[str, str] | None = None
    nulls: frozenset[str] = frozenset()

    def with_types(self, found: Sequence[tuple[list[str], dict[str, tuple[str, int, bool]]]]) -> _Reader:
        """The reader with the types every partition agrees on (see the module docstring)."""
        names = list(self.names) if self.fmt == "csv" else found[0][0]
        for columns, _ in found:
            if columns != names:
                raise DataError(
                    f"the files do not share their columns: {', '.join(names)} in one, {', '.join(columns)} in another"
                )
        types: dict[str, str] = {}
        nulls = set()
        for col in names:
            seen = [part[1][col] for part in found]
            types[col] = _joined_csv_type(seen) if self.fmt == "csv" else _joined_dtype([s[0] for s in seen])
            if any(s[1] for s in seen):
                nulls.add(col)
        return _Reader(self.fmt, self.header, self.delimiter, tuple(names), types, frozenset(nulls))

    def types_of(self, part: Delayed) -> Delayed:
        return as_task(self._types_of)(part)

    def _types_of(self, part: tuple[str, bool, bytes]) -> tuple[list[str], dict[str, tuple[str, int, bool]]]:
        """A partition's columns and, per column, its own type, missing count and whether it holds only 0/1."""
        if self.fmt == "parquet":
            frame = self.frame(part)
            return [str(c) for c in frame.columns], {
                str(c): (str(frame[c].dtype), int(frame[c].isna().sum()), False) for c in frame.columns
            }
        table = self._table(part, None)
        found: dict[str, tuple[str, int, bool]] = {}
        import pyarrow as pa
        import pyarrow.compute as pc

        for name, column in zip(table.column_names, table.columns, strict=True):
            kind = _arrow_kind(column.type)
            zero_one = False
            if kind == _INT:
                # Arrow reads 0/1 as booleans too, so such a column joins a true/false one as boolean.
                zero_one = bool(pc.all(pc.is_in(column, value_set=pa.array([0, 1]))).as_py() is not False)
            found[name] = (kind, column.null_count, zero_one)
        return table.column_names, found

    def frame(self, part: tuple[str, bool, bytes]) -> pd.DataFrame:
        """A partition's raw frame, with the joined types (once they are known)."""
        name, _, data = part
        if self.fmt == "parquet":
            frame = read_parquet_bytes(data, name)
            if self.types is not None:
                wrong = {c: t for c, t in self.types.items() if str(frame[c].dtype) != t}
                frame = frame.astype(wrong) if wrong else frame
            return frame
        import pyarrow as pa

        types = None if self.types is None else {c: pa.type_for_alias(t) for c, t in self.types.items()}
        frame = cast("pd.DataFrame", self._table(part, types).to_pandas())
        for col in self.nulls if self.fmt == "csv" else ():
            # One block may have no missing value where another does; the whole column's dtype decides.
            if self.types is not None and self.types[col] == _INT:
                frame[col] = frame[col].astype("float64")
            elif self.types is not None and self.types[col] == _BOOL:
                frame[col] = frame[col].astype(object)
        return frame

    def _table(self, part: tuple[str, bool, bytes], types: dict[str, Any] | None) -> Any:
        name, first, data = part
        if first:
            data = data.removeprefix(BOM)
            if not data.strip():
                raise DataError(f"empty file: {name}")
        else:
            data = self.header + data
        table = csv_table(data, name, self.delimiter, types)
        if first and table.column_names != list(self.names):
            raise DataError(f"{name} has other columns than the first file: {', '.join(table.column_names)}")
        return table


def _reader(
    files: list[str], fmt: str, delimiter: str | None, storage_options: dict[str, Any], blocksize: int
) -> tuple[_Reader, list[Delayed]]:
    """The reader of ``files`` and one task per partition giving ``(file name, first block of its file, bytes)``."""
    from dask.bytes.core import read_bytes

    if fmt == "parquet":
        _, blocks = read_bytes(files, blocksize=None, sample=False, **storage_options)  # type: ignore[no-untyped-call]
        parts = [as_task(_part)(name, True, file_blocks[0]) for name, file_blocks in zip(files, blocks, strict=True)]
        return _Reader(fmt, b"", "", ()), parts
    compressed = any(path.endswith(".gz") for path in files)
    _, blocks = read_bytes(  # type: ignore[no-untyped-call]
        files,
        delimiter=b"\n",
        blocksize=None if compressed else blocksize,
        sample=False,
        compression="infer" if compressed else None,
        **storage_options,
    )
    header, sep, names = csv_header(files[0], delimiter, storage_options)
    parts = [
        as_task(_part)(name, index == 0, block)
        for name, file_blocks in zip(files, blocks, strict=True)
        for index, block in enumerate(file_blocks)
    ]
    return _Reader(fmt, header, sep, tuple(names)), parts


def _part(name: str, first: bool, data: bytes) -> tuple[str, bool, bytes]:
    return name, first, data


def _arrow_kind(kind: Any) -> str:
    import pyarrow as pa

    if pa.types.is_null(kind):
        return _NULL
    if pa.types.is_integer(kind):
        return _INT
    if pa.types.is_boolean(kind):
        return _BOOL
    if pa.types.is_floating(kind):
        return _REAL
    return _TEXT


def _joined_csv_type(seen: list[tuple[str, int, bool]]) -> str:
    """The type Arrow infers for a column from all its blocks: the first of null, integer, boolean, float, text
    that reads every block (a block read as integers reads as booleans only when it holds nothing but 0/1)."""
    kinds = {kind for kind, _, _ in seen}
    if kinds <= {_NULL}:
        return _NULL
    if kinds <= {_NULL, _INT}:
        return _INT
    if all(kind in (_NULL, _BOOL) or (kind == _INT and zero_one) for kind, _, zero_one in seen):
        return _BOOL
    if kinds <= {_NULL, _INT, _REAL}:
        return _REAL
    return _TEXT


def _joined_dtype(dtypes: list[str]) -> str:
    """The dtype concatenating Parquet files' columns gives: theirs when they agree, ``float64`` for integers and
    floats, else Python objects (the cleaning step then reads them as text, booleans or numbers)."""
    found = set(dtypes)
    if len(found) == 1:
        return dtypes[0]
    if found <= {"int64", "float64"}:
        return "float64"
    return "object"


def _store_options(source: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    from fasttrack.data import object_store

    if object_store.is_object_store_url(source):
        object_store.apply_network_defaults()
        return object_store.storage_options(source, storage_options)
    return dict(storage_options or {})


# ------------------------------------------------------------------------------------------------ cleaning
@dataclass(frozen=True)
class _Cleaning:
    """The cleaning decisions taken so far, applied to one partition at a time on the workers."""

    reader: _Reader
    names: tuple[str, ...]
    markers: tuple[str, ...]
    target: str | None = None
    plans: dict[str, ValuePlan] | None = None
    duplicates: dict[int, np.ndarray] = field(default_factory=dict)
    drop: tuple[str, ...] = ()

    def renamed(self, part: tuple[str, bool, bytes]) -> pd.DataFrame:
        return self.reader.frame(part).set_axis(list(self.names), axis=1).reset_index(drop=True)

    def converted(self, part: tuple[str, bool, bytes]) -> pd.DataFrame:
        """The partition's values cleaned by the column plans (before any row is dropped)."""
        frame = self.renamed(part)
        rules = Rules(self.markers)
        plans = self.plans or {}
        return pd.DataFrame({col: apply_value_plan(frame[col], plans[col], rules) for col in frame.columns})

    def rows(self, part: tuple[str, bool, bytes]) -> pd.DataFrame:
        """The converted partition without the rows missing their target."""
        frame = self.converted(part)
        if self.target is not None:
            frame = frame[frame[self.target].notna()]
        return frame.reset_index(drop=True)

    def cleaned(self, part: tuple[str, bool, bytes], index: int) -> pd.DataFrame:
        """The partition fully cleaned: rows without a target and duplicates dropped, dropped columns gone."""
        frame = self.rows(part)
        positions = self.duplicates.get(index)
        if positions is not None and positions.size:
            frame = frame.drop(index=frame.index[positions]).reset_index(drop=True)
        return frame.drop(columns=list(self.drop))


def _clean(
    reader: _Reader, parts: list[Delayed], target: str | None, options: CleanOptions, client: Client
) -> tuple[dd.DataFrame, CleanReport]:
    """:func:`fasttrack.data.clean.clean`, pass by pass over the partitions (see the module docstring)."""
    import dask.dataframe as dd

    from fasttrack.data.clean import _strip_names

    raw_names = list(reader.names)
    meta = pd.DataFrame(columns=raw_names)
    report = CleanReport(rows_in=0, columns_in=len(raw_names))
    names = list(_strip_names(meta, report).columns)
    if target is not None:
        target = target if target in names else target.strip()
        if target not in names:
            raise DataError(f"target column {target!r} not found; columns are: {', '.join(names)}")
    cleaning = _Cleaning(reader, tuple(names), tuple(options.missing_markers), target)

    # Values: statistics per partition, one plan per column.
    rules = Rules(options.missing_markers)
    found = small_results(client, [as_task(_value_stats)(cleaning, p, rules) for p in parts])
    report.rows_in = sum(rows for rows, _ in found)
    if report.rows_in == 0:
        raise DataError("the data set has a header but no data rows")
    plans: dict[str, ValuePlan] = {}
    for col in names:
        stats = _merged([part[col] for _, part in found])
        plans[col] = value_plan(stats)
        record_values(col, stats, plans[col], report)
    cleaning = _replace(cleaning, plans=plans)

    # Rows: targets missing, row-number columns, and row hashes for duplicates.
    integer = [c for c in names if plans[c].kind == "keep" or plans[c].dtype == "int64"]
    row_stats: list[Any] = [as_task(_row_stats)(cleaning, p, tuple(integer)) for p in parts]
    hashes = dd.from_delayed([r[2] for r in row_stats], meta=pd.Series(dtype="uint64"), verify_meta=False)
    repeated_counts = hashes.value_counts(split_out=max(1, len(parts) // 8))
    repeated_counts = repeated_counts[repeated_counts > 1]
    rows, repeated = small_results(client, [[r[:2] for r in row_stats], repeated_counts.to_delayed()])
    repeated = pd.concat(repeated) if repeated else pd.Series(dtype="int64")
    rows = [(int(missing), sequence) for missing, sequence in rows]
    missing_target = sum(missing for missing, _ in rows)
    if target is not None:
        report.rows_without_target_dropped = missing_target
        if missing_target == report.rows_in:
            raise DataError(f"no rows left: every row is missing the target {target!r}")
        if missing_target:
            report.notes.append(f"dropped {missing_target} rows without a target value")
    sequences = {col for col in integer if _is_row_number([sequence[col] for _, sequence in rows])}

    if options.drop_duplicates and len(repeated):
        duplicates = _duplicates(cleaning, parts, set(repeated.index.tolist()), client)
        report.duplicates_dropped = sum(int(p.size) for p in duplicates.values())
        if report.duplicates_dropped:
            report.notes.append(f"dropped {report.duplicates_dropped} exact duplicate rows")
        cleaning = _replace(cleaning, duplicates=duplicates)

    # Columns: what the drop rules ask, then the drops.
    facts, meta = _column_facts(cleaning, parts, names, target, options, sequences, client)
    drop = column_drops(names, target, options, facts.__getitem__, report)
    cleaning = _replace(cleaning, drop=tuple(drop))
    out_meta = meta.drop(columns=list(drop))
    frame = dd.from_delayed(
        [as_task(cleaning.cleaned)(p, i) for i, p in enumerate(parts)], meta=out_meta, verify_meta=False
    )
    report.rows_out = report.rows_in - missing_target - report.duplicates_dropped
    report.columns_out = len(out_meta.columns)
    return frame, report


def _value_stats(cleaning: _Cleaning, part: tuple[str, bool, bytes], rules: Rules) -> tuple[int, dict[str, ValueStats]]:
    frame = cleaning.renamed(part)
    return len(frame), {col: value_stats(frame[col], rules) for col in frame.columns}


def _merged(stats: list[ValueStats]) -> ValueStats:
    merged = stats[0]
    for more in stats[1:]:
        merged = merged.merge(more)
    return merged


def _row_stats(
    cleaning: _Cleaning, part: tuple[str, bool, bytes], integer: tuple[str, ...]
) -> tuple[int, dict[str, tuple[int, Any, Any, bool]], pd.Series]:
    """A partition's count of missing targets, per integer column ``(rows, first, last, counts up by one
    inside)`` (``rows`` -1 when a value is missing), and the row hashes of its rows that have a target."""
    frame = cleaning.converted(part)
    missing = int(frame[cleaning.target].isna().sum()) if cleaning.target is not None else 0
    sequence: dict[str, tuple[int, Any, Any, bool]] = {}
    for col in integer:
        s = frame[col]
        if not pd.api.types.is_integer_dtype(s.dtype) or s.isna().any():
            sequence[col] = (-1, None, None, False)
            continue
        values = s.to_numpy(dtype="int64")
        inside = bool((np.diff(values) == 1).all())
        sequence[col] = (
            len(values),
            int(values[0]) if len(values) else None,
            int(values[-1]) if len(values) else None,
            inside,
        )
    if cleaning.target is not None:
        frame = frame[frame[cleaning.target].notna()]
    hashes = pd.util.hash_pandas_object(frame, index=False).reset_index(drop=True)
    return missing, sequence, hashes


def _is_row_number(parts: list[tuple[int, Any, Any, bool]]) -> bool:
    """:func:`fasttrack.data.clean.is_row_number` of a whole column from its partitions' ``_row_stats``."""
    if any(rows < 0 or not inside for rows, _, _, inside in parts):
        return False
    filled = [(first, last) for rows, first, last, _ in parts if rows > 0]
    if sum(rows for rows, _, _, _ in parts) < 2:
        return False
    return all(after[0] == before[1] + 1 for before, after in itertools.pairwise(filled))


def _duplicates(cleaning: _Cleaning, parts: list[Delayed], repeated: set[int], client: Client) -> dict[int, np.ndarray]:
    """Per partition, the positions (after rows without a target) of rows that repeat an earlier row exactly.

    Only rows whose hash is repeated can be duplicates; those rows, every copy, come to the client, where
    pandas' ``duplicated`` compares them in data order, exactly as on one machine.
    """
    candidates = small_results(client, [as_task(_candidates)(cleaning, p, repeated) for p in parts])
    table = pd.concat(
        [frame.assign(_part=index) for index, frame in enumerate(candidates) if len(frame)], ignore_index=True
    )
    duplicated = table.drop(columns=["_part", "_position"]).duplicated()
    drop = table.loc[duplicated.to_numpy(), ["_part", "_position"]]
    return {int(part): group["_position"].to_numpy(dtype="int64") for part, group in drop.groupby("_part", sort=True)}


def _candidates(cleaning: _Cleaning, part: tuple[str, bool, bytes], repeated: set[int]) -> pd.DataFrame:
    frame = cleaning.rows(part)
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    chosen = np.isin(hashes, np.fromiter(repeated, dtype="uint64", count=len(repeated)))
    return frame[chosen].assign(_position=np.flatnonzero(chosen))


def _column_facts(
    cleaning: _Cleaning,
    parts: list[Delayed],
    names: list[str],
    target: str | None,
    options: CleanOptions,
    sequences: set[str],
    client: Client,
) -> tuple[dict[str, ColumnFacts], pd.DataFrame]:
    """Each column's :class:`~fasttrack.data.clean.ColumnFacts` on the data after the row drops, and the empty
    frame of that data (its columns and dtypes)."""
    import dask.dataframe as dd

    def deduplicated(part: Delayed, index: int) -> Delayed:
        return as_task(_Cleaning.cleaned)(cleaning, part, index)

    frames = [deduplicated(p, i) for i, p in enumerate(parts)]
    meta = _meta(cleaning, parts[0], client)
    # Whether a text column's values are all different is counted in the same pass as the other facts, for every
    # text column that may need it, so the data is read once here rather than twice.
    text = [
        col
        for col in names
        if options.drop_identifiers
        and col != target
        and not (pd.api.types.is_numeric_dtype(meta[col].dtype) or pd.api.types.is_bool_dtype(meta[col].dtype))
    ]
    whole = dd.from_delayed(frames, meta=meta, verify_meta=False)
    largest = [whole[col].value_counts(split_out=max(1, len(parts) // 8)).max().to_delayed() for col in text]
    found, most = small_results(client, [[as_task(_part_facts)(f) for f in frames], largest])
    present = {col: sum(f[col][0] for f in found) for col in names}
    firsts = {col: next((f[col][1] for f in found if f[col][0]), None) for col in names}
    distinct: dict[str, int] = {}
    for col in names:
        values: list[Any] = []
        for f in found:
            values += [v for v in f[col][2] if v not in values]
            if len(values) > 1:
                break
        distinct[col] = len(values)
    unique = {col: top is not None and not pd.isna(top) and int(top) == 1 for col, top in zip(text, most, strict=True)}
    return {
        col: ColumnFacts(
            present=present[col],
            distinct=distinct[col],
            first=firsts[col],
            row_number=col in sequences,
            unique_text=unique.get(col, False) and present[col] >= 2,
        )
        for col in names
    }, meta


def _part_facts(frame: pd.DataFrame) -> dict[str, tuple[int, Any, list[Any], bool]]:
    """Per column: non-missing values, the first, up to two distinct ones, and whether it is numbers or booleans."""
    found: dict[str, tuple[int, Any, list[Any], bool]] = {}
    for col in frame.columns:
        s = frame[col]
        values = s.dropna()
        numeric = pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)
        first = values.iloc[0] if len(values) else None
        found[col] = (len(values), first, list(values.unique()[:2]), numeric)
    return found


def _meta(cleaning: _Cleaning, part: Delayed, client: Client) -> pd.DataFrame:
    """The cleaned frame's empty frame (its columns and dtypes), taken from the first partition."""
    head = small_results(client, as_task(cleaning.cleaned)(part, 0))
    return cast("pd.DataFrame", head.iloc[:0])


def _replace(cleaning: _Cleaning, **changes: Any) -> _Cleaning:
    from dataclasses import replace

    return replace(cleaning, **changes)


def _row_hash_bytes(frame: pd.DataFrame) -> bytes:
    return bytes(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
