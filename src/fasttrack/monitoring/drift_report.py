"""The drift report's numbers: per version, each feature's and the predictions' drift from the training profile,
overall and per time window, and live performance per window where labels exist.

Everything is computed from bucket counts (:mod:`fasttrack.monitoring.statistics`): each column becomes one
bucket number per row, once; overall and per-window counts are a ``np.bincount`` each, and the scores of every
window come from the count matrix at once. A million logged rows of fifteen columns are scored in about a second.
Drawing and writing the report is :mod:`fasttrack.monitoring.report_html`'s.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fasttrack.data.schema import CategoricalProfile, FeatureSchema, NumericProfile, Schema
from fasttrack.features.columns import CategoricalColumn, FeatureValues
from fasttrack.features.rules import category_text
from fasttrack.monitoring import performance
from fasttrack.monitoring.log_layout import LABEL, PREDICTION, input_column, proba_column
from fasttrack.monitoring.performance import Calibration
from fasttrack.monitoring.statistics import (
    PREDICTION_FEATURE,
    CategoricalReference,
    DriftMethod,
    NumericReference,
    Reference,
    boolean_text,
    numeric_label_text,
    window_counts,
)

#: Most time windows drawn: enough to see a trend, few enough to read each one.
MAX_WINDOWS: Final = 24
#: Window widths tried, shortest first (seconds): the first that covers the period in MAX_WINDOWS is taken.
WINDOW_WIDTHS: Final = (
    60,
    5 * 60,
    15 * 60,
    30 * 60,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86400,
    2 * 86400,
    7 * 86400,
    14 * 86400,
    28 * 86400,
    91 * 86400,
    364 * 86400,
)
Kind = Literal["numeric", "categorical", "boolean", "prediction"]


@dataclass(frozen=True)
class Windows:
    """Equal time windows over a period: ``count`` windows of ``width`` seconds from ``start`` (UTC)."""

    start: dt.datetime
    width: int
    count: int

    @classmethod
    def covering(cls, first_us: int, last_us: int) -> Windows:
        """The shortest width of :data:`WINDOW_WIDTHS` covering ``[first, last]`` (microseconds since the epoch)
        in at most :data:`MAX_WINDOWS` windows, aligned on multiples of the width since the epoch (days at UTC
        midnight)."""
        for width in WINDOW_WIDTHS:
            start = (first_us // (width * 1_000_000)) * width
            count = int((last_us // 1_000_000 - start) // width) + 1
            if count <= MAX_WINDOWS or width == WINDOW_WIDTHS[-1]:
                return cls(dt.datetime.fromtimestamp(start, dt.UTC), width, max(count, 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def index(self, timestamps_us: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Each timestamp's window (``int64``)."""
        start = int(self.start.timestamp()) * 1_000_000
        index: np.ndarray[Any, Any] = (np.asarray(timestamps_us, dtype=np.int64) - start) // (self.width * 1_000_000)
        clipped: np.ndarray[Any, Any] = np.clip(index, 0, self.count - 1)
        return clipped

    @property
    def starts(self) -> list[dt.datetime]:
        """Each window's start."""
        return [self.start + dt.timedelta(seconds=self.width * i) for i in range(self.count)]

    def label(self, i: int) -> str:
        """A window's start, as short as its width allows."""
        start = self.starts[i]
        if self.width >= 86400:
            return f"{start:%Y-%m-%d}"
        return f"{start:%m-%d %H:%M}"


@dataclass
class FeatureDrift:
    """One column's drift: its scores, the shares drawn, and its PSI per window (NaN: too few rows)."""

    name: str
    kind: Kind
    threshold: float
    rows: int
    scores: dict[DriftMethod, float]
    buckets: list[str]
    expected: np.ndarray[Any, Any]
    actual: np.ndarray[Any, Any]
    window_psi: np.ndarray[Any, Any] | None = None

    @property
    def psi(self) -> float | None:
        """The PSI over every row (``None``: nothing to compare)."""
        return self.scores.get("psi")

    @property
    def drifted(self) -> bool:
        """Whether the PSI is above the threshold."""
        return self.psi is not None and self.psi > self.threshold


@dataclass
class WindowPerformance:
    """Live performance per window: labelled rows, the metric(s), and for classifiers the estimated accuracy."""

    metric_names: list[str]
    labelled: np.ndarray[Any, Any]
    metrics: dict[str, np.ndarray[Any, Any]]
    overall: dict[str, float]
    estimated: np.ndarray[Any, Any] | None = None
    estimated_overall: float | None = None


