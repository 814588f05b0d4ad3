"""Live accuracy from delayed labels: recent predictions by id, joined with the true labels sent back later.

Every prediction the server makes gets an id (:meth:`FeedbackWindow.new_id`) and is remembered in a bounded
window (:meth:`FeedbackWindow.record`): the last ``capacity`` predictions, each for at most ``ttl`` seconds when a
TTL is set. When the true labels arrive, :meth:`FeedbackWindow.join` pairs them with the predictions still in
the window and answers for every id: ``matched``, ``unknown`` (never issued here, or already dropped from the
window), ``expired`` (older than the TTL), ``duplicate`` (its label was already received) or ``invalid`` (the
label is not a possible value). Nothing raises for a bad id: each is reported so the client can see why.

The last ``metrics_window`` joined pairs give the live metrics (:meth:`FeedbackWindow.metrics`): accuracy for a
classifier, RMSE and MAE for a regressor. No HTTP in here; thread-safe.

Bounds per client, so that one client cannot crowd out the others (a client is the caller's API key id, else its
address: :data:`CLIENT`, set for each request by the server's load limits). A client has at most
``client_capacity`` predictions waiting for their label: its newer predictions push out its own older ones, never
another client's (a 10,000-row batch once pushed a real client's pending prediction out of the window). And a
client's labels hold at most ``client_share`` of the live window: beyond it, a client's new label replaces its own
oldest one (1,000 wrong labels for a client's own 1,000 predictions once took the live accuracy from 1.0 to 0.0).
What these bounds push out is counted (``on_limit``: ``pending`` and ``share``, see :data:`LIMITS`).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from fasttrack.features.rules import category_text

Task = Literal["classification", "regression"]
FeedbackOutcome = Literal["matched", "unknown", "expired", "duplicate", "invalid"]
#: Every outcome of a feedback item, in the order they are reported and counted.
OUTCOMES: tuple[FeedbackOutcome, ...] = ("matched", "unknown", "expired", "duplicate", "invalid")

DEFAULT_CAPACITY = 10_000
DEFAULT_METRICS_WINDOW = 1000
DEFAULT_MIN_SAMPLES = 100
DEFAULT_CLIENT_CAPACITY = 1000
DEFAULT_CLIENT_SHARE = 0.5
#: What the feedback bounds push out or refuse, as counted: ``pending`` (a client's waiting prediction pushed out by
#: its own newer ones), ``share`` (a client's label in the live window replaced by its own newer one), ``items``
#: (labels of a POST /feedback over its item limit, refused whole).
LIMITS: Final = ("pending", "share", "items")
#: Whose predictions and labels these are, for the per-client bounds: the caller's API key id, else its address
#: (set by :mod:`fasttrack.serving.limits` for each request; ``""`` outside a request).
CLIENT: ContextVar[str] = ContextVar("fasttrack_client", default="")


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


@dataclass(slots=True)
class _Entry:
    prediction: Any
    recorded_at: float
    client: str
    joined: bool = field(default=False)


@dataclass(slots=True)
class _Score:
    """One joined label in the live window: its score, its client, and whether it still counts."""

    client: str
    score: float
    live: bool = True


class FeedbackWindow:
    """Recent predictions by id, joined with delayed true labels into live accuracy (or RMSE and MAE).

    ``task`` decides how labels compare: class labels by their text (``1``, ``1.0`` and ``"1"`` are one label;
    ``True`` is ``"true"``), regression targets as numbers. ``capacity`` bounds how many predictions are kept
    (the oldest go first); ``ttl`` (seconds, optional) how long. ``labels``, for a classifier, are the model's
    classes: a true label outside them is ``invalid``. Live metrics cover the last ``metrics_window`` joined
    pairs and are reported once ``min_samples`` pairs were joined, so a handful of labels does not fire alerts.
    ``client_capacity`` and ``client_share`` bound each client (see the module docstring); ``on_limit(what, count)``
    is told what they push out. ``clock`` is for tests.
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
        client_capacity: int = DEFAULT_CLIENT_CAPACITY,
        client_share: float = DEFAULT_CLIENT_SHARE,
        on_limit: Callable[[str, int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"the feedback window must hold at least one prediction, got {capacity}")
        if ttl is not None and ttl <= 0:
            raise ValueError(f"the feedback TTL must be positive (or None for no TTL), got {ttl}")
        if not 1 <= min_samples <= metrics_window:
            raise ValueError(f"min_samples must be between 1 and metrics_window ({metrics_window}), got {min_samples}")
        if client_capacity < 1:
            raise ValueError(f"a client must be able to keep at least one prediction, got {client_capacity}")
        if not 0 < client_share <= 1:
            raise ValueError(f"the client share of the live window must be in (0, 1], got {client_share}")
        self.task = task
        self.capacity = capacity
        self.ttl = ttl
        self.min_samples = min_samples
        self.metrics_window = metrics_window
        self.client_capacity = client_capacity
        #: Most labels of one client in the live window.
        self.client_scores = max(1, int(client_share * metrics_window))
        self.on_limit = on_limit
        self._labels = None if labels is None else {category_text(label) for label in labels}
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._pending: dict[str, OrderedDict[str, None]] = {}  # each client's waiting predictions, oldest first
        # Classification: 1.0 for a correct prediction, 0.0 for a wrong one. Regression: prediction - truth. Scores
        # replaced by their client's newer ones stay in the deque, not live, until compacted away.
        self._scores: deque[_Score] = deque()
        self._live = 0
        self._client_scores: dict[str, deque[_Score]] = {}

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

    def pending(self, client: str) -> int:
        """How many of ``client``'s predictions wait for their label."""
        with self._lock:
            return len(self._pending.get(client, ()))

    def record(self, prediction_id: str, prediction: Any, client: str | None = None) -> None:
        """Remember one prediction under its id, dropping the oldest beyond the capacities or the TTL."""
        self.record_many([(prediction_id, prediction)], client)

    def record_many(self, pairs: Iterable[tuple[str, Any]], client: str | None = None) -> None:
        """Remember a batch of (id, prediction) pairs of ``client`` (default: :data:`CLIENT`); O(1) per pair.

        The client's oldest predictions beyond ``client_capacity`` go first, then the oldest of all beyond
        ``capacity``, then those older than the TTL.
        """
        now = self._clock()
        who = CLIENT.get() if client is None else client
        pushed = 0
        with self._lock:
            entries = self._entries
            mine = self._pending.get(who)
            if mine is None:
                mine = self._pending[who] = OrderedDict()
            for prediction_id, prediction in pairs:
                if prediction_id in entries:
                    self._forget(prediction_id, entries.pop(prediction_id).client)
                entries[prediction_id] = _Entry(prediction, now, who)
                mine[prediction_id] = None
            if not mine:
                del self._pending[who]
            while len(mine) > self.client_capacity:
                del entries[mine.popitem(last=False)[0]]
                pushed += 1
            while len(entries) > self.capacity:
                dropped, entry = entries.popitem(last=False)
                self._forget(dropped, entry.client)
            if self.ttl is not None:
                oldest = now - self.ttl
                while entries and next(iter(entries.values())).recorded_at < oldest:
                    dropped, entry = entries.popitem(last=False)
                    self._forget(dropped, entry.client)
        if pushed and self.on_limit is not None:
            self.on_limit("pending", pushed)

    def _forget(self, prediction_id: str, client: str) -> None:
        """Drop ``prediction_id`` from its client's waiting predictions (under the lock)."""
        mine = self._pending.get(client)
        if mine is not None:
            mine.pop(prediction_id, None)
            if not mine:
                del self._pending[client]

    def join(self, items: Iterable[tuple[str, Any]], client: str | None = None) -> FeedbackResult:
        """Join (id, true label) pairs sent by ``client`` (default: :data:`CLIENT`) with the predictions in the
        window; one :class:`FeedbackItem` per pair. The client's labels hold at most ``client_share`` of the live
        window (its oldest are replaced)."""
        now = self._clock()
        who = CLIENT.get() if client is None else client
        results: list[FeedbackItem] = []
        replaced = 0
        with self._lock:
            for prediction_id, actual in items:
                item, score = self._join_one(prediction_id, actual, now)
                results.append(item)
                if score is not None:
                    replaced += self._add_score(who, score)
        if replaced and self.on_limit is not None:
            self.on_limit("share", replaced)
        return FeedbackResult(results)

    def _add_score(self, client: str, score: float) -> int:
        """Put one joined label's score in the live window (under the lock); 1 if it replaced the client's oldest."""
        mine = self._client_scores.get(client)
        if mine is None:
            mine = self._client_scores[client] = deque()
        replaced = 0
        if len(mine) >= self.client_scores:
            mine.popleft().live = False
            self._live -= 1
            replaced = 1
        cell = _Score(client, score)
        mine.append(cell)
        self._scores.append(cell)
        self._live += 1
        scores = self._scores
        while self._live > self.metrics_window or (scores and not scores[0].live):
            oldest = scores.popleft()
            if oldest.live:  # the oldest live label of all is its client's oldest
                owner = self._client_scores[oldest.client]
                owner.popleft()
                if not owner:
                    del self._client_scores[oldest.client]
                self._live -= 1
        if len(scores) > 2 * self.metrics_window:  # replaced scores in the middle: keep the deque small
            self._scores = deque(cell for cell in scores if cell.live)
        return replaced

    def metrics(self) -> LiveMetrics:
        """Accuracy (classification) or RMSE and MAE (regression) over the last joined pairs."""
        with self._lock:
            scores = [cell.score for cell in self._scores if cell.live]
        samples = len(scores)
        if samples < self.min_samples:
            return LiveMetrics(self.task, samples)
        if self.task == "classification":
            return LiveMetrics(self.task, samples, accuracy=math.fsum(scores) / samples)
        rmse = math.sqrt(math.fsum(e * e for e in scores) / samples)
        return LiveMetrics(self.task, samples, rmse=rmse, mae=math.fsum(abs(e) for e in scores) / samples)

    def _join_one(self, prediction_id: str, actual: Any, now: float) -> tuple[FeedbackItem, float | None]:
        entry = self._entries.get(prediction_id)
        if entry is None:
            reason = (
                f"unknown id: not issued by this server, or older than the last {self.capacity} predictions (or the "
                f"last {self.client_capacity} of its client)"
            )
            if self.ttl is not None:
                reason += f" or {self.ttl:g} seconds"
            return FeedbackItem(prediction_id, "unknown", actual=actual, reason=reason), None
        if self.ttl is not None and entry.recorded_at < now - self.ttl:
            del self._entries[prediction_id]
            self._forget(prediction_id, entry.client)
            reason = f"expired: the prediction is older than {self.ttl:g} seconds"
            return FeedbackItem(prediction_id, "expired", entry.prediction, actual, reason), None
        if entry.joined:
            reason = "duplicate: the label of this prediction was already received"
            return FeedbackItem(prediction_id, "duplicate", entry.prediction, actual, reason), None
        score, problem = self._score(entry.prediction, actual)
        if score is None:
            return FeedbackItem(prediction_id, "invalid", entry.prediction, actual, problem), None
        entry.joined = True
        self._forget(prediction_id, entry.client)  # no longer waiting: its client may make room for a new one
        return FeedbackItem(prediction_id, "matched", entry.prediction, actual), score

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
