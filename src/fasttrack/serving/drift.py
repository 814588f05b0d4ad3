"""Live drift: recent inputs and predictions compared with the training reference profile. No HTTP in here.

Every model folder carries its training :class:`~fasttrack.data.schema.Schema`, whose features and target hold a
reference profile (quantile bins for numbers, frequencies for categories). A :class:`DriftMonitor` keeps a bounded
window of the most recent values of every feature and of the predictions, and compares them with that profile:

- PSI (population stability index) for every feature and for the predictions: the usual drift score, where
  0.1 is "some change" and 0.2 (the default threshold) "a significant shift";
- the KS statistic (largest gap between cumulative distributions) for numeric features and regression outputs;
- the Jensen-Shannon distance (base 2, so between 0 and 1) for categorical and boolean features and class labels.

The request path only appends to the windows (:meth:`DriftMonitor.observe`, :meth:`DriftMonitor.observe_columns`,
:meth:`DriftMonitor.observe_predictions`: O(1) per value, no conversion); the scores are computed off it, by
:meth:`DriftMonitor.compute`, at scrape time. A feature reports nothing until its window holds
``min_observations`` rows, so a cold window does not fire alerts.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from fasttrack.data.schema import CategoricalProfile, NumericProfile, Schema, bin_proportions
from fasttrack.features.rules import category_text

DriftMethod = Literal["psi", "ks", "js"]

#: The name under which the prediction distribution is reported, next to the features.
PREDICTION = "__prediction__"
DEFAULT_WINDOW = 1000
DEFAULT_MIN_OBSERVATIONS = 100
#: The customary PSI alert level: below 0.1 no real change, 0.1 to 0.2 some, above 0.2 a significant shift.
DEFAULT_PSI_THRESHOLD = 0.2
#: Share given to an empty bucket in PSI, whose ``ln(actual / expected)`` is infinite at zero. It is below one
#: row in the default window (1/1000), so a bucket that is empty on one side and holds a single row on the other
#: adds only about 0.001 * ln(10) ≈ 0.002, while a bucket holding 10 % of one side and none of the other adds
#: 0.1 * ln(1000) ≈ 0.7, far above the threshold: a category or range that appears or vanishes is seen.
PSI_EPSILON = 1e-4


@dataclass(frozen=True)
class DriftValue:
    """One drift score: the feature (or :data:`PREDICTION`), the method and its value."""

    feature: str
    method: DriftMethod
    value: float


def population_stability_index(
    expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray, epsilon: float = PSI_EPSILON
) -> float:
    """PSI of two distributions over the same buckets: ``sum((actual - expected) * ln(actual / expected))``.

    Both are normalised to sum to 1 first; shares below ``epsilon`` are raised to it (see :data:`PSI_EPSILON`),
    so empty buckets count without making the index infinite. Buckets empty on both sides add nothing.
    """
    p = _normalised(expected)
    q = _normalised(actual)
    p = np.maximum(p, epsilon)
    q = np.maximum(q, epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(p: Sequence[float] | np.ndarray, q: Sequence[float] | np.ndarray) -> float:
    """Jensen-Shannon distance of two distributions over the same buckets, base 2: 0 when equal, 1 when disjoint.

    The square root of the Jensen-Shannon divergence (the mean Kullback-Leibler divergence of each distribution
    from their average). Unlike PSI it needs no epsilon: it is finite for empty buckets.
    """
    a = _normalised(p)
    b = _normalised(q)
    m = (a + b) / 2

    def kl(x: np.ndarray) -> float:
        present = x > 0
        return float(np.sum(x[present] * np.log2(x[present] / m[present])))

    divergence = (kl(a) + kl(b)) / 2
    return float(min(1.0, math.sqrt(max(divergence, 0.0))))


def ks_statistic(profile: NumericProfile, values: np.ndarray) -> float | None:
    """The KS statistic of ``values`` against a numeric reference profile, measured at the profile's bin edges.

    Only the profile is stored with a model, not the training values, so the reference CDF is known exactly at
    the bin edges alone (the share of training values up to each edge). The statistic is the largest gap between
    that CDF and the values' empirical CDF over those edges: a lower bound of the two-sample KS statistic that
    sees shifts of location, scale and shape at the resolution of the bins (deciles by default). Interpolating
    the reference CDF linearly within bins would look finer but is biased: on whole-number features (counts,
    ratings) the reference has steps, not slopes, and the linear CDF reads 0.2 to 0.3 for data drawn from the
    training distribution itself; at the edges that data reads about 0.02 (sampling noise for 1,000 rows).
    Missing values are left out (PSI counts them). ``None`` without a value or bins to compare.
    """
    edges = np.asarray(profile.edges, dtype="float64")
    present = np.sort(values[~np.isnan(values)])
    if edges.size < 2 or present.size == 0:
        return None
    # Bin i holds (edges[i], edges[i + 1]], so the reference share up to edges[i + 1] is the sum of bins 0..i.
    reference = np.cumsum(_normalised(profile.proportions))
    live = np.searchsorted(present, edges[1:], side="right") / present.size
    # Values above the training maximum fall in the last bin, whose reference CDF is 1 at any point above it.
    return float(np.max(np.abs(reference - live)))


class _Monitored:
    """One monitored column: its reference profile, the buckets to count categories in, and the window."""

    def __init__(
        self, name: str, profile: NumericProfile | CategoricalProfile, window: int, canonical: Callable[[Any], Any]
    ) -> None:
        self.name = name
        self.profile = profile
        self.values: deque[Any] = deque(maxlen=window)
        self.canonical = canonical
        # Categorical: the bucket of each top reference category (by its canonical text), then "other" and
        # "missing"; and the reference shares over those buckets, which never change.
        self.buckets: dict[str, int] = {}
        self.expected = np.zeros(0)
        if isinstance(profile, CategoricalProfile):
            for key in profile.frequencies:
                self.buckets.setdefault(canonical(key), len(self.buckets))
            size = len(self.buckets)
            present = 1.0 - profile.missing
            self.expected = np.zeros(size + 2)
            for key, share in profile.frequencies.items():
                self.expected[self.buckets[canonical(key)]] += share * present
            self.expected[size] = profile.other * present
            self.expected[size + 1] = profile.missing

    def scores(self, values: list[Any]) -> list[tuple[DriftMethod, float]]:
        if isinstance(self.profile, NumericProfile):
            return _numeric_scores(self.profile, _floats(values))
        return _categorical_scores(self.expected, self.buckets, [self.canonical(v) for v in values])


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
            _Monitored(f.name, f.profile, window, _boolean_text if f.kind == "boolean" else category_text)
            for f in schema.features
            if f.profile is not None
        ]
        target = schema.target.profile
        numeric_labels = schema.target.dtype.startswith(("float", "Float"))
        self._prediction = (
            None
            if target is None
            else _Monitored(PREDICTION, target, window, _numeric_label_text if numeric_labels else category_text)
        )
        monitored = [m.name for m in self._all()]
        unknown = sorted(set(thresholds or {}) - set(monitored))
        if unknown:
            raise ValueError(f"drift thresholds name unmonitored features {unknown}; monitored: {monitored}")
        self.thresholds: dict[str, float] = {
            name: float((thresholds or {}).get(name, default_threshold)) for name in monitored
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


def _boolean_text(value: Any) -> str | None:
    """A boolean feature's value as ``"true"``/``"false"`` (from booleans, 0/1 or text); other text as it is."""
    text = category_text(value)
    if text is None:
        return None
    lowered = text.lower()
    return {"1": "true", "0": "false", "true": "true", "false": "false"}.get(lowered, text)