@dataclass
class VersionDrift:
    """Everything the report shows for one version."""

    version: str
    rows: int
    features: list[FeatureDrift]
    prediction: FeatureDrift | None = None
    labelled: int = 0
    performance: WindowPerformance | None = None
    calibration_note: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> list[FeatureDrift]:
        """The drifted features, highest PSI first."""
        return [f for f in self.features if f.drifted]


# -------------------------------------------------------------------------------------------- the columns
def feature_reference(feature: FeatureSchema) -> Reference | None:
    """A feature's reference (``None`` without a profile of its kind)."""
    profile = feature.profile
    if feature.kind == "numeric":
        return NumericReference(profile) if isinstance(profile, NumericProfile) else None
    if not isinstance(profile, CategoricalProfile):
        return None
    return CategoricalReference(profile, boolean_text if feature.kind == "boolean" else category_text)


def target_reference(schema: Schema) -> Reference | None:
    """The predictions' reference: the target's profile (``None`` without one)."""
    profile = schema.target.profile
    if isinstance(profile, NumericProfile):
        return NumericReference(profile)
    if isinstance(profile, CategoricalProfile):
        numeric_labels = schema.target.dtype.startswith(("float", "Float"))
        return CategoricalReference(profile, numeric_label_text if numeric_labels else category_text)
    return None


def arrow_values(column: pa.ChunkedArray | pa.Array) -> FeatureValues:
    """A logged column as the model's input kinds: ``float64`` (NaN missing) or a :class:`CategoricalColumn`."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_dictionary(column.type):
        encoded = pc.dictionary_encode(column)
        combined = encoded.combine_chunks() if isinstance(encoded, pa.ChunkedArray) else encoded
        codes = combined.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        return CategoricalColumn(codes=codes, categories=[str(c) for c in combined.dictionary.to_pylist()])
    if pa.types.is_null(column.type):
        return np.full(len(column), np.nan)
    return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def buckets(reference: Reference, values: FeatureValues) -> np.ndarray[Any, Any]:
    """Each row's bucket in ``reference``."""
    if isinstance(reference, NumericReference):
        if isinstance(values, CategoricalColumn):  # a feature that changed kind: its values are not numbers here
            return np.full(len(values.codes), reference.bins + 1, dtype=np.int64)
        return reference.buckets(values)
    if isinstance(values, CategoricalColumn):
        return reference.code_buckets(values.codes, values.categories)
    return reference.float_buckets(values)


def column_drift(
    name: str,
    kind: Kind,
    reference: Reference,
    values: FeatureValues,
    threshold: float,
    *,
    windows: np.ndarray[Any, Any] | None = None,
    window_count: int = 0,
    min_rows: int = 1,
) -> FeatureDrift:
    """One column's drift over every row and, given each row's window, per window."""
    bucket = buckets(reference, values)
    total = window_counts(bucket, reference.size)
    scores = {method: float(values_[0]) for method, values_ in reference.scores(total).items()}
    scores = {method: value for method, value in scores.items() if not math.isnan(value)}
    window_psi = None
    if windows is not None and window_count:
        counts = window_counts(bucket, reference.size, windows, window_count)
        psi = reference.scores(counts).get("psi")
        if psi is not None:
            window_psi = np.where(counts.sum(axis=1) >= min_rows, psi, np.nan)
    if isinstance(reference, NumericReference):
        names = _bin_names(reference)
        expected = reference.expected
        actual = reference.shares(total)[0]
    else:
        names = reference.names
        expected = reference.expected
        actual = reference.shares(total)[0]
    return FeatureDrift(
        name=name,
        kind=kind,
        threshold=threshold,
        rows=int(bucket.size),
        scores=scores,
        buckets=names,
        expected=np.asarray(expected, dtype=np.float64),
        actual=actual,
        window_psi=window_psi,
    )


