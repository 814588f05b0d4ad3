"""Accuracy before labels arrive: a served classifier's recent confidences, averaged when Prometheus scrapes.

A calibrated classifier expects to be right as often as it is confident (:mod:`fasttrack.monitoring.performance`
owns that estimate and the calibration that says whether it holds). The server keeps, per model version, the
class probabilities of its last predictions in a :class:`ConfidenceWindow` and exports their mean confidence as
``fasttrack_estimated_accuracy``, only for a version whose recorded calibration is trusted (the predictor makes no
window for the others).

The request path appends the call's probability matrix, as it is (:meth:`ConfidenceWindow.observe`: one deque append
and a trim, no loop over rows, no arithmetic: about 0.5 µs, where taking each row's maximum there would cost 2-3 µs);
the confidences and their mean are computed at scrape time (:meth:`ConfidenceWindow.estimate`).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import numpy as np

from fasttrack.monitoring.performance import estimated_accuracy


class ConfidenceWindow:
    """The probabilities of a version's last ``window`` predicted rows, and their mean confidence once ``min_rows``
    are in.

    The deque holds one probability matrix per model call, of at most ``window`` rows; the oldest matrices are
    dropped as soon as the others cover ``window`` rows without them, so it holds fewer than ``2 * window`` rows
    whatever the calls' sizes. The matrices are the ones the predictor answered with, kept by reference: nothing
    writes into them after the model call (answers and the inference log only read them). The request path (event
    loop or thread pool) appends and trims under an uncontended lock; ``deque.copy`` is one operation under the
    interpreter lock, so the scrape takes none.
    """

    def __init__(self, window: int, min_rows: int) -> None:
        if not 1 <= min_rows <= window:
            raise ValueError(f"min_rows must be between 1 and window ({window}), got {min_rows}")
        self.window = window
        self.min_rows = min_rows
        self._recent: deque[np.ndarray[Any, Any]] = deque()
        self._rows = 0
        self._lock = threading.Lock()

    def observe(self, probabilities: np.ndarray[Any, Any]) -> None:
        """Remember one call's ``[N, k]`` class probabilities (O(1) amortised per call: nothing is computed here)."""
        rows = len(probabilities)
        if rows > self.window:
            probabilities = probabilities[-self.window :].copy()  # a view would keep the whole batch alive
            rows = self.window
        if not rows:
            return
        recent = self._recent
        with self._lock:
            recent.append(probabilities)
            self._rows += rows
            while self._rows - len(recent[0]) >= self.window:
                self._rows -= len(recent.popleft())

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
