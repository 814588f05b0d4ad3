"""Reading the inference log: one model's predictions and labels for a period, joined by prediction id.

The log's layout is :mod:`fasttrack.monitoring.log_layout`'s; this module only reads it. A read lists the model's
folder once, keeps the date partitions that can hold rows of the period (so a month of log costs a day's listing
when a day is asked for), reads every file's footer to unify their columns, and reads the rows of the period with
pyarrow's dataset scanner (threads, column projection, row-group statistics for the time filter). The log may be
a local folder or an fsspec URL (``s3://``, ``gs://``; the endpoint and retries as
:mod:`fasttrack.data.object_store` sets them for data).

Versions log different features: a file holds the ``input.*`` columns of the version that wrote it, and the read
takes the union of the files' columns, a column absent from a file being null in its rows (a feature an older
version did not have is missing there). A column whose type differs between files (a feature that changed kind
between versions) cannot be read as one column: that is a :class:`~fasttrack.errors.DataError` naming it.

Labels join predictions by ``prediction_id`` across workers and restarts: of the labels received for one id, the
first valid one (not null, earliest ``timestamp``, then the order of the files) wins and later ones are counted
as repeats, not used. Labels are read from the start of the period on with no end, since a label arrives after
its prediction, possibly after the period.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from fasttrack.data import object_store
from fasttrack.data.sniff import first_line, is_url
from fasttrack.errors import ConfigError, DataError
from fasttrack.monitoring import log_layout
from fasttrack.monitoring.log_layout import LABEL, PREDICTION_ID, TIMESTAMP, TIMESTAMP_TYPE, VERSION, Table

#: A file's partition is the UTC day of its first row, and a file may run past midnight: a period starting on a
#: day also reads the previous day's files (their rows outside the period are filtered out).
PARTITION_SLACK: Final = dt.timedelta(days=1)
_AGE = re.compile(r"(?P<count>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>s|m|min|h|d|w)\Z")
_UNITS: Final = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_instant(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """A point in time (UTC) from the command line: an ISO 8601 date or time, or an age before ``now``.

    ``2026-12-03`` (midnight UTC), ``2026-12-03T10:30`` (UTC when no offset is given), ``2026-12-03T10:30+01:00``,
    or ``30m``, ``12h``, ``7d``, ``2w`` ago. ``ConfigError`` for anything else.
    """
    value = text.strip()
    age = _AGE.match(value.lower())
    if age:
        seconds = float(age.group("count")) * _UNITS[age.group("unit")]
        return (now or dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=seconds)
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise ConfigError(
            f"cannot read {text!r} as a time: give an ISO date or time (2026-12-03, 2026-12-03T10:30) or an age "
            "(30m, 12h, 7d, 2w)"
        ) from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


@dataclass(frozen=True)
class Period:
    """A span of time, UTC: ``since`` included, ``until`` excluded; ``None`` leaves that side open."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ConfigError(f"the period is empty: since ({self.since:%Y-%m-%d %H:%M}) is not before until")

    def describe(self) -> str:
        """The period in words, for messages."""
        since = f"from {self.since:%Y-%m-%d %H:%M:%S}" if self.since else "from the start"
        until = f"until {self.until:%Y-%m-%d %H:%M:%S} UTC" if self.until else "until now"
        return f"{since} {until}"


@dataclass(frozen=True)
class LogFiles:
    """The files of one table of one model that a period's rows can be in."""

    filesystem: pafs.FileSystem
    paths: list[str]


@dataclass(frozen=True)
class LabelJoin:
    """Predictions with their labels: ``table`` is the predictions with a ``label`` column (null: no label)."""

    table: pa.Table
    #: Predictions with a label, and without one.
    labelled: int
    unlabelled: int
    #: Valid labels read (ids labelled more than once count once per label).
    labels: int
    #: Labels of an id already labelled: later than the first, not used.
    repeated: int
    #: Ids labelled whose prediction is not among the predictions read (outside the period, or not logged).
    orphans: int