def drift_of_columns(
    schema: Schema,
    columns: Mapping[str, FeatureValues],
    thresholds: Callable[[str], float],
    *,
    predictions: FeatureValues | None = None,
    windows: np.ndarray[Any, Any] | None = None,
    window_count: int = 0,
    min_rows: int = 1,
) -> tuple[list[FeatureDrift], FeatureDrift | None]:
    """Every profiled feature's drift (drifted first, highest PSI first; then the others in schema order) and the
    predictions' (when given and the target has a profile)."""
    found: list[FeatureDrift] = []
    for feature in schema.features:
        reference = feature_reference(feature)
        if reference is None or feature.name not in columns:
            continue
        found.append(
            column_drift(
                feature.name,
                feature.kind,
                reference,
                columns[feature.name],
                thresholds(feature.name),
                windows=windows,
                window_count=window_count,
                min_rows=min_rows,
            )
        )
    order = sorted(
        range(len(found)), key=lambda i: (not found[i].drifted, -(found[i].psi or 0.0) if found[i].drifted else i)
    )
    ranked = [found[i] for i in order]
    prediction = None
    target = target_reference(schema)
    if predictions is not None and target is not None:
        prediction = column_drift(
            "prediction",
            "prediction",
            target,
            predictions,
            thresholds(PREDICTION_FEATURE),
            windows=windows,
            window_count=window_count,
            min_rows=min_rows,
        )
    return ranked, prediction


# -------------------------------------------------------------------------------------------- performance
def window_performance(
    table: pa.Table,
    schema: Schema,
    windows: np.ndarray[Any, Any],
    window_count: int,
    *,
    labels: Sequence[str] | None,
    min_rows: int,
    estimate: bool,
) -> WindowPerformance | None:
    """Live accuracy (classifiers) or RMSE and MAE (regressors) per window over the labelled rows, and for a
    classifier the accuracy estimated from its probabilities over every row (``estimate``); ``None`` without a
    labelled row. Windows with fewer than ``min_rows`` labelled rows (or rows, for the estimate) are NaN."""
    label = table[LABEL]
    valid = np.asarray(pc.is_valid(label).to_numpy(zero_copy_only=False), dtype=bool)
    if not valid.any():
        return None
    labelled = np.bincount(windows[valid], minlength=window_count)[:window_count]
    enough = labelled >= min_rows
    metrics: dict[str, np.ndarray[Any, Any]] = {}
    overall: dict[str, float] = {}
    estimated = None
    estimated_overall = None
    if schema.target.task == "classification":
        # Both sides are category text (log_layout): equal text is a right prediction, as the server's window has it.
        same = pc.fill_null(pc.equal(table[PREDICTION].cast(pa.string()), label.cast(pa.string())), False)
        right = np.asarray(same.to_numpy(zero_copy_only=False), dtype=np.float64)[valid]
        sums = np.bincount(windows[valid], weights=right, minlength=window_count)[:window_count]
        metrics["accuracy"] = np.where(enough, sums / np.maximum(labelled, 1), np.nan)
        overall["accuracy"] = float(right.mean())
        if estimate and labels:
            proba = _probabilities(table, labels)
            if proba is not None:
                estimated, estimated_overall = _estimated(proba, windows, window_count, min_rows)
    else:
        truth_values = np.asarray(label.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)[valid]
        predicted_values = np.asarray(
            table[PREDICTION].cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
        )[valid]
        error = predicted_values - truth_values
        squares = np.bincount(windows[valid], weights=error**2, minlength=window_count)[:window_count]
        absolute = np.bincount(windows[valid], weights=np.abs(error), minlength=window_count)[:window_count]
        metrics["rmse"] = np.where(enough, np.sqrt(squares / np.maximum(labelled, 1)), np.nan)
        metrics["mae"] = np.where(enough, absolute / np.maximum(labelled, 1), np.nan)
        overall["rmse"] = float(np.sqrt(np.mean(error**2)))
        overall["mae"] = float(np.mean(np.abs(error)))
    return WindowPerformance(
        metric_names=list(metrics),
        labelled=labelled,
        metrics=metrics,
        overall=overall,
        estimated=estimated,
        estimated_overall=estimated_overall,
    )


def calibration_note(calibration: Calibration | None, max_error: float) -> str | None:
    """Why the estimated accuracy is not drawn for a classifier, or ``None`` when it is trusted: the judgement and
    its sentence are :func:`~fasttrack.monitoring.performance.calibration_verdict`'s, as training and the server
    give them."""
    verdict = performance.calibration_verdict(calibration, max_error)
    return None if verdict.trusted else f"the model is not known to be calibrated: {verdict.reason}"


# -------------------------------------------------------------------------------------------------- details
def _bin_names(reference: NumericReference) -> list[str]:
    """The PSI buckets' names of a numeric reference: each bin's range (``(a, b]``: above a, up to b; the first and
    last open), then ``(missing)``."""
    edges = reference.edges
    names = []
    for i in range(reference.bins):
        if i == 0:
            names.append(f"≤ {_short(edges[1])}")
        elif i == reference.bins - 1:
            names.append(f"> {_short(edges[i])}")
        else:
            names.append(f"({_short(edges[i])}, {_short(edges[i + 1])}]")
    return [*names, "(missing)"]


