"""The inference log's layout: where its files go and what their columns are. The one owner of both.

The log is a folder (local, or an ``s3://`` / ``gs://`` prefix) of Parquet files in two tables, partitioned the Hive
way by model and UTC date, so that pyarrow, pandas, DuckDB, Spark or Athena read it as it is::

    ROOT/predictions/model=<name>/date=2026-12-03/part-20261203T101500Z-<pid>-<seq>-<random>.parquet
    ROOT/feedback/model=<name>/date=2026-12-03/part-....parquet

Partition values are percent-encoded (pyarrow's default ``segment_encoding="uri"`` decodes them). The partition
columns ``model`` and ``date`` are in the path only, never inside the files. File names sort by the time of their
first row and carry the writing process's id, a sequence number and random digits, so workers and restarts never
collide. A file is complete when it exists under its name: writers write aside and rename (or upload whole).

Predictions (one row per predicted row):

- ``prediction_id`` (string): the id the server answered (``X-Prediction-Id``; ``{base}-{i}`` for batch rows);
- ``timestamp`` (timestamp, microseconds, UTC): when the prediction was made;
- ``version`` (string): the registered version that made it (``local`` for a model folder served directly);
- ``input.<feature>``: the validated input, one column per feature of that version's schema: ``float64`` for
  numeric and boolean features (booleans as 0.0 / 1.0), ``string`` for categorical ones; null for missing;
- ``prediction``: the class label as text (classifiers: :func:`~fasttrack.features.rules.category_text`) or the
  predicted value as ``float64`` (regressors);
- ``proba.<label>`` (``float64``, classifiers): the probability of each class, one column per label as text.

Feedback (one row per label received by ``POST /feedback``, except labels refused as ``invalid``):

- ``prediction_id`` (string), ``timestamp`` (as above: when the label arrived);
- ``version`` (string): the version served by the process that received the label;
- ``label``: the true class as text (classifiers) or the true value as ``float64`` (regressors);
- ``outcome`` (string): what that process's in-memory window answered (``matched``, ``unknown``, ``expired``,
  ``duplicate``). The log joins labels to predictions by id across workers and restarts, whatever the outcome.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from typing import Final, Literal
from urllib.parse import quote

import pyarrow as pa

from fasttrack.data.schema import FeatureSchema

Table = Literal["predictions", "feedback"]
#: The two tables of the log, each a folder under the root.
TABLES: Final[tuple[Table, ...]] = ("predictions", "feedback")

PREDICTION_ID: Final = "prediction_id"
TIMESTAMP: Final = "timestamp"
VERSION: Final = "version"
PREDICTION: Final = "prediction"
LABEL: Final = "label"
OUTCOME: Final = "outcome"
#: Partition keys (in the path, not the files).
MODEL: Final = "model"
DATE: Final = "date"
INPUT_PREFIX: Final = "input."
PROBA_PREFIX: Final = "proba."

TIMESTAMP_TYPE: Final = pa.timestamp("us", tz="UTC")


def input_column(feature: str) -> str:
    """The log column holding a feature's validated values."""
    return INPUT_PREFIX + feature


def proba_column(label: str) -> str:
    """The log column holding a class's probability (``label`` as text)."""
    return PROBA_PREFIX + label


def feature_type(feature: FeatureSchema) -> pa.DataType:
    """How a feature's validated values are logged: text for categories, ``float64`` for numbers and booleans."""
    return pa.string() if feature.kind == "categorical" else pa.float64()


def predictions_schema(features: Sequence[FeatureSchema], *, classifier: bool, labels: Sequence[str] = ()) -> pa.Schema:
    """The Arrow schema of one model version's prediction files (``labels`` as text, in probability order)."""
    fields = [
        pa.field(PREDICTION_ID, pa.string(), nullable=False),
        pa.field(TIMESTAMP, TIMESTAMP_TYPE, nullable=False),
        pa.field(VERSION, pa.string(), nullable=False),
        *(pa.field(input_column(f.name), feature_type(f)) for f in features),
        pa.field(PREDICTION, pa.string() if classifier else pa.float64()),
        *(pa.field(proba_column(label), pa.float64()) for label in (labels if classifier else ())),
    ]
    return pa.schema(fields)


def feedback_schema(*, classifier: bool) -> pa.Schema:
    """The Arrow schema of a model's feedback files."""
    return pa.schema(
        [
            pa.field(PREDICTION_ID, pa.string(), nullable=False),
            pa.field(TIMESTAMP, TIMESTAMP_TYPE, nullable=False),
            pa.field(VERSION, pa.string(), nullable=False),
            pa.field(LABEL, pa.string() if classifier else pa.float64()),
            pa.field(OUTCOME, pa.string(), nullable=False),
        ]
    )


def partition(root: str, table: Table, model: str, day: dt.date) -> str:
    """The folder of one table's files for one model and UTC day (``root`` without a trailing slash)."""
    return f"{model_folder(root, table, model)}/{date_folder(day)}"


def model_folder(root: str, table: Table, model: str) -> str:
    """The folder of one table's files for one model: its date partitions are under it."""
    return f"{root.rstrip('/')}/{table}/{MODEL}={quote(model, safe='')}"


def date_folder(day: dt.date) -> str:
    """The name of a UTC day's partition folder (under :func:`model_folder`)."""
    return f"{DATE}={day.isoformat()}"


def folder_date(name: str) -> dt.date | None:
    """The UTC day of a partition folder's name (its last path segment), or ``None`` when it is not one."""
    base = name.rstrip("/").rsplit("/", 1)[-1]
    key, sep, value = base.partition("=")
    if not sep or key != DATE:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def file_name(first: dt.datetime, sequence: int, random_hex: str, pid: int | None = None) -> str:
    """A file's name: the UTC time of its first row, the writer's process id, a sequence number, random digits."""
    stamp = first.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"part-{stamp}-{os.getpid() if pid is None else pid}-{sequence:06d}-{random_hex}.parquet"


def is_complete(name: str) -> bool:
    """Whether a file name is a finished log file (not a writer's temporary file, which starts with ``.``)."""
    base = name.rsplit("/", 1)[-1]
    return base.startswith("part-") and base.endswith(".parquet")