class LogReader:
    """The inference log under ``root`` (a folder or an fsspec URL); :meth:`read` reads one model's rows."""

    def __init__(self, root: str, *, storage_options: dict[str, Any] | None = None) -> None:
        self.root = root.rstrip("/") or root
        if is_url(root):
            import fsspec

            object_store.apply_network_defaults()
            try:
                fs, path = fsspec.core.url_to_fs(root, **object_store.storage_options(root, storage_options))
            except ImportError as exc:
                raise DataError(
                    f"cannot open {root}: {exc} (install FastTrack's s3 or gcs extra: make install EXTRAS=s3)"
                ) from None
            except (ValueError, OSError) as exc:
                raise DataError(f"cannot open the inference log {root}: {first_line(exc)}") from None
            self.filesystem: pafs.FileSystem = pafs.PyFileSystem(pafs.FSSpecHandler(fs))
            self._base = str(path).rstrip("/")
        else:
            self.filesystem = pafs.LocalFileSystem()
            self._base = str(Path(root).expanduser().resolve())

    def files(self, table: Table, model: str, period: Period) -> LogFiles:
        """The complete files of ``table`` for ``model`` in the date partitions that can hold rows of ``period``."""
        folder = log_layout.model_folder(self._base, table, model)
        first = (period.since - PARTITION_SLACK).date() if period.since else None
        last = period.until.date() if period.until else None
        paths: list[str] = []
        for day_folder in self._listing(folder, pafs.FileType.Directory):
            day = log_layout.folder_date(day_folder)
            if day is None or (first is not None and day < first) or (last is not None and day > last):
                continue
            paths += [p for p in self._listing(day_folder, pafs.FileType.File) if log_layout.is_complete(p)]
        return LogFiles(self.filesystem, sorted(paths, key=lambda p: p.rsplit("/", 1)[-1]))

    def read(
        self,
        table: Table,
        model: str,
        period: Period,
        *,
        versions: list[str] | None = None,
        bounded: bool = True,
    ) -> pa.Table:
        """The rows of ``table`` for ``model`` in ``period`` (only ``versions`` when given), oldest file first.

        ``bounded=False`` reads from ``period.since`` on with no end (labels). Columns are the union of the files'
        (absent ones null); an empty table (no column) when there is no file.
        """
        span = period if bounded else Period(period.since, None)
        found = self.files(table, model, span)
        if not found.paths:
            return pa.table({})
        try:
            dataset = ds.dataset(found.paths, format="parquet", filesystem=found.filesystem)
            schema = _unified(
                [fragment.physical_schema for fragment in dataset.get_fragments()], self.describe(table, model)
            )
            dataset = ds.dataset(found.paths, schema=schema, format="parquet", filesystem=found.filesystem)
            return dataset.to_table(filter=_row_filter(span, versions, schema))
        except DataError:
            raise
        except (pa.ArrowException, OSError, ValueError) as exc:
            message = object_store.error_message(exc, self.root) if is_url(self.root) else None
            raise DataError(message or f"cannot read the inference log {self.root}: {first_line(exc)}") from None

    def exists(self) -> bool:
        """Whether anything is at the log's root (a missing folder, bucket or prefix is nothing)."""
        try:
            found = self.filesystem.get_file_info(self._base)
        except (pa.ArrowException, OSError, ValueError) as exc:
            message = object_store.error_message(exc, self.root) if is_url(self.root) else None
            raise DataError(message or f"cannot open the inference log {self.root}: {first_line(exc)}") from None
        return bool(found.type != pafs.FileType.NotFound)

    def describe(self, table: Table, model: str) -> str:
        """Where a model's table is, for messages."""
        return f"{self.root}/{table}, model {model}"

    def _listing(self, folder: str, kind: pafs.FileType) -> list[str]:
        """The entries of ``kind`` directly in ``folder`` (none when it does not exist)."""
        try:
            infos = self.filesystem.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
        except (pa.ArrowException, OSError, ValueError) as exc:
            message = object_store.error_message(exc, self.root) if is_url(self.root) else None
            raise DataError(message or f"cannot list the inference log {self.root}: {first_line(exc)}") from None
        return [info.path for info in infos if info.type == kind]


