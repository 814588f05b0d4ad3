"""Accuracy before labels arrive: a served classifier's recent confidences, averaged when Prometheus scrapes.

A calibrated classifier expects to be right as often as it is confident (:mod:`fasttrack.monitoring.performance`
owns that estimate and the calibration that says whether it holds). The server keeps, per model version, the
confidences of its last predictions in a :class:`ConfidenceWindow` and exports their mean as
``fasttrack_estimated_accuracy``, only for a version whose recorded calibration is trusted (the predictor makes no
window for the others).

The request path appends one array per call (:meth:`ConfidenceWindow.observe`: one vectorised maximum, one deque
append, no lock, no loop over rows); the mean is taken at scrape time (:meth:`ConfidenceWindow.estimate`).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from fasttrack.monitoring.performance import confidences


class ConfidenceWindow:
    """The confidences of a version's last ``window`` predicted rows, and their mean once ``min_rows`` are in.

    The deque holds one array per model call (a batch's confidences together), at most ``window`` arrays of at
    most ``window`` rows, so it always covers the last ``window`` rows and never more than ``window`` squared.
    ``deque.append`` and ``deque.copy`` are single operations under the interpreter lock, so the request path
    (event loop or thread pool) and the scrape need no lock of their own.
    """

    def __init__(self, window: int, min_rows: int) -> None:
        if not 1 <= min_rows <= window:
            raise ValueError(f"min_rows must be between 1 and window ({window}), got {min_rows}")
        self.window = window
        self.min_rows = min_rows
        self._recent: deque[np.ndarray[Any, Any]] = deque(maxlen=window)

    def observe(self, probabilities: np.ndarray[Any, Any]) -> None:
        """Append the confidences of one call's predictions (an ``[N, k]`` probability matrix); O(1) per call."""
        conf = confidences(probabilities)
        if conf.size > self.window:
            conf = conf[-self.window :].copy()  # a view would keep the whole batch alive
        if conf.size:
            self._recent.append(conf)

    def rows(self) -> int:
        """Rows in the window (at most ``window``)."""
        return min(self.window, sum(part.size for part in self._recent.copy()))

    def estimate(self) -> float | None:
        """The estimated accuracy of the last ``window`` rows: their mean confidence (``None`` below ``min_rows``)."""
        parts = self._recent.copy()
        if not parts:
            return None
        recent = np.concatenate(parts)[-self.window :]
        if recent.size < self.min_rows:
            return None
        # The mean confidence, as fasttrack.monitoring.performance.estimated_accuracy defines the estimate.
        return float(recent.mean())