def _short(value: float) -> str:
    """A bin edge as people read it: 164,200 rather than 1.642e+05; 0.1234 and 37.44 as they are."""
    return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:.4g}"


def _probabilities(table: pa.Table, labels: Sequence[str]) -> np.ndarray[Any, Any] | None:
    """The ``[N, k]`` probability matrix of the rows (NaN where not logged), or ``None`` when none was logged."""
    names = [proba_column(label) for label in labels]
    present = [name for name in names if name in table.column_names]
    if not present:
        return None
    matrix = np.full((table.num_rows, len(names)), np.nan)
    for j, name in enumerate(names):
        if name in table.column_names:
            matrix[:, j] = np.asarray(table[name].cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    return matrix


def _estimated(
    proba: np.ndarray[Any, Any], windows: np.ndarray[Any, Any], window_count: int, min_rows: int
) -> tuple[np.ndarray[Any, Any], float | None]:
    """The estimated accuracy (:func:`fasttrack.monitoring.performance.estimated_accuracy`) of each window's rows
    with probabilities, and of all of them."""
    logged = ~np.isnan(proba).all(axis=1)
    rows = np.nan_to_num(proba[logged], nan=0.0)
    window = windows[logged]
    order = np.argsort(window, kind="stable")
    bounds = np.searchsorted(window[order], np.arange(window_count + 1))
    ordered = rows[order]
    estimates = np.full(window_count, np.nan)
    for w in range(window_count):
        part = ordered[bounds[w] : bounds[w + 1]]
        if part.shape[0] >= min_rows:
            value = performance.estimated_accuracy(part)
            estimates[w] = np.nan if value is None else value
    return estimates, performance.estimated_accuracy(rows) if rows.shape[0] else None


# ------------------------------------------------------------------------------------------------ the report
@dataclass
class ReportData:
    """What the report shows: the model, where its rows came from, the windows, and each version's drift."""

    model: str
    source: str
    period: str
    versions: list[VersionDrift]
    windows: Windows | None = None
    notes: list[str] = field(default_factory=list)
    generated: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


def version_drift(
    version: str,
    table: pa.Table,
    schema: Schema,
    thresholds: Callable[[str], float],
    *,
    windows: Windows,
    timestamps_us: np.ndarray[Any, Any],
    labels: Sequence[str] | None = None,
    calibration: Calibration | None = None,
    max_calibration_error: float = performance.DEFAULT_MAX_CALIBRATION_ERROR,
    min_rows: int = 100,
    min_labels: int = 100,
) -> VersionDrift:
    """One version's drift from its logged rows (``table``: its predictions, with a ``label`` column when labels
    were joined), each row in its time window; ``labels`` are a classifier's labels as text (probability order)."""
    window = windows.index(timestamps_us)
    columns = {f.name: _logged(table, f) for f in schema.features}
    predictions = arrow_values(table[PREDICTION]) if PREDICTION in table.column_names else None
    features, prediction = drift_of_columns(
        schema,
        columns,
        thresholds,
        predictions=predictions,
        windows=window,
        window_count=windows.count,
        min_rows=min_rows,
    )
    classifier = schema.target.task == "classification"
    note = calibration_note(calibration, max_calibration_error) if classifier else None
    live = None
    if LABEL in table.column_names:
        live = window_performance(
            table, schema, window, windows.count, labels=labels, min_rows=min_labels, estimate=note is None
        )
    labelled = 0 if LABEL not in table.column_names else table.num_rows - table[LABEL].null_count
    return VersionDrift(
        version=version,
        rows=table.num_rows,
        features=features,
        prediction=prediction,
        labelled=labelled,
        performance=live,
        calibration_note=note,
    )


def data_drift(
    version: str, schema: Schema, columns: Mapping[str, FeatureValues], rows: int, thresholds: Callable[[str], float]
) -> VersionDrift:
    """A data file's drift from a version's training profile: the features only (no time, no predictions)."""
    features, _ = drift_of_columns(schema, columns, thresholds)
    return VersionDrift(version=version, rows=rows, features=features)


def _logged(table: pa.Table, feature: FeatureSchema) -> FeatureValues:
    """A feature's logged values; all missing when the files of these rows have no column for it."""
    name = input_column(feature.name)
    if name in table.column_names:
        return arrow_values(table[name])
    if feature.kind == "categorical":
        return CategoricalColumn(codes=np.full(table.num_rows, -1, dtype=np.int64), categories=[])
    return np.full(table.num_rows, np.nan)
