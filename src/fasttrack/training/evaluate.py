"""Evaluation: metrics, a baseline to beat, the quality gate, and the record kept with every model.

Metric names are those of :data:`fasttrack.config.CLASSIFICATION_METRICS` and
:data:`fasttrack.config.REGRESSION_METRICS`. A metric that is undefined for the data at hand (ROC AUC when the
true labels miss a class, MAPE when a true value is zero, ...) is left out of the result rather than reported
as NaN, so every value present can be compared and stored as JSON.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_absolute_percentage_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)

from fasttrack.config import ResolvedTask, higher_is_better
from fasttrack.monitoring.performance import Calibration
from fasttrack.runtime.base import Prediction, Runtime, align_proba, natives


def compute_metrics(
    task: ResolvedTask,
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    proba: np.ndarray[Any, Any] | None = None,
    labels: Sequence[Any] | None = None,
) -> dict[str, float]:
    """Score predictions: the classification or regression metrics FastTrack reports, as plain floats.

    Classification: accuracy, balanced_accuracy, precision/recall/f1 (macro, ``zero_division=0``) from
    ``y_pred``, and, when ``proba`` is given (one column per entry of ``labels``, in that order), roc_auc
    (binary: of the positive class ``labels[1]``; multiclass: one-vs-rest, macro) and log_loss. ``labels``
    defaults to the sorted union of the true and predicted values. Regression: rmse, mae, r2, and mape (only
    when no true value is zero). Metrics that are undefined for the data are omitted, never NaN.
    """
    truth = np.asarray(y_true)
    predicted = np.asarray(y_pred)
    if truth.shape[0] != predicted.shape[0]:
        raise ValueError(f"y_true has {truth.shape[0]} values but y_pred has {predicted.shape[0]}")
    if truth.shape[0] == 0:
        raise ValueError("cannot compute metrics on zero rows")
    if task == "classification":
        metrics = _classification_metrics(truth, predicted, proba, labels)
    elif task == "regression":
        metrics = _regression_metrics(truth.astype(np.float64), predicted.astype(np.float64))
    else:
        raise ValueError(f"task must be classification or regression, not {task!r}")
    return {name: float(value) for name, value in metrics.items() if math.isfinite(value)}


def _classification_metrics(
    truth: np.ndarray[Any, Any],
    predicted: np.ndarray[Any, Any],
    proba: np.ndarray[Any, Any] | None,
    labels: Sequence[Any] | None,
) -> dict[str, float]:
    label_list = list(labels) if labels is not None else _sorted_union(truth, predicted)
    # These five metrics do not depend on what the labels are, only on which rows share one, so they are
    # computed on integer codes: sklearn checks and sorts text labels again in every call, five times slower.
    true_codes, predicted_codes = _label_codes(truth, predicted)
    with warnings.catch_warnings():
        # Classes missing from y_true or y_pred make sklearn warn on every call; zero_division and the
        # omission rules below already decide what such a case reports.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        metrics: dict[str, float] = {
            "accuracy": accuracy_score(true_codes, predicted_codes),
            "balanced_accuracy": balanced_accuracy_score(true_codes, predicted_codes),
            "precision_macro": precision_score(true_codes, predicted_codes, average="macro", zero_division=0),
            "recall_macro": recall_score(true_codes, predicted_codes, average="macro", zero_division=0),
            "f1_macro": f1_score(true_codes, predicted_codes, average="macro", zero_division=0),
        }
    if proba is None:
        return metrics
    scores = np.asarray(proba, dtype=np.float64)
    if scores.ndim != 2 or scores.shape != (truth.shape[0], len(label_list)):
        raise ValueError(
            f"proba must have one row per value and one column per label: expected "
            f"{(truth.shape[0], len(label_list))}, got {scores.shape}"
        )
    known = set(natives(label_list))
    present = set(natives(np.unique(truth).tolist()))
    if not present <= known:
        # Labels the model never knew (new data with a new class) have no probability column.
        return metrics
    if len(label_list) == 2 and len(present) == 2:
        metrics["roc_auc"] = roc_auc_score(truth == label_list[1], scores[:, 1])
    # log_loss (and multiclass roc_auc) read probability columns in sorted label order whatever order
    # `labels` has, so the columns are sorted to match.
    order = sorted(range(len(label_list)), key=lambda i: label_list[i])
    sorted_labels = [label_list[i] for i in order]
    # float32 models (XGBoost, ONNX graphs) give probabilities a rounding off [0, 1] (a forest's 1 - 1.0000001) and
    # rows that sum to 1 only within float32 precision: log_loss refuses the first and warns about the second.
    sorted_scores = np.clip(scores[:, order], 0.0, 1.0)
    totals = sorted_scores.sum(axis=1, keepdims=True)
    sorted_scores = np.divide(sorted_scores, totals, out=sorted_scores.copy(), where=totals > 0)
    if len(label_list) > 2 and present == known:
        metrics["roc_auc"] = roc_auc_score(
            truth, sorted_scores, multi_class="ovr", average="macro", labels=sorted_labels
        )
    if len(label_list) >= 2:
        metrics["log_loss"] = log_loss(truth, sorted_scores, labels=sorted_labels)
    return metrics


def _label_codes(
    truth: np.ndarray[Any, Any], predicted: np.ndarray[Any, Any]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The true and predicted labels as integer codes, equal codes for equal labels across both arrays."""
    codes, _ = pd.factorize(np.concatenate([truth.ravel(), predicted.ravel()]), use_na_sentinel=False)
    return codes[: truth.size], codes[truth.size :]


