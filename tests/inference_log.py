"""Inference logs for tests, written with pyarrow in exactly the layout of ``fasttrack.monitoring.log_layout``
(its schemas, folders and file names; nothing spelled here), the way the server's writer leaves them."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fasttrack.data.schema import FeatureSchema
from fasttrack.features.rules import category_text
from fasttrack.monitoring import log_layout

START = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)


def logged_inputs(frame: pd.DataFrame, features: Sequence[FeatureSchema]) -> dict[str, pa.Array]:
    """A frame's feature columns as the log holds them: numbers and booleans as float64, categories as text."""
    columns: dict[str, pa.Array] = {}
    for feature in features:
        name = log_layout.input_column(feature.name)
        if feature.name not in frame.columns:
            columns[name] = pa.nulls(len(frame), log_layout.feature_type(feature))
        elif feature.kind == "categorical":
            columns[name] = pa.array([category_text(v) for v in frame[feature.name].tolist()], pa.string())
        else:
            values = pd.to_numeric(frame[feature.name].astype("float64"), errors="coerce").to_numpy()
            columns[name] = pa.array(values, pa.float64(), from_pandas=True)
    return columns


def write_predictions(
    root: Path,
    model: str,
    version: str,
    features: Sequence[FeatureSchema],
    frame: pd.DataFrame,
    predictions: Sequence[Any] | np.ndarray,
    *,
    times: Sequence[dt.datetime] | np.ndarray,
    ids: Sequence[str],
    classifier: bool = True,
    labels: Sequence[str] = (),
    probabilities: np.ndarray | None = None,
    rows_per_file: int = 100_000,
) -> list[Path]:
    """Write predicted rows as prediction files, one folder per UTC day, files of at most ``rows_per_file`` rows."""
    schema = log_layout.predictions_schema(features, classifier=classifier, labels=labels)
    columns: dict[str, pa.Array] = {
        log_layout.PREDICTION_ID: pa.array(list(ids), pa.string()),
        log_layout.TIMESTAMP: pa.array(_datetimes(times), log_layout.TIMESTAMP_TYPE),
        log_layout.VERSION: pa.array([version] * len(frame), pa.string()),
        **logged_inputs(frame, features),
    }
    if classifier:
        columns[log_layout.PREDICTION] = pa.array([category_text(p) for p in predictions], pa.string())
        for j, label in enumerate(labels):
            values = probabilities[:, j] if probabilities is not None else np.full(len(frame), np.nan)
            columns[log_layout.proba_column(label)] = pa.array(values, pa.float64(), from_pandas=True)
    else:
        columns[log_layout.PREDICTION] = pa.array(np.asarray(predictions, dtype=np.float64), pa.float64())
    table = pa.table({field.name: columns[field.name] for field in schema}, schema=schema)
    return _write(root, "predictions", model, table, rows_per_file)


def write_feedback(
    root: Path,
    model: str,
    version: str,
    ids: Sequence[str],
    labels: Sequence[Any],
    *,
    times: Sequence[dt.datetime] | np.ndarray,
    classifier: bool = True,
    outcome: str = "matched",
    rows_per_file: int = 100_000,
) -> list[Path]:
    """Write received labels as feedback files (class labels as text for a classifier)."""
    schema = log_layout.feedback_schema(classifier=classifier)
    label_values = (
        pa.array([None if v is None else category_text(v) for v in labels], pa.string())
        if classifier
        else pa.array(np.asarray(labels, dtype=np.float64), pa.float64(), from_pandas=True)
    )
    table = pa.table(
        {
            log_layout.PREDICTION_ID: pa.array(list(ids), pa.string()),
            log_layout.TIMESTAMP: pa.array(_datetimes(times), log_layout.TIMESTAMP_TYPE),
            log_layout.VERSION: pa.array([version] * len(ids), pa.string()),
            log_layout.LABEL: label_values,
            log_layout.OUTCOME: pa.array([outcome] * len(ids), pa.string()),
        },
        schema=schema,
    )
    return _write(root, "feedback", model, table, rows_per_file)


def minutes(count: int, *, start: dt.datetime = START, every: float = 1.0) -> list[dt.datetime]:
    """``count`` times ``every`` minutes apart from ``start``."""
    return [start + dt.timedelta(minutes=every * i) for i in range(count)]