def first_labels(feedback: pa.Table) -> tuple[pa.Table, int, int]:
    """Of the valid labels of each prediction id, the first: ``(prediction_id, label)``, the labels read and the
    repeats left out.

    Valid: a label that is not null. First: the earliest ``timestamp``, then the order the rows were read in
    (files sort by the time of their first row): a later correction does not replace a label.
    """
    if feedback.num_columns == 0 or feedback.num_rows == 0:
        return pa.table({PREDICTION_ID: pa.array([], pa.string()), LABEL: pa.array([], pa.string())}), 0, 0
    valid = feedback.filter(pc.is_valid(feedback[LABEL]))
    # A stable sort keeps the file order between labels of one timestamp.
    ordered = valid.select([PREDICTION_ID, TIMESTAMP, LABEL]).sort_by([(TIMESTAMP, "ascending")])
    first = ordered.group_by(PREDICTION_ID, use_threads=False).aggregate([(LABEL, "first")])
    firsts = pa.table({PREDICTION_ID: first[PREDICTION_ID], LABEL: first[f"{LABEL}_first"]})
    return firsts, valid.num_rows, valid.num_rows - firsts.num_rows


def join_labels(predictions: pa.Table, feedback: pa.Table) -> LabelJoin:
    """The predictions with a ``label`` column: each id's first valid label (:func:`first_labels`), null when it
    has none. The predictions keep their order."""
    labels, read, repeated = first_labels(feedback)
    if predictions.num_columns == 0:
        return LabelJoin(predictions, 0, 0, read, repeated, labels.num_rows)
    ids = predictions[PREDICTION_ID]
    # A hash lookup of each prediction's id among the labelled ids: the predictions keep their order (a hash join
    # would not) and no row is copied but the label column.
    at = pc.index_in(ids, value_set=labels[PREDICTION_ID].combine_chunks())
    label_type = labels.schema.field(LABEL).type
    column = pc.take(labels[LABEL], at) if labels.num_rows else pa.nulls(predictions.num_rows, label_type)
    if LABEL in predictions.column_names:  # not a log column of predictions; keep the join's meaning clear
        raise DataError(f"the predictions already have a {LABEL!r} column")
    joined = predictions.append_column(LABEL, column)
    labelled = predictions.num_rows - at.null_count
    known = pc.is_in(labels[PREDICTION_ID], value_set=ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids)
    orphans = labels.num_rows - int(pc.sum(known.cast(pa.int64())).as_py() or 0)
    return LabelJoin(joined, labelled, predictions.num_rows - labelled, read, repeated, orphans)


def timestamps_us(table: pa.Table) -> np.ndarray[Any, Any]:
    """The ``timestamp`` column as microseconds since the epoch (``int64``)."""
    return table[TIMESTAMP].cast(TIMESTAMP_TYPE).cast(pa.int64()).to_numpy()  # type: ignore[no-any-return]


def versions_served(predictions: pa.Table) -> list[str]:
    """The versions that made the predictions, registered ones by number, the others (``local``) after them."""
    if predictions.num_columns == 0 or predictions.num_rows == 0:
        return []
    found = [str(v) for v in pc.unique(predictions[VERSION]).to_pylist() if v is not None]
    return sorted(found, key=lambda v: (0, int(v), "") if v.isdigit() else (1, 0, v))


# -------------------------------------------------------------------------------------------------- details
def _unified(schemas: list[pa.Schema], where: str) -> pa.Schema:
    """One schema for every file: the union of their columns, in the order first seen; a conflict is a DataError."""
    fields: dict[str, pa.Field] = {}
    for schema in schemas:
        for field in schema:
            seen = fields.get(field.name)
            if seen is None:
                fields[field.name] = field.with_nullable(True)
            elif not seen.type.equals(field.type):
                if pa.types.is_null(seen.type):
                    fields[field.name] = field.with_nullable(True)
                elif not pa.types.is_null(field.type):
                    raise DataError(
                        f"{where}: column {field.name!r} is {seen.type} in some files and {field.type} in others "
                        "(its feature changed kind between versions): read a period, or a version, with one kind"
                    )
    return pa.schema(list(fields.values()))


def _row_filter(period: Period, versions: list[str] | None, schema: pa.Schema) -> ds.Expression | None:
    conditions: list[ds.Expression] = []
    if period.since is not None:
        conditions.append(ds.field(TIMESTAMP) >= pa.scalar(period.since, TIMESTAMP_TYPE))
    if period.until is not None:
        conditions.append(ds.field(TIMESTAMP) < pa.scalar(period.until, TIMESTAMP_TYPE))
    if versions is not None and VERSION in schema.names:
        conditions.append(ds.field(VERSION).isin(versions))
    if not conditions:
        return None
    expression = conditions[0]
    for condition in conditions[1:]:
        expression = expression & condition
    return expression