def _regression_metrics(truth: np.ndarray[Any, Any], predicted: np.ndarray[Any, Any]) -> dict[str, float]:
    metrics: dict[str, float] = {
        "rmse": root_mean_squared_error(truth, predicted),
        "mae": mean_absolute_error(truth, predicted),
    }
    if truth.shape[0] >= 2:
        metrics["r2"] = r2_score(truth, predicted)
    if not np.any(truth == 0):
        metrics["mape"] = mean_absolute_percentage_error(truth, predicted)
    return metrics


def confusion(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, labels: Sequence[Any]) -> list[list[int]]:
    """The confusion matrix as nested lists: row ``i`` is true ``labels[i]``, column ``j`` predicted ``labels[j]``."""
    matrix = confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=list(labels))
    return [[int(count) for count in row] for row in matrix]


def predict_outputs(
    model: Any,
    X: Any,  # noqa: N803 - sklearn's name for a feature matrix
    *,
    task: ResolvedTask,
    labels: Sequence[Any] | None = None,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None]:
    """Predictions of a fitted model and, for a classifier that has ``predict_proba``, its probabilities.

    The probability columns are reordered to follow ``labels`` (default: the model's ``classes_``); a label the
    model never saw gets a column of zeros, so models fitted on different samples score comparably.
    """
    predicted = np.asarray(model.predict(X))
    if task != "classification" or not hasattr(model, "predict_proba"):
        return predicted, None
    raw = np.asarray(model.predict_proba(X), dtype=np.float64)
    classes = list(model.classes_)
    if labels is None:
        return predicted, raw
    return predicted, align_proba(raw, classes, labels)


def evaluate_model(
    model: Any,
    X: Any,  # noqa: N803 - sklearn's name for a feature matrix
    y: npt.ArrayLike,
    *,
    task: ResolvedTask,
    labels: Sequence[Any] | None,
) -> dict[str, float]:
    """Score a fitted model (pipeline or bare estimator) on ``X``/``y`` with :func:`compute_metrics`.

    Probabilities are used when the model has ``predict_proba``, aligned to ``labels``. This is the one
    scoring path for the test part, the baseline, cross-validation folds, ``fasttrack evaluate`` and
    champion/challenger comparisons, so their numbers are comparable.
    """
    predicted, proba = predict_outputs(model, X, task=task, labels=labels)
    if proba is not None and labels is None:
        labels = list(model.classes_)
    return compute_metrics(task, y, predicted, proba, labels)


def evaluate_runtime(runtime: Runtime, frame: pd.DataFrame, truth: npt.ArrayLike) -> dict[str, float]:
    """Score a registered model's runtime on raw feature columns (``frame``) and the true values.

    The frame becomes the model's input by the feature contract (:func:`fasttrack.features.frames.frame_input`;
    a value a feature cannot take raises :class:`~fasttrack.errors.SchemaValidationError`) and is predicted by the
    runtime the model serves with, so ``fasttrack evaluate`` and promotion score what the server would answer.
    """
    prediction = predict_runtime(runtime, frame)
    return compute_metrics(runtime.task, truth, prediction.values, prediction.probabilities, runtime.labels)


def predict_runtime(runtime: Runtime, frame: pd.DataFrame) -> Prediction:
    """A registered model's predictions for the raw feature columns ``frame`` (and a classifier's probabilities,
    one column per entry of ``runtime.labels``), through the feature contract as :func:`evaluate_runtime` scores."""
    from fasttrack.features.frames import frame_input

    prepared = frame_input(frame, runtime.schema)
    prepared.raise_for_violations()
    return runtime.predict(prepared.columns, prepared.rows, probabilities=runtime.labels is not None)


@dataclass(frozen=True)
class GateDecision:
    """Whether a model passed the quality gate and, when it did not, one readable sentence per reason."""

    passed: bool
    reasons: list[str] = field(default_factory=list)


