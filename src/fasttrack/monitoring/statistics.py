"""Drift statistics: how far live values are from a training reference profile. The one owner of them.

Every model folder carries its training :class:`~fasttrack.data.schema.Schema`, whose features and target hold a
reference profile (quantile bins for numbers, frequencies for categories). Live values are counted into that
profile's buckets and compared with it:

- PSI (population stability index) for every feature and for the predictions: the usual drift score, where
  0.1 is "some change" and 0.2 (:data:`DEFAULT_PSI_THRESHOLD`) "a significant shift";
- the KS statistic (largest gap between cumulative distributions) for numeric features and regression outputs;
- the Jensen-Shannon distance (base 2, so between 0 and 1) for categorical and boolean features and class labels.

The server's live windows (:mod:`fasttrack.serving.drift`) score a thousand recent values per feature; the drift
report (:mod:`fasttrack.monitoring.drift_report`) scores millions of logged rows, per version and per time
window. Both go through the same :class:`NumericReference` and :class:`CategoricalReference`: values become
bucket numbers once (numpy's ``searchsorted`` for numbers; one lookup per *distinct* category), counts per window
are one ``np.bincount`` over ``window * buckets + bucket``, and the scores are computed for every window at once
from the count matrix (:func:`psi_rows`, :func:`js_rows`, :meth:`NumericReference.ks_rows`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal, TypeAlias

import numpy as np

from fasttrack.data.schema import CategoricalProfile, NumericProfile
from fasttrack.features.rules import category_text

DriftMethod = Literal["psi", "ks", "js"]
Array: TypeAlias = np.ndarray[Any, Any]

#: The name the prediction distribution is reported under next to the features (the server's metric label, the
#: key of its threshold in ``FASTTRACK_DRIFT_THRESHOLDS``).
PREDICTION_FEATURE: Final = "__prediction__"
#: The customary PSI alert level: below 0.1 no real change, 0.1 to 0.2 some, above 0.2 a significant shift.
DEFAULT_PSI_THRESHOLD: Final = 0.2
#: Share given to an empty bucket in PSI, whose ``ln(actual / expected)`` is infinite at zero. It is below one
#: row in the server's default window (1/1000), so a bucket that is empty on one side and holds a single row on
#: the other adds only about 0.001 * ln(10) ≈ 0.002, while a bucket holding 10 % of one side and none of the other
#: adds 0.1 * ln(1000) ≈ 0.7, far above the threshold: a category or range that appears or vanishes is seen.
PSI_EPSILON: Final = 1e-4


# ------------------------------------------------------------------------------------------------ the measures
def psi_threshold(
    name: str, thresholds: Mapping[str, float] | None = None, default: float = DEFAULT_PSI_THRESHOLD
) -> float:
    """The PSI above which ``name`` (a feature, or the predictions) counts as drifted: its own threshold when
    ``thresholds`` (``FASTTRACK_DRIFT_THRESHOLDS``) name it, else ``default`` (``FASTTRACK_DRIFT_THRESHOLD``).
    The one rule the server's alerts and the drift report share."""
    return float((thresholds or {}).get(name, default))


def psi_rows(expected: Sequence[float] | Array, actual: Array, epsilon: float = PSI_EPSILON) -> Array:
    """PSI of each row of ``actual`` (``[W, K]`` counts or shares) against ``expected`` (``K`` counts or shares).

    Each side is normalised to sum to 1 first; shares below ``epsilon`` are raised to it (see :data:`PSI_EPSILON`),
    so empty buckets count without making the index infinite. Buckets empty on both sides add nothing. A row
    without any count is compared as all zeros, like :func:`population_stability_index`.
    """
    p = np.maximum(_normalised(np.asarray(expected, dtype=np.float64)), epsilon)
    q = np.maximum(_normalised_rows(np.atleast_2d(np.asarray(actual, dtype=np.float64))), epsilon)
    return np.sum((q - p) * np.log(q / p), axis=1)  # type: ignore[no-any-return]


