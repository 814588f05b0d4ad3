"""Live accuracy from delayed labels: recent predictions by id, joined with the true labels sent back later.

Every prediction the server makes gets an id (:meth:`FeedbackWindow.new_id`) and is remembered in a bounded
window (:meth:`FeedbackWindow.record`): the last ``capacity`` predictions, each for at most ``ttl`` seconds when a
TTL is set. When the true labels arrive, :meth:`FeedbackWindow.join` pairs them with the predictions still in
the window and answers for every id: ``matched``, ``unknown`` (never issued here, or already dropped from the
window), ``expired`` (older than the TTL), ``duplicate`` (its label was already received) or ``invalid`` (the
label is not a possible value). Nothing raises for a bad id: each is reported so the client can see why.

The last ``metrics_window`` joined pairs give the live metrics (:meth:`FeedbackWindow.metrics`): accuracy for a
classifier, RMSE and MAE for a regressor. No HTTP in here; thread-safe.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fasttrack.features.rules import category_text

Task = Literal["classification", "regression"]
FeedbackOutcome = Literal["matched", "unknown", "expired", "duplicate", "invalid"]
#: Every outcome of a feedback item, in the order they are reported and counted.
OUTCOMES: tuple[FeedbackOutcome, ...] = ("matched", "unknown", "expired", "duplicate", "invalid")

DEFAULT_CAPACITY = 10_000
DEFAULT_METRICS_WINDOW = 1000
DEFAULT_MIN_SAMPLES = 100


@dataclass(frozen=True)
class FeedbackItem:
    """What happened to one (id, true label) pair: the outcome, the values joined, and a reason when not matched."""

    id: str
    outcome: FeedbackOutcome
    predicted: Any = None
    actual: Any = None
    reason: str | None = None


@dataclass(frozen=True)
class FeedbackResult:
    """The answer to one feedback batch: one item per pair sent, in order."""

    items: list[FeedbackItem]

    @property
    def counts(self) -> dict[FeedbackOutcome, int]:
        """How many items had each outcome (every outcome present, zeros included)."""
        counts = dict.fromkeys(OUTCOMES, 0)
        for item in self.items:
            counts[item.outcome] += 1
        return counts

    @property
    def matched(self) -> int:
        """How many labels were joined with their prediction."""
        return self.counts["matched"]

    def ids(self, outcome: FeedbackOutcome) -> list[str]:
        """The ids that had ``outcome``, in the order sent."""
        return [item.id for item in self.items if item.outcome == outcome]

    @property
    def unknown_ids(self) -> list[str]:
        """Ids never issued by this server, or already dropped from the window."""
        return self.ids("unknown")

    @property
    def expired_ids(self) -> list[str]:
        """Ids whose prediction is older than the window's TTL."""
        return self.ids("expired")

    @property
    def duplicate_ids(self) -> list[str]:
        """Ids whose label had already been received (earlier, or earlier in the same batch)."""
        return self.ids("duplicate")

    @property
    def invalid_ids(self) -> list[str]:
        """Ids sent with a label that is not a possible value; their prediction still waits for a valid one."""
        return self.ids("invalid")


@dataclass(frozen=True)
class LiveMetrics:
    """Metrics over the last joined pairs; a metric is ``None`` until ``min_samples`` pairs were joined."""

    task: Task
    samples: int
    accuracy: float | None = None
    rmse: float | None = None
    mae: float | None = None


@dataclass
class _Entry:
    prediction: Any
    recorded_at: float
    joined: bool = field(default=False)


