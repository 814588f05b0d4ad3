"""Performance before labels arrive: a classifier's accuracy estimated from its own probabilities, and the
calibration that says whether that estimate can be trusted. The one owner of both.

A classifier predicts the class it gives the highest probability, its *confidence*. When the model is calibrated
in that sense (of all the predictions made with confidence 0.8, 80 % are right), the expected accuracy of a set of
predictions is the mean of their confidences, with no label needed: confidence-based performance estimation, as
NannyML's CBPE does it for accuracy. It holds under covariate shift (inputs drift, the relation between inputs
and target does not); it cannot see concept drift, which only real labels reveal.

Whether the model is calibrated is measured at training, on the held-out rows: the reliability curve (predictions
grouped by confidence, each group's mean confidence against its accuracy) and the expected calibration error (ECE:
the rows-weighted mean gap between the two). Both are recorded in the model folder (:class:`Calibration`); the
server exports the estimate only for models whose ECE is within ``FASTTRACK_CALIBRATION_MAX_ERROR``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

#: Equal-width confidence bins of the reliability curve and the ECE (the usual choice, as in Guo et al. 2017).
DEFAULT_BINS: Final = 10
#: Largest ECE for which the estimated accuracy is exported (a model this far off says so instead).
DEFAULT_MAX_CALIBRATION_ERROR: Final = 0.05


class ReliabilityBin(BaseModel):
    """One confidence bin of the reliability curve: its range, rows, mean confidence and accuracy."""

    model_config = ConfigDict(extra="forbid")
    lower: float
    upper: float
    rows: int
    confidence: float | None = Field(None, description="Mean confidence of the bin's rows (None when empty).")
    accuracy: float | None = Field(None, description="Share of the bin's rows predicted right (None when empty).")


class Calibration(BaseModel):
    """How well a classifier's confidence matches its accuracy on held-out rows (recorded at training)."""

    model_config = ConfigDict(extra="forbid")
    error: float = Field(description="Expected calibration error: the rows-weighted mean |accuracy - confidence|.")
    rows: int = Field(description="Held-out rows measured.")
    accuracy: float = Field(description="Accuracy on those rows.")
    confidence: float = Field(description="Mean confidence on those rows (the estimate the server would make).")
    bins: list[ReliabilityBin]

    def trusted(self, max_error: float = DEFAULT_MAX_CALIBRATION_ERROR) -> bool:
        """Whether an accuracy estimated from confidences is worth exporting for this model."""
        return self.error <= max_error


def confidences(probabilities: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Each row's confidence: its highest class probability (``float64``; rows of an ``[N, k]`` matrix)."""
    proba = np.asarray(probabilities, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] == 0:
        raise ValueError(f"probabilities must be an [N, k] matrix, got shape {proba.shape}")
    best: np.ndarray[Any, Any] = proba.max(axis=1)
    return best


def estimated_accuracy(probabilities: np.ndarray[Any, Any]) -> float | None:
    """The accuracy a calibrated model expects on these rows: the mean of their confidences (``None`` for none)."""
    conf = confidences(probabilities)
    return float(conf.mean()) if conf.size else None


def calibration(
    probabilities: np.ndarray[Any, Any], correct: Sequence[bool] | np.ndarray[Any, Any], bins: int = DEFAULT_BINS
) -> Calibration:
    """The reliability curve and expected calibration error of predictions with these probabilities.

    ``correct[i]`` says whether row ``i``'s predicted class (its most probable one) was the true class. Rows are
    grouped into ``bins`` equal-width confidence bins over [0, 1] (a row at a bin's upper edge belongs to it; the
    first bin includes 0); ECE is the sum over bins of (rows in bin / rows) * |accuracy - mean confidence|.
    """
    conf = confidences(probabilities)
    right = np.asarray(correct, dtype=bool)
    if right.shape != conf.shape:
        raise ValueError(f"{right.size} correctness flags for {conf.size} rows")
    if conf.size == 0:
        raise ValueError("calibration needs at least one row")
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin b holds (edges[b], edges[b + 1]]; 0 goes to the first bin.
    index = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    conf_sums = np.bincount(index, weights=conf, minlength=bins)
    right_sums = np.bincount(index, weights=right.astype(np.float64), minlength=bins)
    curve: list[ReliabilityBin] = []
    error = 0.0
    for b in range(bins):
        rows = int(counts[b])
        if rows == 0:
            curve.append(ReliabilityBin(lower=float(edges[b]), upper=float(edges[b + 1]), rows=0))
            continue
        mean_conf = float(conf_sums[b] / rows)
        accuracy = float(right_sums[b] / rows)
        error += rows / conf.size * abs(accuracy - mean_conf)
        curve.append(
            ReliabilityBin(
                lower=float(edges[b]), upper=float(edges[b + 1]), rows=rows, confidence=mean_conf, accuracy=accuracy
            )
        )
    return Calibration(
        error=float(error),
        rows=int(conf.size),
        accuracy=float(right.mean()),
        confidence=float(conf.mean()),
        bins=curve,
    )


@dataclass(frozen=True)
class CalibrationVerdict:
    """Whether a classifier's accuracy estimate can be trusted, and the one sentence that says why.

    ``error`` is the recorded ECE (``None`` when none was recorded); ``trusted`` is :meth:`Calibration.trusted`
    for the ``max_error`` in force. Training shows it, and the server decides with it whether to export the estimate.
    """

    error: float | None
    trusted: bool
    reason: str
    max_error: float

    def as_dict(self) -> dict[str, Any]:
        """``{"error", "trusted", "reason"}``: what ``GET /model`` shows as ``calibration``."""
        return {"error": self.error, "trusted": self.trusted, "reason": self.reason}


def calibration_verdict(
    calibration: Calibration | None, max_error: float = DEFAULT_MAX_CALIBRATION_ERROR
) -> CalibrationVerdict:
    """Judge a classifier's recorded calibration against ``max_error`` (``FASTTRACK_CALIBRATION_MAX_ERROR``).

    Without a recorded calibration (a model trained before FastTrack measured it) nothing can be trusted; with one,
    the estimate is trusted when its ECE is at most ``max_error``. The reason names the numbers compared, so a
    model that exports no estimate says why, at training, in the server's log and in ``GET /model``.
    """
    if calibration is None:
        return CalibrationVerdict(
            error=None,
            trusted=False,
            reason="no calibration was recorded at training (the model predates it): its accuracy is not estimated "
            "before labels arrive",
            max_error=max_error,
        )
    error = calibration.error
    if calibration.trusted(max_error):
        reason = (
            f"expected calibration error {error:.3f} on {calibration.rows} held-out rows is within "
            f"FASTTRACK_CALIBRATION_MAX_ERROR ({max_error:g}): its accuracy is estimated from its confidences"
        )
    else:
        reason = (
            f"expected calibration error {error:.3f} on {calibration.rows} held-out rows is above "
            f"FASTTRACK_CALIBRATION_MAX_ERROR ({max_error:g}): its confidences do not match its accuracy, so no "
            "accuracy is estimated before labels arrive"
        )
    return CalibrationVerdict(error=error, trusted=calibration.trusted(max_error), reason=reason, max_error=max_error)
