"""A paired comparison of two models on the same rows: the improvement on a metric and its confidence interval.

A bare difference of two scores says nothing about whether it would hold on other rows: on a few thousand rows two
versions that differ only by their seed can be apart by more than a typical margin. :func:`paired_bootstrap`
resamples the comparison rows (with replacement, as many as there are) ``resamples`` times, recomputes the metric for
*both* models on each resample -- the same rows for both, which is what makes it paired: the rows that are hard for
one are hard for the other, and that shared noise cancels -- and reads the interval of the improvement from the
percentiles of its resampled values (the percentile bootstrap). The gate promotes only when the interval's lower
bound clears the margin.

Each model predicts once; a resample is a vector of counts (how often each row was drawn), and every metric is
computed from counts without copying rows: a weighted sum over rows for accuracy, the macro metrics (per-class
counts by one matrix product), log loss and the regression errors, and for ROC AUC the Mann-Whitney form (for each
positive, the weight of negatives scored below it, ties counting half) over the rows sorted once by score, so no
resample is sorted. A resample of the rows and the weighted metric with its counts give the same number (a test
checks every metric against :func:`~fasttrack.training.evaluate.compute_metrics`). Resamples are drawn in blocks of
a bounded size (memory stays near :data:`_CELLS` floats per block however many rows) from a generator with a fixed
seed, so the same predictions always give the same interval.

Classification resamples keep each class's row count (a stratified bootstrap, as pROC does by default for ROC AUC):
every resample then holds every class, so ROC AUC and log loss are defined on all of them, and the interval is not
widened by the class balance wobbling between resamples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from fasttrack.config import ResolvedTask, higher_is_better
from fasttrack.errors import DataError
from fasttrack.runtime.base import natives

#: Seed of the resampling: fixed, so the same inputs always give the same interval (and decision).
BOOTSTRAP_SEED: Final = 20261203
#: Most counts held at once (resamples x rows): 2 million float64, 16 MB per array of a block.
_CELLS: Final = 2_000_000

Weights = np.ndarray[Any, np.dtype[np.float64]]
#: A metric as a function of resample counts: ``(k, n)`` counts of the ``n`` rows in ``k`` resamples -> ``(k,)``.
Scorer = Callable[[Weights], np.ndarray[Any, np.dtype[np.float64]]]


@dataclass(frozen=True)
class Outputs:
    """One model's predictions on the comparison rows: labels or values, and a classifier's probabilities (one
    column per entry of ``labels``, in that order)."""

    values: np.ndarray[Any, Any]
    probabilities: np.ndarray[Any, Any] | None = None
    labels: Sequence[Any] | None = None

    def rows(self, which: np.ndarray[Any, Any]) -> Outputs:
        """The predictions of some rows only (``which``: a boolean mask or row indices)."""
        probabilities = self.probabilities[which] if self.probabilities is not None else None
        return Outputs(self.values[which], probabilities, self.labels)


@dataclass(frozen=True)
class PairedInterval:
    """The challenger's improvement on ``metric`` over the champion (positive: better, in the metric's direction),
    on all ``rows``, and its ``confidence`` interval (``low``, ``high``) from ``resamples`` paired resamples."""

    metric: str
    improvement: float
    low: float
    high: float
    confidence: float
    resamples: int
    rows: int


def paired_bootstrap(
    task: ResolvedTask,
    metric: str,
    truth: np.ndarray[Any, Any],
    challenger: Outputs,
    champion: Outputs,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = BOOTSTRAP_SEED,
) -> PairedInterval:
    """The improvement of ``challenger`` over ``champion`` on ``metric`` and its percentile bootstrap interval.

    Both models' scores are recomputed on the same resamples of the rows (see the module docstring). Raises
    :class:`~fasttrack.errors.DataError` when the metric cannot be computed on these rows (for instance ROC AUC
    when the true labels hold a single class).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    truth = np.asarray(truth)
    rows = truth.shape[0]
    sign = 1.0 if higher_is_better(metric) else -1.0
    new = metric_scorer(task, metric, truth, challenger)
    old = metric_scorer(task, metric, truth, champion)
    everything = np.ones((1, rows))
    improvement = float(sign * (new(everything) - old(everything))[0])
    strata = _strata(task, truth)
    rng = np.random.default_rng(seed)
    block = max(1, min(resamples, _CELLS // max(rows, 1)))
    resampled: list[np.ndarray[Any, Any]] = []
    for start in range(0, resamples, block):
        weights = resample_counts(strata, rows, min(block, resamples - start), rng)
        resampled.append(sign * (new(weights) - old(weights)))
    differences = np.concatenate(resampled)
    if not np.isfinite(differences).all() or not np.isfinite(improvement):
        raise DataError(f"{metric} cannot be computed on every resample of these {rows} rows")
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(differences, [tail, 1.0 - tail])
    return PairedInterval(metric, improvement, float(low), float(high), confidence, resamples, rows)


def resample_counts(strata: Sequence[np.ndarray[Any, Any]], rows: int, count: int, rng: np.random.Generator) -> Weights:
    """``count`` resamples of ``rows`` rows as counts, shape ``(count, rows)``: each stratum (an array of row
    indices) drawn with replacement to its own size, so every resample keeps each stratum's size."""
    picks = np.concatenate([group[rng.integers(0, len(group), size=(count, len(group)))] for group in strata], axis=1)
    flat = (picks + (np.arange(count) * rows)[:, None]).ravel()
    return np.bincount(flat, minlength=count * rows).reshape(count, rows).astype(np.float64)


def metric_scorer(task: ResolvedTask, metric: str, truth: np.ndarray[Any, Any], outputs: Outputs) -> Scorer:
    """``metric`` of ``outputs`` against ``truth`` as a function of resample counts (:data:`Scorer`), computed as
    :func:`~fasttrack.training.evaluate.compute_metrics` computes it on the rows those counts draw."""
    if task == "regression":
        return _regression_scorer(metric, np.asarray(truth, dtype=np.float64), np.asarray(outputs.values, np.float64))
    if metric in ("roc_auc", "log_loss"):
        return _probability_scorer(metric, truth, outputs)
    return _label_scorer(metric, truth, np.asarray(outputs.values))


def _strata(task: ResolvedTask, truth: np.ndarray[Any, Any]) -> list[np.ndarray[Any, Any]]:
    """Row indices per class for a classifier (each resample keeps the class counts), one group for a regressor."""
    if task == "regression":
        return [np.arange(truth.shape[0])]
    codes, _ = pd.factorize(truth, use_na_sentinel=False)
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(codes[order])) + 1)