def population_stability_index(
    expected: Sequence[float] | Array, actual: Sequence[float] | Array, epsilon: float = PSI_EPSILON
) -> float:
    """PSI of two distributions over the same buckets: ``sum((actual - expected) * ln(actual / expected))``.

    Both are normalised to sum to 1 first; shares below ``epsilon`` are raised to it (see :data:`PSI_EPSILON`),
    so empty buckets count without making the index infinite. Buckets empty on both sides add nothing.
    """
    return float(psi_rows(expected, np.asarray(actual, dtype=np.float64)[None, :], epsilon)[0])


def js_rows(p: Sequence[float] | Array, q: Array) -> Array:
    """Jensen-Shannon distance (base 2) of each row of ``q`` (``[W, K]``) from ``p`` (``K``); see
    :func:`js_distance`."""
    a = _normalised(np.asarray(p, dtype=np.float64))[None, :]
    b = _normalised_rows(np.atleast_2d(np.asarray(q, dtype=np.float64)))
    m = (a + b) / 2

    def kl(x: Array) -> Array:
        # 0 * log(0 / m) is 0; where x > 0, m > 0 too.
        ratio = np.divide(x, m, out=np.ones_like(b), where=x > 0)
        return np.sum(np.where(x > 0, x * np.log2(ratio), 0.0), axis=1)  # type: ignore[no-any-return]

    divergence = (kl(np.broadcast_to(a, b.shape)) + kl(b)) / 2
    return np.minimum(1.0, np.sqrt(np.maximum(divergence, 0.0)))


def js_distance(p: Sequence[float] | Array, q: Sequence[float] | Array) -> float:
    """Jensen-Shannon distance of two distributions over the same buckets, base 2: 0 when equal, 1 when disjoint.

    The square root of the Jensen-Shannon divergence (the mean Kullback-Leibler divergence of each distribution
    from their average). Unlike PSI it needs no epsilon: it is finite for empty buckets.
    """
    return float(js_rows(p, np.asarray(q, dtype=np.float64)[None, :])[0])


def ks_statistic(profile: NumericProfile, values: Array) -> float | None:
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
    reference = NumericReference(profile)
    if reference.bins < 1:
        return None
    value = reference.ks_rows(reference.counts(np.asarray(values, dtype=np.float64))[None, :])[0]
    return None if math.isnan(value) else float(value)


def window_counts(buckets: Array, size: int, windows: Array | None = None, count: int = 1) -> Array:
    """Rows per bucket and window: a ``[count, size]`` matrix from each row's bucket (``0..size-1``) and window.

    One ``np.bincount`` over ``window * size + bucket``: a million rows in a few milliseconds. Without
    ``windows`` every row is in window 0. Rows whose window is negative are left out.
    """
    bucket = np.asarray(buckets, dtype=np.int64)
    if windows is None:
        return np.bincount(bucket, minlength=size)[None, :size]
    window = np.asarray(windows, dtype=np.int64)
    keep = window >= 0
    flat = window[keep] * size + bucket[keep]
    return np.bincount(flat, minlength=count * size)[: count * size].reshape(count, size)


# ----------------------------------------------------------------------------------------- canonical text
def boolean_text(value: Any) -> str | None:
    """A boolean feature's value as ``"true"``/``"false"`` (from booleans, 0/1 or text); other text as it is."""
    text = category_text(value)
    if text is None:
        return None
    lowered = text.lower()
    return {"1": "true", "0": "false", "true": "true", "false": "false"}.get(lowered, text)


def numeric_label_text(value: Any) -> str | None:
    """Class labels of a float target: its profile keys read ``"1.0"`` and predictions ``1.0``; both become ``"1"``."""
    if isinstance(value, str):
        try:
            return category_text(float(value))
        except ValueError:
            return category_text(value)
    return category_text(value)


