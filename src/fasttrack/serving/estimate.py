"""Accuracy before labels arrive: a served classifier's recent confidences, averaged when Prometheus scrapes.

A calibrated classifier expects to be right as often as it is confident (:mod:`fasttrack.monitoring.performance`
owns that estimate and the calibration that says whether it holds). The server keeps, per model version, the
class probabilities of its last predictions in a :class:`ConfidenceWindow` and exports their mean confidence as
``fasttrack_estimated_accuracy``, only for a version whose recorded calibration is trusted (the predictor makes no
window for the others).

The request path appends the call's probability matrix, as it is (:meth:`ConfidenceWindow.observe`: one deque append,
no lock, no loop over rows, no arithmetic: about 0.1 µs, where taking each row's maximum there would cost 2-3 µs);
the confidences and their mean are computed at scrape time (:meth:`ConfidenceWindow.estimate`).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from fasttrack.monitoring.performance import estimated_accuracy


class ConfidenceWindow:
    """The probabilities of a version's last ``window`` predicted rows, and their mean confidence once ``min_rows``
    are in.

    The deque holds one probability matrix per model call, at most ``window`` matrices of at most ``window`` rows,
    so it always covers the last ``window`` rows and never more than ``window`` squared. The matrices are the ones
    the predictor answered with, kept by reference: nothing writes into them after the model call (answers and the
    inference log only read them). ``deque.append`` and ``deque.copy`` are single operations under the interpreter
    lock, so the request path (event loop or thread pool) and the scrape need no lock of their own.
    """

    def __init__(self, window: int, min_rows: int) -> None:
        if not 1 <= min_rows <= window:
            raise ValueError(f"min_rows must be between 1 and window ({window}), got {min_rows}")
        self.window = window
        self.min_rows = min_rows
        self._recent: deque[np.ndarray[Any, Any]] = deque(maxlen=window)

    def observe(self, probabilities: np.ndarray[Any, Any]) -> None:
        """Remember one call's ``[N, k]`` class probabilities (O(1) per call: nothing is computed here)."""
        rows = len(probabilities)
        if rows > self.window:
            probabilities = probabilities[-self.window :].copy()  # a view would keep the whole batch alive
        if rows:
            self._recent.append(probabilities)

    def rows(self) -> int:
        """Rows in the window (at most ``window``)."""
        return min(self.window, sum(len(part) for part in self._recent.copy()))

    def estimate(self) -> float | None:
        """The estimated accuracy of the last ``window`` rows (``None`` below ``min_rows``): their mean confidence,
        :func:`fasttrack.monitoring.performance.estimated_accuracy`."""
        parts = self._recent.copy()
        if not parts:
            return None
        recent = np.concatenate(parts)[-self.window :]
        if len(recent) < self.min_rows:
            return None
        return estimated_accuracy(recent)