def _datetimes(times: Sequence[dt.datetime] | np.ndarray) -> list[dt.datetime]:
    if isinstance(times, np.ndarray) and np.issubdtype(times.dtype, np.datetime64):
        return pd.to_datetime(times, utc=True).to_pydatetime().tolist()
    return list(times)


def _write(root: Path, table_name: log_layout.Table, model: str, table: pa.Table, rows_per_file: int) -> list[Path]:
    written: list[Path] = []
    stamps = table[log_layout.TIMESTAMP].to_pylist()
    days = np.asarray([t.date().toordinal() for t in stamps])
    for ordinal in np.unique(days):
        day = dt.date.fromordinal(int(ordinal))
        part = table.filter(pa.array(days == ordinal))
        folder = Path(log_layout.partition(str(root), table_name, model, day))
        folder.mkdir(parents=True, exist_ok=True)
        for offset in range(0, part.num_rows, rows_per_file):
            chunk = part.slice(offset, rows_per_file)
            first = chunk[log_layout.TIMESTAMP][0].as_py()
            name = log_layout.file_name(first, len(written), secrets.token_hex(4))
            tmp = folder / f".{name}.tmp"
            pq.write_table(chunk, tmp)
            path = folder / name
            tmp.rename(path)
            written.append(path)
    return written


# ------------------------------------------------------------------------------------ a registered model's log
def invoke(home: Path, *args: str, **env: str) -> Any:
    """Run ``fasttrack ARGS`` in-process (Typer's runner) on ``home``'s embedded store; ``env`` adds variables."""
    from typer.testing import CliRunner

    from fasttrack.cli import app

    variables: dict[str, str | None] = {
        "FASTTRACK_HOME": str(home),
        "FASTTRACK_TRACKING_URI": "",
        "FASTTRACK_MODEL": "",
    }
    variables |= {"COLUMNS": "200", "MLFLOW_TRACKING_URI": None, "MLFLOW_REGISTRY_URI": None}
    variables |= {"FASTTRACK_INFERENCE_LOG": None, **env}  # None: unset while invoked
    return CliRunner().invoke(app, list(args), env=variables, catch_exceptions=True)


def mixed_home(base: Path) -> Path:
    """``base/log-models``: a store holding ``mixed`` (every feature kind, see ``support.mixed_frame``) as version 1,
    and version 2 (the same model registered again), trained once per test session."""
    from fasttrack.config import TrainConfig
    from fasttrack.data.describe import infer_schema
    from fasttrack.training.publish import publish
    from fasttrack.training.train import train
    from support import mixed_frame, register_copy, serving_settings

    home = base / "log-models"
    done = home / ".trained"
    if not done.exists():
        home.mkdir(parents=True, exist_ok=True)
        config = TrainConfig(data="memory://mixed.csv", target="label", name="mixed", model="linear", cv_folds=0)
        frame = mixed_frame()
        result = train(frame, config, infer_schema(frame, "label"))
        assert publish(result, settings=serving_settings(home), source=config.data, fingerprint="test").registered
        register_copy(home, "mixed", of="mixed")
        done.touch()
    return home


def log_served(
    root: Path,
    home: Path,
    version: str,
    frame: pd.DataFrame,
    *,
    start: dt.datetime = START,
    every_seconds: float = 60.0,
    prefix: str | None = None,
) -> tuple[list[str], np.ndarray]:
    """Log what version ``version`` of ``mixed`` predicts for ``frame``'s rows, one every ``every_seconds`` from
    ``start``, as the server would; returns the prediction ids and the predictions."""
    import fasttrack
    from support import serving_settings

    model = fasttrack.load(f"models:/mixed/{version}", settings=serving_settings(home))
    features = frame.drop(columns=["label"], errors="ignore")
    predicted = model.predict(features)
    proba = model.predict_proba(features)
    labels = [str(category_text(label)) for label in model.labels or []]
    ids = [f"{prefix or 'v' + version}-{i}" for i in range(len(frame))]
    times = [start + dt.timedelta(seconds=every_seconds * i) for i in range(len(frame))]
    write_predictions(
        root,
        "mixed",
        version,
        model.schema.features,
        features,
        predicted,
        times=times,
        ids=ids,
        labels=labels,
        probabilities=proba,
    )
    return ids, predicted