# ------------------------------------------------------------------------------------------- the references
class NumericReference:
    """A numeric profile as buckets: its bins, one bucket above the training maximum, and one for missing.

    Bucket ``i < bins`` holds values in ``(edges[i], edges[i + 1]]`` (the first bin open below), bucket ``bins``
    the values above the last edge and bucket ``bins + 1`` the missing ones. PSI merges the bucket above the
    maximum into the last bin (so the bins are open-ended, as :func:`~fasttrack.data.schema.bin_proportions` has
    them); KS keeps it apart, since the reference CDF reaches 1 at the last edge and the live one does not.
    """

    methods: tuple[DriftMethod, ...] = ("psi", "ks")

    def __init__(self, profile: NumericProfile) -> None:
        self.profile = profile
        self.edges = np.asarray(profile.edges, dtype=np.float64)
        self.bins = max(len(profile.edges) - 1, 0)
        #: Buckets counted: the bins, above the maximum, missing.
        self.size = self.bins + 2
        present = 1.0 - profile.missing
        self.expected = np.asarray([*(p * present for p in profile.proportions), profile.missing], dtype=np.float64)
        self._reference_cdf = np.cumsum(_normalised(np.asarray(profile.proportions, dtype=np.float64)))

    def buckets(self, values: Array) -> Array:
        """Each value's bucket (``float64`` values, NaN missing)."""
        numbers = np.asarray(values, dtype=np.float64)
        index = np.searchsorted(self.edges[1:], numbers, side="left")
        index[np.isnan(numbers)] = self.bins + 1
        return index

    def counts(self, values: Array) -> Array:
        """Values per bucket."""
        return np.bincount(self.buckets(values), minlength=self.size)

    def shares(self, counts: Array) -> Array:
        """Live shares over the PSI buckets (the bins then missing) of ``[W, size]`` counts: ``[W, bins + 1]``."""
        merged = self._merged(np.atleast_2d(counts))
        return _normalised_rows(merged.astype(np.float64))

    def psi_rows(self, counts: Array) -> Array:
        """PSI of each row of ``[W, size]`` counts."""
        return psi_rows(self.expected, self._merged(np.atleast_2d(counts)))

    def ks_rows(self, counts: Array) -> Array:
        """KS statistic of each row of ``[W, size]`` counts at the bin edges; NaN where a row has no value."""
        counts = np.atleast_2d(counts).astype(np.float64)
        present = counts[:, : self.bins + 1].sum(axis=1)
        # The live CDF at edges[i + 1] is the share of present values in bins 0..i (values above the maximum are
        # not up to the last edge).
        live_cdf = np.cumsum(counts[:, : self.bins], axis=1) / np.where(present > 0, present, 1.0)[:, None]
        gap = np.max(np.abs(self._reference_cdf[None, :] - live_cdf), axis=1)
        return np.where(present > 0, gap, np.nan)

    def scores(self, counts: Array) -> dict[DriftMethod, Array]:
        """PSI and KS of each row of ``[W, size]`` counts (nothing without bins)."""
        if self.bins < 1:
            return {}
        return {"psi": self.psi_rows(counts), "ks": self.ks_rows(counts)}

    def _merged(self, counts: Array) -> Array:
        """Counts over the PSI buckets: the bins (above the maximum in the last one), then missing."""
        merged = counts[:, [*range(self.bins), self.bins + 1]].copy()
        if self.bins:
            merged[:, self.bins - 1] += counts[:, self.bins]
        return merged