class FeedbackWindow:
    """Recent predictions by id, joined with delayed true labels into live accuracy (or RMSE and MAE).

    ``task`` decides how labels compare: class labels by their text (``1``, ``1.0`` and ``"1"`` are one label;
    ``True`` is ``"true"``), regression targets as numbers. ``capacity`` bounds how many predictions are kept
    (the oldest go first); ``ttl`` (seconds, optional) how long. ``labels``, for a classifier, are the model's
    classes: a true label outside them is ``invalid``. Live metrics cover the last ``metrics_window`` joined
    pairs and are reported once ``min_samples`` pairs were joined, so a handful of labels does not fire alerts.
    ``clock`` is for tests.
    """

    def __init__(
        self,
        task: Task,
        *,
        capacity: int = DEFAULT_CAPACITY,
        ttl: float | None = None,
        labels: Sequence[Any] | None = None,
        metrics_window: int = DEFAULT_METRICS_WINDOW,
        min_samples: int = DEFAULT_MIN_SAMPLES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"the feedback window must hold at least one prediction, got {capacity}")
        if ttl is not None and ttl <= 0:
            raise ValueError(f"the feedback TTL must be positive (or None for no TTL), got {ttl}")
        if not 1 <= min_samples <= metrics_window:
            raise ValueError(f"min_samples must be between 1 and metrics_window ({metrics_window}), got {min_samples}")
        self.task = task
        self.capacity = capacity
        self.ttl = ttl
        self.min_samples = min_samples
        self._labels = None if labels is None else {category_text(label) for label in labels}
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # Classification: 1.0 for a correct prediction, 0.0 for a wrong one. Regression: prediction - truth.
        self._scores: deque[float] = deque(maxlen=metrics_window)

    @staticmethod
    def new_id() -> str:
        """A new prediction id: 32 random hex digits (128 bits; about five times cheaper than ``uuid4().hex``)."""
        return FeedbackWindow.new_ids(1)[0]

    @staticmethod
    def new_ids(count: int) -> list[str]:
        """``count`` new prediction ids (see :meth:`new_id`), from one read of the system's randomness."""
        digits = os.urandom(16 * count).hex()
        return [digits[start : start + 32] for start in range(0, 32 * count, 32)]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def record(self, prediction_id: str, prediction: Any) -> None:
        """Remember one prediction under its id, dropping the oldest beyond ``capacity`` or the TTL."""
        self.record_many([(prediction_id, prediction)])

    def record_many(self, pairs: Iterable[tuple[str, Any]]) -> None:
        """Remember a batch of (id, prediction) pairs; cheap enough for the request path (O(1) per pair)."""
        now = self._clock()
        with self._lock:
            entries = self._entries
            for prediction_id, prediction in pairs:
                entries[prediction_id] = _Entry(prediction, now)
                entries.move_to_end(prediction_id)
            while len(entries) > self.capacity:
                entries.popitem(last=False)
            if self.ttl is not None:
                oldest = now - self.ttl
                while entries and next(iter(entries.values())).recorded_at < oldest:
                    entries.popitem(last=False)

    def join(self, items: Iterable[tuple[str, Any]]) -> FeedbackResult:
        """Join (id, true label) pairs with the predictions in the window; one :class:`FeedbackItem` per pair."""
        now = self._clock()
        results: list[FeedbackItem] = []
        with self._lock:
            for prediction_id, actual in items:
                results.append(self._join_one(prediction_id, actual, now))
        return FeedbackResult(results)

    def metrics(self) -> LiveMetrics:
        """Accuracy (classification) or RMSE and MAE (regression) over the last joined pairs."""
        with self._lock:
            scores = list(self._scores)
        samples = len(scores)
        if samples < self.min_samples:
            return LiveMetrics(self.task, samples)
        if self.task == "classification":
            return LiveMetrics(self.task, samples, accuracy=math.fsum(scores) / samples)
        rmse = math.sqrt(math.fsum(e * e for e in scores) / samples)
        return LiveMetrics(self.task, samples, rmse=rmse, mae=math.fsum(abs(e) for e in scores) / samples)

    def _join_one(self, prediction_id: str, actual: Any, now: float) -> FeedbackItem:
        entry = self._entries.get(prediction_id)
        if entry is None:
            reason = f"unknown id: not issued by this server, or older than the last {self.capacity} predictions"
            if self.ttl is not None:
                reason += f" or {self.ttl:g} seconds"
            return FeedbackItem(prediction_id, "unknown", actual=actual, reason=reason)
        if self.ttl is not None and entry.recorded_at < now - self.ttl:
            del self._entries[prediction_id]
            reason = f"expired: the prediction is older than {self.ttl:g} seconds"
            return FeedbackItem(prediction_id, "expired", entry.prediction, actual, reason)
        if entry.joined:
            reason = "duplicate: the label of this prediction was already received"
            return FeedbackItem(prediction_id, "duplicate", entry.prediction, actual, reason)
        score, problem = self._score(entry.prediction, actual)
        if score is None:
            return FeedbackItem(prediction_id, "invalid", entry.prediction, actual, problem)
        entry.joined = True
        self._scores.append(score)
        return FeedbackItem(prediction_id, "matched", entry.prediction, actual)

    def _score(self, predicted: Any, actual: Any) -> tuple[float | None, str | None]:
        if self.task == "classification":
            label = category_text(actual)
            if label is None:
                return None, "invalid: the true label is missing"
            if self._labels is not None and label not in self._labels:
                return None, f"invalid: {actual!r} is not one of the model's labels"
            return (1.0 if category_text(predicted) == label else 0.0), None
        if isinstance(actual, bool) or not isinstance(actual, int | float) or not math.isfinite(actual):
            return None, f"invalid: the true value must be a finite number, got {actual!r}"
        return float(predicted) - float(actual), None
