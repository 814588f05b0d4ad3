"""Evaluation plots as PNG files: what people would rather look at than read.

Figures are built as :class:`matplotlib.figure.Figure` objects and saved through the Agg canvas directly, never
through ``pyplot``: no global backend switch, no figure registry to leak into, safe in servers and threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from fasttrack.config import ResolvedTask
from fasttrack.monitoring.performance import Calibration
from fasttrack.training.evaluate import confusion, predict_outputs

if TYPE_CHECKING:
    from fasttrack.training.train import TrainResult

#: Above this many classes the confusion matrix cells are too small to carry their counts as text.
MAX_ANNOTATED_CLASSES = 20
_DPI = 110


def save_plots(result: TrainResult, folder: Path) -> list[Path]:
    """Write the evaluation plots of a training result (scored on its test part) into ``folder``.

    Classification: a confusion matrix, for two classes a ROC curve, and the reliability curve of the calibration
    training recorded. Regression: predicted against actual values and a histogram of residuals. Creates
    ``folder`` if needed and returns the files written.
    The predictions :func:`~fasttrack.training.train.train` kept are used; the test part is predicted again
    only for a result that has none.
    """
    if result.test_predictions is not None:
        predicted, proba = result.test_predictions, result.test_proba
    else:
        predicted, proba = predict_outputs(result.pipeline, result.X_test, task=result.task, labels=result.labels)
    return save_prediction_plots(
        folder,
        task=result.task,
        y_true=result.y_test,
        y_pred=predicted,
        proba=proba,
        labels=result.labels,
        calibration=result.evaluation.calibration,
    )


def save_prediction_plots(
    folder: Path,
    *,
    task: ResolvedTask,
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    proba: np.ndarray[Any, Any] | None = None,
    labels: Sequence[Any] | None = None,
    calibration: Calibration | None = None,
) -> list[Path]:
    """Write evaluation plots from precomputed predictions into ``folder``; return the files written.

    ``proba`` (one column per entry of ``labels``) is needed only for the binary ROC curve, which is skipped
    when it is absent or when ``y_true`` holds a single class. ``labels`` defaults to the sorted union of the
    true and predicted values. ``calibration`` (classifiers) adds its reliability curve.
    """
    folder.mkdir(parents=True, exist_ok=True)
    truth = np.asarray(y_true)
    predicted = np.asarray(y_pred)
    written: list[Path] = []
    if task == "classification":
        names = list(labels) if labels is not None else np.unique(np.concatenate([truth, predicted])).tolist()
        written.append(_save(_confusion_figure(truth, predicted, names), folder / "confusion_matrix.png"))
        if proba is not None and len(names) == 2 and len(np.unique(truth)) == 2:
            written.append(
                _save(_roc_figure(truth == names[1], np.asarray(proba)[:, 1], names[1]), folder / "roc_curve.png")
            )
        if calibration is not None:
            written.append(_save(_reliability_figure(calibration), folder / "reliability_curve.png"))
    else:
        truth = truth.astype(np.float64)
        predicted = predicted.astype(np.float64)
        written.append(_save(_scatter_figure(truth, predicted), folder / "predicted_vs_actual.png"))
        written.append(_save(_residual_figure(truth, predicted), folder / "residuals.png"))
    return written


def _confusion_figure(truth: np.ndarray[Any, Any], predicted: np.ndarray[Any, Any], labels: list[Any]) -> Figure:
    counts = np.array(confusion(truth, predicted, labels), dtype=np.int64)
    n = len(labels)
    size = min(4.0 + 0.45 * n, 14.0)
    fig = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.subplots()
    # Colour by each true class's share, so a small class's errors show as clearly as a large one's.
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=np.float64), where=totals > 0)
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="share of the true class")
    names = [str(label) for label in labels]
    ax.set_xticks(range(n), names, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    ax.set_title(f"Confusion matrix ({int(counts.sum())} test rows, accuracy {_accuracy(counts):.1%})")
    if n <= MAX_ANNOTATED_CLASSES:
        for i in range(n):
            for j in range(n):
                colour = "white" if shares[i, j] > 0.5 else "black"
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", color=colour, fontsize=10)
    return fig


def _roc_figure(positive: np.ndarray[Any, Any], score: np.ndarray[Any, Any], positive_label: Any) -> Figure:
    fpr, tpr, _ = roc_curve(positive, score)
    auc = float(roc_auc_score(positive, score))
    # Fixed margins rather than the constrained layout: the axes hold 0-1 on both sides whatever the data, so
    # the margins never need measuring, and measuring them costs about as much as drawing the figure.
    fig = Figure(figsize=(5.5, 5.0))
    fig.subplots_adjust(left=0.12, right=0.96, bottom=0.1, top=0.93)
    ax = fig.subplots()
    ax.plot(fpr, tpr, linewidth=2, label=f"model (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance (AUC = 0.5)")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate")
    ax.set_title(f"ROC curve (positive class: {positive_label})")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return fig


def _reliability_figure(calibration: Calibration) -> Figure:
    """The reliability curve (each confidence bin's accuracy against its mean confidence, on the diagonal when
    calibrated) over the rows per bin, which say how much each point of the curve can be believed."""
    fig = Figure(figsize=(5.5, 6.0))
    fig.subplots_adjust(left=0.13, right=0.96, bottom=0.08, top=0.93, hspace=0.08)
    curve, counts = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    filled = [b for b in calibration.bins if b.rows]
    curve.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    curve.plot(
        [b.confidence for b in filled],
        [b.accuracy for b in filled],
        marker="o",
        linewidth=2,
        label=f"model (ECE = {calibration.error:.3f})",
    )
    curve.set_xlim(0.0, 1.0)
    curve.set_ylim(0.0, 1.02)
    curve.set_ylabel("Accuracy of the bin's rows")
    curve.set_title(
        f"Reliability ({calibration.rows} test rows: accuracy {calibration.accuracy:.1%}, "
        f"mean confidence {calibration.confidence:.1%})",
        fontsize=10,
    )
    curve.legend(loc="upper left")
    curve.grid(alpha=0.3)
    counts.bar(
        [(b.lower + b.upper) / 2 for b in calibration.bins],
        [b.rows for b in calibration.bins],
        width=[(b.upper - b.lower) * 0.9 for b in calibration.bins],
        color="tab:blue",
        alpha=0.7,
    )
    counts.set_xlabel("Confidence (probability of the predicted class)")
    counts.set_ylabel("Rows")
    counts.grid(alpha=0.3)
    return fig


def _scatter_figure(truth: np.ndarray[Any, Any], predicted: np.ndarray[Any, Any]) -> Figure:
    fig = Figure(figsize=(5.5, 5.0), layout="constrained")
    ax = fig.subplots()
    alpha = 0.7 if truth.size <= 500 else 0.3
    ax.scatter(truth, predicted, s=12, alpha=alpha, edgecolors="none")
    low = float(min(truth.min(), predicted.min()))
    high = float(max(truth.max(), predicted.max()))
    ax.plot([low, high], [low, high], linestyle="--", color="grey", label="perfect prediction (y = x)")
    ax.set_xlabel("Actual value")
    ax.set_ylabel("Predicted value")
    ax.set_title(f"Predicted vs actual ({truth.size} test rows)")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return fig


def _residual_figure(truth: np.ndarray[Any, Any], predicted: np.ndarray[Any, Any]) -> Figure:
    residuals = truth - predicted
    fig = Figure(figsize=(6.0, 4.5), layout="constrained")
    ax = fig.subplots()
    bins = int(min(50, max(10, np.sqrt(residuals.size))))
    ax.hist(residuals, bins=bins, color="tab:blue", alpha=0.85, edgecolor="white")
    ax.axvline(0.0, linestyle="--", color="grey")
    ax.set_xlabel("Residual (actual - predicted)")
    ax.set_ylabel("Rows")
    ax.set_title(f"Residuals (mean {residuals.mean():.3g}, std {residuals.std():.3g})")
    ax.grid(alpha=0.3)
    return fig


def _accuracy(counts: np.ndarray[Any, Any]) -> float:
    total = counts.sum()
    return float(np.trace(counts) / total) if total else 0.0


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=_DPI)
    return path