def _mean(values: np.ndarray[Any, Any]) -> Scorer:
    """The count-weighted mean of per-row ``values``."""
    column = np.asarray(values, dtype=np.float64)
    return lambda weights: (weights @ column) / weights.sum(axis=1)


def _label_scorer(metric: str, truth: np.ndarray[Any, Any], predicted: np.ndarray[Any, Any]) -> Scorer:
    """accuracy, balanced_accuracy and the macro precision, recall and F1 (``zero_division=0``), over the labels
    present in each resample's true or predicted values, as scikit-learn takes them."""
    codes, uniques = pd.factorize(np.concatenate([truth.ravel(), predicted.ravel()]), use_na_sentinel=False)
    true_codes, predicted_codes = codes[: truth.size], codes[truth.size :]
    if metric == "accuracy":
        return _mean(true_codes == predicted_codes)
    classes = np.arange(len(uniques))
    is_true = (true_codes[:, None] == classes).astype(np.float64)
    is_predicted = (predicted_codes[:, None] == classes).astype(np.float64)
    indicators = np.concatenate([is_true, is_predicted, is_true * is_predicted], axis=1)
    k = len(classes)

    def score(weights: Weights) -> np.ndarray[Any, np.dtype[np.float64]]:
        counts = weights @ indicators
        support, predictions, hits = counts[:, :k], counts[:, k : 2 * k], counts[:, 2 * k :]
        with np.errstate(divide="ignore", invalid="ignore"):
            recall = np.where(support > 0, hits / support, 0.0)
            if metric == "balanced_accuracy":  # over the classes that occur in the truth
                return np.asarray(recall.sum(axis=1) / (support > 0).sum(axis=1), dtype=np.float64)
            present = (support + predictions) > 0
            if metric == "precision_macro":
                per_class = np.where(predictions > 0, hits / predictions, 0.0)
            elif metric == "recall_macro":
                per_class = recall
            elif metric == "f1_macro":
                per_class = np.where(present, 2.0 * hits / (support + predictions), 0.0)
            else:
                raise ValueError(f"no resampled form of {metric!r}")
        return np.asarray((per_class * present).sum(axis=1) / present.sum(axis=1), dtype=np.float64)

    return score


