"""Live drift: recent inputs and predictions compared with the training reference profile. No HTTP in here.

Every model folder carries its training :class:`~fasttrack.data.schema.Schema`, whose features and target hold a
reference profile (quantile bins for numbers, frequencies for categories). A :class:`DriftMonitor` keeps a bounded
window of the most recent values of every feature and of the predictions, and compares them with that profile:

- PSI (population stability index) for every feature and for the predictions: the usual drift score, where
  0.1 is "some change" and 0.2 (the default threshold) "a significant shift";
- the KS statistic (largest gap between cumulative distributions) for numeric features and regression outputs;
- the Jensen-Shannon distance (base 2, so between 0 and 1) for categorical and boolean features and class labels.

The statistics are :mod:`fasttrack.monitoring.statistics`'s (the drift report over the inference log uses the
same ones); this module keeps the windows. The request path only appends to the windows
(:meth:`DriftMonitor.observe`, :meth:`DriftMonitor.observe_columns`, :meth:`DriftMonitor.observe_predictions`: O(1)
per value, no conversion); the scores are computed off it, by :meth:`DriftMonitor.compute`, at scrape time. A
feature reports nothing until its window holds ``min_observations`` rows, so a cold window does not fire alerts.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fasttrack.data.schema import CategoricalProfile, NumericProfile, Schema
from fasttrack.features.rules import category_text
from fasttrack.monitoring.statistics import (
    DEFAULT_PSI_THRESHOLD,
    PREDICTION_FEATURE,
    PSI_EPSILON,
    CategoricalReference,
    DriftMethod,
    NumericReference,
    boolean_text,
    first_scores,
    js_distance,
    ks_statistic,
    numeric_label_text,
    population_stability_index,
    psi_threshold,
)

__all__ = [
    "DEFAULT_MIN_OBSERVATIONS",
    "DEFAULT_PSI_THRESHOLD",
    "DEFAULT_WINDOW",
    "PREDICTION",
    "PSI_EPSILON",
    "DriftMethod",
    "DriftMonitor",
    "DriftValue",
    "js_distance",
    "ks_statistic",
    "population_stability_index",
]

#: The name under which the prediction distribution is reported, next to the features.
PREDICTION = PREDICTION_FEATURE
DEFAULT_WINDOW = 1000
DEFAULT_MIN_OBSERVATIONS = 100


@dataclass(frozen=True)
class DriftValue:
    """One drift score: the feature (or :data:`PREDICTION`), the method and its value."""

    feature: str
    method: DriftMethod
    value: float


class _Monitored:
    """One monitored column: its reference (the profile's buckets, :mod:`fasttrack.monitoring.statistics`) and the
    window of its recent raw values."""

    def __init__(
        self, name: str, profile: NumericProfile | CategoricalProfile, window: int, canonical: Callable[[Any], Any]
    ) -> None:
        self.name = name
        self.profile = profile
        self.values: deque[Any] = deque(maxlen=window)
        self.reference: NumericReference | CategoricalReference = (
            NumericReference(profile)
            if isinstance(profile, NumericProfile)
            else CategoricalReference(profile, canonical)
        )

    def scores(self, values: list[Any]) -> list[tuple[DriftMethod, float]]:
        reference = self.reference
        if isinstance(reference, NumericReference):
            counts = reference.counts(_floats(values))
        else:
            counts = reference.value_counts(values)
        return first_scores(reference.scores(counts[None, :]))


class DriftMonitor:
    """Windows of recent feature values and predictions, and their drift from the training profile.

    Built from the model's :class:`Schema`: every feature with a reference profile is monitored, and so is the
    prediction (as :data:`PREDICTION`) when the target has one. ``window`` is the number of recent rows kept per
    feature; ``min_observations`` the rows a window needs before its scores are reported. ``thresholds`` maps a
    feature (or :data:`PREDICTION`) to its PSI alert level, overriding ``default_threshold`` (0.2); a name that
    is not monitored is refused with ``ValueError``, so a typo in the settings is not silently ignored.

    Thread-safe: the observe methods append under a lock (O(1) per value; raw values, converted only when
    scores are computed), and :meth:`compute` copies the windows under the same lock and scores them outside it.
    """

    def __init__(
        self,
        schema: Schema,
        *,
        window: int = DEFAULT_WINDOW,
        min_observations: int = DEFAULT_MIN_OBSERVATIONS,
        thresholds: Mapping[str, float] | None = None,
        default_threshold: float = DEFAULT_PSI_THRESHOLD,
    ) -> None:
        if window < 1:
            raise ValueError(f"the drift window must hold at least one row, got {window}")
        if not 1 <= min_observations <= window:
            raise ValueError(f"min_observations must be between 1 and the window ({window}), got {min_observations}")
        self.window = window
        self.min_observations = min_observations
        self._features = [
            _Monitored(f.name, f.profile, window, boolean_text if f.kind == "boolean" else category_text)
            for f in schema.features
            if f.profile is not None
        ]
        target = schema.target.profile
        numeric_labels = schema.target.dtype.startswith(("float", "Float"))
        self._prediction = (
            None
            if target is None
            else _Monitored(PREDICTION, target, window, numeric_label_text if numeric_labels else category_text)
        )
        monitored = [m.name for m in self._all()]
        unknown = sorted(set(thresholds or {}) - set(monitored))
        if unknown:
            raise ValueError(f"drift thresholds name unmonitored features {unknown}; monitored: {monitored}")
        self.thresholds: dict[str, float] = {
            name: psi_threshold(name, thresholds, default_threshold) for name in monitored
        }
        self._lock = threading.Lock()
        self._generation = 0
        self._cache: tuple[int, list[DriftValue]] = (-1, [])

    @property
    def features(self) -> list[str]:
        """The monitored names: the features with a reference profile, then :data:`PREDICTION` when monitored."""
        return [m.name for m in self._all()]

    def observe(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append a batch of input records (feature name -> raw value; absent or ``None`` is missing)."""
        if not records:
            return
        with self._lock:
            if len(records) == 1:  # the usual request: skip building a list per feature
                (record,) = records
                for monitored in self._features:
                    monitored.values.append(record.get(monitored.name))
            else:
                for monitored in self._features:
                    name = monitored.name
                    monitored.values.extend([record.get(name) for record in records])
            self._generation += 1

    def observe_columns(self, columns: Mapping[str, Sequence[Any] | np.ndarray]) -> None:
        """Append a batch given as columns (feature name -> values, all of one length); absent columns are missing."""
        rows = len(next(iter(columns.values()))) if columns else 0
        if rows == 0:
            return
        with self._lock:
            if rows == 1:  # the usual request: no list or iterator per feature
                for monitored in self._features:
                    column = columns.get(monitored.name)
                    monitored.values.append(None if column is None else column[0])
            else:
                for monitored in self._features:
                    column = columns.get(monitored.name)
                    if column is None:
                        monitored.values.extend([None] * rows)
                    else:  # numpy's tolist() makes Python values ten times faster than iterating the array
                        monitored.values.extend(column.tolist() if isinstance(column, np.ndarray) else column)
            self._generation += 1

    def observe_predictions(self, values: Iterable[Any]) -> None:
        """Append a batch of predictions: class labels for a classifier, numbers for a regressor."""
        if self._prediction is None:
            return
        with self._lock:
            self._prediction.values.extend(values)
            self._generation += 1

    def observations(self) -> dict[str, int]:
        """Rows in each monitored window right now."""
        with self._lock:
            return {m.name: len(m.values) for m in self._all()}

    def compute(self) -> list[DriftValue]:
        """Drift scores of every monitored window holding at least ``min_observations`` rows.

        PSI for each, then KS (numeric) or Jensen-Shannon distance (categorical), in schema order with the
        prediction last. Meant for scrape time: it costs about a millisecond per feature for a full window of
        1,000 rows, and the last result is reused while nothing new was observed.
        """
        with self._lock:
            generation = self._generation
            if self._cache[0] == generation:
                return list(self._cache[1])
            snapshot = [(m, list(m.values)) for m in self._all() if len(m.values) >= self.min_observations]
        results = [
            DriftValue(monitored.name, method, value)
            for monitored, values in snapshot
            for method, value in monitored.scores(values)
        ]
        with self._lock:
            if self._generation == generation:
                self._cache = (generation, results)
        return list(results)

    def _all(self) -> list[_Monitored]:
        return [*self._features, *([self._prediction] if self._prediction is not None else [])]


def _floats(values: list[Any]) -> np.ndarray:
    """Raw values as float64 with NaN for missing; anything that is not a number counts as missing."""
    try:
        return np.asarray(values, dtype="float64")
    except (TypeError, ValueError):
        return np.fromiter((_float(v) for v in values), dtype="float64", count=len(values))


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