class CategoricalReference:
    """A categorical profile as buckets: each of its top categories, then ``other``, then ``missing``.

    Values are compared as ``canonical`` text (:func:`~fasttrack.features.rules.category_text` for categories,
    :func:`boolean_text` for boolean features, :func:`numeric_label_text` for class labels of a float target).
    Live categories the profile does not name (unseen in training, or too rare to be among its top categories)
    count as ``other``, as they do in the profile.
    """

    methods: tuple[DriftMethod, ...] = ("psi", "js")

    def __init__(self, profile: CategoricalProfile, canonical: Callable[[Any], str | None] = category_text) -> None:
        self.profile = profile
        self.canonical = canonical
        self.index: dict[str, int] = {}
        for key in profile.frequencies:
            text = canonical(key)
            if text is not None:
                self.index.setdefault(text, len(self.index))
        self.other = len(self.index)
        self.missing = self.other + 1
        self.size = self.other + 2
        present = 1.0 - profile.missing
        self.expected = np.zeros(self.size)
        for key, share in profile.frequencies.items():
            text = canonical(key)
            self.expected[self.other if text is None else self.index[text]] += share * present
        self.expected[self.other] += profile.other * present
        self.expected[self.missing] = profile.missing

    @property
    def names(self) -> list[str]:
        """The buckets' names: the profile's categories, ``(other)``, ``(missing)``."""
        return [*self.index, "(other)", "(missing)"]

    def bucket(self, value: Any) -> int:
        """One raw value's bucket."""
        text = self.canonical(value)
        return self.missing if text is None else self.index.get(text, self.other)

    def value_counts(self, values: Iterable[Any]) -> Array:
        """Raw values per bucket (each value made canonical first, so any type is accepted)."""
        counts = np.zeros(self.size, dtype=np.int64)
        for text, count in Counter(self.canonical(v) for v in values).items():
            counts[self.missing if text is None else self.index.get(text, self.other)] += count
        return counts

    def code_buckets(self, codes: Array, categories: Sequence[Any]) -> Array:
        """Each row's bucket from codes into ``categories`` (``-1``: missing): one lookup per category."""
        table = np.asarray([*(self.bucket(c) for c in categories), self.missing], dtype=np.int64)
        return table[np.asarray(codes, dtype=np.int64)]  # -1 picks the last entry: missing

    def float_buckets(self, values: Array) -> Array:
        """Each row's bucket from ``float64`` values (NaN missing), as a boolean feature's 0/1 arrive."""
        numbers = np.asarray(values, dtype=np.float64)
        distinct, inverse = np.unique(numbers, return_inverse=True)
        table = np.asarray([self.missing if math.isnan(v) else self.bucket(v) for v in distinct], dtype=np.int64)
        return table[inverse.reshape(-1)]

    def scores(self, counts: Array) -> dict[DriftMethod, Array]:
        """PSI and Jensen-Shannon distance of each row of ``[W, size]`` counts."""
        rows = np.atleast_2d(counts)
        return {"psi": psi_rows(self.expected, rows), "js": js_rows(self.expected, rows)}

    def shares(self, counts: Array) -> Array:
        """Live shares over the buckets of ``[W, size]`` counts."""
        return _normalised_rows(np.atleast_2d(counts).astype(np.float64))


Reference: TypeAlias = NumericReference | CategoricalReference


def reference_for(
    profile: NumericProfile | CategoricalProfile, canonical: Callable[[Any], str | None] = category_text
) -> Reference:
    """The reference of a profile (``canonical`` is the text categories are compared as; see
    :class:`CategoricalReference`)."""
    if isinstance(profile, NumericProfile):
        return NumericReference(profile)
    return CategoricalReference(profile, canonical)


def first_scores(scores: Mapping[DriftMethod, Array]) -> list[tuple[DriftMethod, float]]:
    """The scores of a one-row count matrix as ``(method, value)`` pairs, PSI first; NaN values left out."""
    return [(method, float(values[0])) for method, values in scores.items() if not math.isnan(float(values[0]))]


# -------------------------------------------------------------------------------------------------- details
def _normalised(shares: Array) -> Array:
    total = float(shares.sum())
    return shares / total if total > 0 else shares


def _normalised_rows(rows: Array) -> Array:
    totals = rows.sum(axis=1, keepdims=True)
    return np.divide(rows, totals, out=np.zeros_like(rows), where=totals > 0)  # type: ignore[no-any-return]