def _probability_scorer(metric: str, truth: np.ndarray[Any, Any], outputs: Outputs) -> Scorer:
    """roc_auc (binary: of ``labels[1]``; multiclass: one-vs-rest, macro) and log_loss, from the probabilities,
    under the conditions :func:`~fasttrack.training.evaluate.compute_metrics` computes them."""
    labels = list(outputs.labels or [])
    if outputs.probabilities is None or not labels:
        raise DataError(f"{metric} needs class probabilities, which the model does not give")
    scores = np.asarray(outputs.probabilities, dtype=np.float64)
    position = {label: i for i, label in enumerate(labels)}
    try:
        true_columns = np.asarray([position[value] for value in natives(truth.tolist())], dtype=np.intp)
    except KeyError as missing:
        raise DataError(
            f"{metric} cannot be computed: the true labels include {missing}, unknown to the model"
        ) from None
    present = np.unique(true_columns)
    if metric == "roc_auc" and len(labels) == 2:
        if len(present) < 2:
            raise DataError("roc_auc cannot be computed: the true labels hold a single class")
        return _auc_scorer(true_columns == 1, scores[:, 1])
    # Multiclass ROC AUC and log loss read rows clipped to [0, 1] and normalised to sum to 1, as compute_metrics
    # gives them.
    clipped = np.clip(scores, 0.0, 1.0)
    totals = clipped.sum(axis=1, keepdims=True)
    normalised = np.divide(clipped, totals, out=clipped.copy(), where=totals > 0)
    if metric == "roc_auc":
        if len(present) < len(labels):
            raise DataError("roc_auc cannot be computed: some of the model's classes do not occur in the true labels")
        per_class = [_auc_scorer(true_columns == column, normalised[:, column]) for column in range(len(labels))]
        return lambda weights: np.mean([score(weights) for score in per_class], axis=0)
    # scikit-learn's log_loss clips probabilities to [eps, 1 - eps] before the logarithm.
    eps = np.finfo(np.float64).eps
    chosen = np.clip(normalised[np.arange(len(true_columns)), true_columns], eps, 1 - eps)
    return _mean(-np.log(chosen))


def _auc_scorer(positive: np.ndarray[Any, Any], scores: np.ndarray[Any, Any]) -> Scorer:
    """ROC AUC as the Mann-Whitney statistic: over weighted (positive, negative) pairs, the share where the positive
    scores higher, ties counting half (the trapezoidal area scikit-learn computes). Rows are sorted by score once;
    each resample sums its counts per distinct score."""
    order = np.argsort(scores, kind="stable")
    ranked = scores[order]
    starts = np.flatnonzero(np.concatenate([[True], ranked[1:] != ranked[:-1]]))
    is_positive = positive[order].astype(np.float64)
    is_negative = 1.0 - is_positive

    def score(weights: Weights) -> np.ndarray[Any, np.dtype[np.float64]]:
        ordered = weights[:, order]
        positives = np.add.reduceat(ordered * is_positive, starts, axis=1)
        negatives = np.add.reduceat(ordered * is_negative, starts, axis=1)
        below = np.cumsum(negatives, axis=1) - negatives
        pairs = positives.sum(axis=1) * negatives.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray((positives * (below + 0.5 * negatives)).sum(axis=1) / pairs, dtype=np.float64)

    return score


def _regression_scorer(metric: str, truth: np.ndarray[Any, Any], predicted: np.ndarray[Any, Any]) -> Scorer:
    """rmse, mae, mape (errors relative to ``max(|y|, eps)``) and r2 (1 when both sums of squares are 0, 0 when only
    the total one is), as scikit-learn computes them."""
    errors = predicted - truth
    if metric == "rmse":
        squared = _mean(errors**2)
        return lambda weights: np.sqrt(squared(weights))
    if metric == "mae":
        return _mean(np.abs(errors))
    if metric == "mape":
        return _mean(np.abs(errors) / np.maximum(np.abs(truth), np.finfo(np.float64).eps))
    if metric != "r2":
        raise ValueError(f"no resampled form of {metric!r}")
    centred = truth - truth.mean()  # sums of squares about the mean are shift-invariant; centring keeps them exact
    columns = np.stack([errors**2, centred, centred**2], axis=1)

    def score(weights: Weights) -> np.ndarray[Any, np.dtype[np.float64]]:
        residual, first, second = (weights @ columns).T
        total = second - first**2 / weights.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = 1.0 - residual / total
        return np.where(total > 0, ratio, np.where(residual == 0, 1.0, 0.0))

    return score