def _numeric_label_text(value: Any) -> str | None:
    """Class labels of a float target: its profile keys read ``"1.0"`` and predictions ``1.0``; both become ``"1"``."""
    if isinstance(value, str):
        try:
            return category_text(float(value))
        except ValueError:
            return category_text(value)
    return category_text(value)


def _numeric_scores(profile: NumericProfile, values: np.ndarray) -> list[tuple[DriftMethod, float]]:
    """PSI over the reference bins plus a missing bucket, and the KS statistic over the present values."""
    if len(profile.edges) < 2:
        return []
    present = values[~np.isnan(values)]
    live_missing = 1.0 - present.size / values.size if values.size else 0.0
    expected = [*(p * (1.0 - profile.missing) for p in profile.proportions), profile.missing]
    actual = [*(p * (1.0 - live_missing) for p in bin_proportions(profile, present)), live_missing]
    scores: list[tuple[DriftMethod, float]] = [("psi", population_stability_index(expected, actual))]
    ks = ks_statistic(profile, present)
    if ks is not None:
        scores.append(("ks", ks))
    return scores


def _categorical_scores(
    expected: np.ndarray, buckets: Mapping[str, int], values: list[str | None]
) -> list[tuple[DriftMethod, float]]:
    """PSI and Jensen-Shannon distance over the buckets [each top reference category..., other, missing].

    Live categories the profile does not name (unseen in training, or too rare to be among its top categories)
    count as ``other``, as they do in the profile.
    """
    other, missing = expected.size - 2, expected.size - 1
    actual = np.zeros(expected.size)
    for value, count in Counter(values).items():
        actual[missing if value is None else buckets.get(value, other)] += count
    return [("psi", population_stability_index(expected, actual)), ("js", js_distance(expected, actual))]


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


def _normalised(shares: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(shares, dtype="float64")
    total = float(array.sum())
    return array / total if total > 0 else array