def quality_gate(
    metrics: Mapping[str, float],
    baseline: Mapping[str, float],
    *,
    primary_metric: str,
    thresholds: Mapping[str, float],
) -> GateDecision:
    """Decide whether a model is good enough to serve.

    The model must be strictly better than the baseline on ``primary_metric`` (larger or smaller depending on
    :func:`~fasttrack.config.higher_is_better`) and reach every threshold, each being the worst acceptable
    value: a minimum for higher-is-better metrics, a maximum for the others. A metric that was not computed
    cannot satisfy anything and is a reason to fail too. Every reason quotes both numbers it compares.
    """
    reasons: list[str] = []
    higher = higher_is_better(primary_metric)
    value = metrics.get(primary_metric)
    reference = baseline.get(primary_metric)
    if value is None:
        reasons.append(f"{primary_metric} was not computed for the model, so it cannot be compared with the baseline")
    elif reference is None:
        reasons.append(f"{primary_metric} was not computed for the baseline, so the model cannot be shown to beat it")
    elif not (value > reference if higher else value < reference):
        shown, shown_ref = _pair(value, reference)
        direction = "higher" if higher else "lower"
        reasons.append(f"{primary_metric} {shown} does not beat the baseline's {shown_ref} ({direction} is better)")
    for metric, limit in thresholds.items():
        higher = higher_is_better(metric)
        value = metrics.get(metric)
        if value is None:
            reasons.append(f"the threshold on {metric} cannot be checked: {metric} was not computed for this model")
            continue
        shown, shown_limit = _pair(value, limit)
        if higher and value < limit:
            reasons.append(f"{metric} {shown} is below the required minimum of {shown_limit}")
        elif not higher and value > limit:
            reasons.append(f"{metric} {shown} is above the allowed maximum of {shown_limit}")
    return GateDecision(passed=not reasons, reasons=reasons)


@dataclass
class Evaluation:
    """How a trained model scored: on the test part, against a baseline, in cross-validation, at the gate.

    ``metrics`` and ``baseline`` are scored on the same held-out test part; the baseline is a
    ``DummyClassifier(strategy="prior")`` or ``DummyRegressor(strategy="mean")`` fitted on the same training
    part. ``cv`` maps each metric to its (mean, standard deviation) over ``cv_folds`` folds of the training
    part (empty when cross-validation was off or impossible; ``notes`` then says why). ``confusion_matrix``
    rows and columns follow ``labels`` (classification only). ``calibration`` is a classifier's reliability curve
    and expected calibration error on the test part (:func:`fasttrack.monitoring.performance.calibration`): whether
    its confidences can stand in for its accuracy before labels arrive (``None`` for a regressor).
    """

    task: ResolvedTask
    primary_metric: str
    metrics: dict[str, float]
    baseline: dict[str, float]
    gate: GateDecision
    cv: dict[str, tuple[float, float]] = field(default_factory=dict)
    cv_folds: int = 0
    labels: list[Any] | None = None
    confusion_matrix: list[list[int]] | None = None
    notes: list[str] = field(default_factory=list)
    calibration: Calibration | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (native Python values only) for storing as a model artifact."""
        return {
            "task": self.task,
            "primary_metric": self.primary_metric,
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "baseline": {k: float(v) for k, v in self.baseline.items()},
            "cv_folds": self.cv_folds,
            "cv": {k: {"mean": float(mean), "std": float(std)} for k, (mean, std) in self.cv.items()},
            "labels": natives(self.labels) if self.labels is not None else None,
            "confusion_matrix": self.confusion_matrix,
            "gate": {"passed": self.gate.passed, "reasons": list(self.gate.reasons)},
            "notes": list(self.notes),
            "calibration": self.calibration.model_dump(mode="json") if self.calibration is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evaluation:
        """Rebuild an evaluation from :meth:`to_dict`'s output (for example, read back from a model folder)."""
        gate = data.get("gate") or {}
        return cls(
            task=data["task"],
            primary_metric=data["primary_metric"],
            metrics=dict(data.get("metrics") or {}),
            baseline=dict(data.get("baseline") or {}),
            gate=GateDecision(passed=bool(gate.get("passed", False)), reasons=list(gate.get("reasons") or [])),
            cv={k: (float(v["mean"]), float(v["std"])) for k, v in (data.get("cv") or {}).items()},
            cv_folds=int(data.get("cv_folds") or 0),
            labels=data.get("labels"),
            confusion_matrix=data.get("confusion_matrix"),
            notes=list(data.get("notes") or []),
            calibration=Calibration.model_validate(data["calibration"]) if data.get("calibration") else None,
        )


def _sorted_union(truth: np.ndarray[Any, Any], predicted: np.ndarray[Any, Any]) -> list[Any]:
    return natives(np.unique(np.concatenate([truth, predicted])).tolist())


def _pair(value: float, other: float) -> tuple[str, str]:
    """Format two numbers with as few decimals (at least 3) as it takes to tell them apart when they differ."""
    for digits in range(3, 10):
        left, right = f"{value:.{digits}f}", f"{other:.{digits}f}"
        if left != right or value == other:
            return left, right
    return repr(value), repr(other)
