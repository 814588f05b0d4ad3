"""Every metric the server exports, in one place, named the Prometheus way and labelled by ``model`` and ``version``.

:class:`ServerMetrics` creates the metric objects (one instance per app, in a registry of its own, so tests can
build many apps in one process); :meth:`ServerMetrics.for_model` binds them to one loaded model version, and
:meth:`ModelMetrics.inference` is the one context manager around inference that records its time and outcome.

With several worker processes (``--workers N``) the server runs in Prometheus' multiprocess mode: the parent sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start, every process writes its samples there, and ``/metrics``
(see :func:`render`) merges them, so any worker answers for all of them.

The inference log's writer (:mod:`fasttrack.monitoring.log_writer`) counts what it wrote and dropped in
:class:`InferenceLogMetrics` (zeros when the log is off).

Live monitoring is exported by :class:`LiveCollector`, computed when Prometheus scrapes (never on the request path,
which only appends to the windows): the drift of every monitored feature and of the predictions
(``fasttrack_feature_drift``, with the PSI thresholds in ``fasttrack_feature_drift_threshold``) and the live
accuracy, or RMSE and MAE, from the labels sent to ``/feedback``; for a classifier, its calibration error and, when
that is trusted, the accuracy estimated from its recent confidences. Those windows live in each process: with
several workers, a scrape shows the windows of the worker that answers it.
"""

from __future__ import annotations

import os
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from fasttrack.monitoring.performance import CalibrationVerdict
from fasttrack.serving.drift import DriftMonitor
from fasttrack.serving.estimate import ConfidenceWindow
from fasttrack.serving.feedback import LIMITS as FEEDBACK_LIMITS
from fasttrack.serving.feedback import OUTCOMES as FEEDBACK_OUTCOMES
from fasttrack.serving.feedback import FeedbackOutcome, FeedbackWindow
from fasttrack.serving.http_metrics import UNMEASURED, HttpMetrics

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

#: Model time per request: from tens of microseconds (ONNX, one row) to seconds (a big batch through sklearn).
INFERENCE_BUCKETS: Final = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
#: Regression outputs: one family serves every model, so the buckets are symmetric and roughly logarithmic.
_POSITIVE_VALUES = (0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1e3, 1e4, 1e5, 1e6)
VALUE_BUCKETS: Final = (*sorted(-v for v in _POSITIVE_VALUES), 0.0, *_POSITIVE_VALUES)

OUTCOMES: Final = ("success", "invalid", "error")
RELOAD_OUTCOMES: Final = ("success", "failure")
#: Distinct predicted labels counted one by one; more than this (a mislabelled regression) are lumped together.
MAX_LABELS: Final = 100
OTHER_LABEL: Final = "__other__"
#: The inference log's tables and the reasons it drops rows: ``log_layout.TABLES`` and ``log_writer.DROP_REASONS``
#: (a test holds them equal), spelled here so that a server without the log never imports pyarrow.
LOG_TABLES: Final = ("predictions", "feedback")
LOG_DROP_REASONS: Final = ("queue_full", "store_error", "shutdown")
#: Why a request was dropped by the load limits (``fasttrack.serving.limits.REASONS``; a test holds them equal).
DROP_REASONS: Final = ("shed", "timeout", "client_gone")


def multiprocess_mode() -> bool:
    """Whether samples go to ``PROMETHEUS_MULTIPROC_DIR`` (set before ``prometheus_client`` was imported)."""
    return bool(os.environ.get(MULTIPROC_ENV))


class ServerMetrics:
    """The server's own metric families, created in ``registry`` (a new one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        # The process' CPU and memory: in multiprocess mode, of the worker that answers the scrape.
        self._process = ProcessCollector(registry=self.registry)
        self._metric_series: set[tuple[str, str, str]] = set()
        model = ["model", "version"]
        self.predictions = Counter(
            "fasttrack_predictions",
            "Prediction requests by outcome: success, invalid (rejected input) or error (the model failed).",
            [*model, "outcome"],
            registry=self.registry,
        )
        self.rows = Counter(
            "fasttrack_prediction_rows", "Rows predicted (a batch counts each row).", model, registry=self.registry
        )
        self.model_calls = Counter(
            "fasttrack_model_calls",
            "Calls to the model: requests reaching the model in the same event-loop iteration share one call, so "
            "fasttrack_predictions_total{outcome='success'} / fasttrack_model_calls_total is the requests per call.",
            model,
            registry=self.registry,
        )
        self.inference = Histogram(
            "fasttrack_inference_seconds",
            "Model time per prediction request (input building and inference; no HTTP, no validation).",
            model,
            buckets=INFERENCE_BUCKETS,
            registry=self.registry,
        )
        self.labels = Counter(
            "fasttrack_predicted_label",
            "Rows predicted per label (classifiers).",
            [*model, "label"],
            registry=self.registry,
        )
        self.values = Histogram(
            "fasttrack_prediction_value",
            "Predicted values (regressors).",
            model,
            buckets=VALUE_BUCKETS,
            registry=self.registry,
        )
        self.unseen = Counter(
            "fasttrack_unseen_category",
            "Values of a categorical feature never seen in training (served; the model treats them as unknown).",
            [*model, "feature"],
            registry=self.registry,
        )
        self.out_of_range = Counter(
            "fasttrack_out_of_range",
            "Values of a numeric feature outside the range seen in training (served).",
            [*model, "feature"],
            registry=self.registry,
        )
        self.missing = Counter(
            "fasttrack_missing_value",
            "Missing values of a feature the training data always had (served; the model imputes them).",
            [*model, "feature"],
            registry=self.registry,
        )
        self.ignored = Counter(
            "fasttrack_ignored_field",
            "Fields of input records ignored: columns of the training data the model does not use (by name), and "
            "fields it never saw (field '__unknown__'; ignored by /invocations, refused elsewhere unless "
            "FASTTRACK_EXTRA_FIELDS=ignore).",
            [*model, "field"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "fasttrack_model_info",
            "1 for the model version being served, 0 for versions served before.",
            model,
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.model_ready = Gauge(
            "fasttrack_model_ready",
            "1 when a model is loaded and serving (with several workers: in every one of them), else 0.",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.model_metric = Gauge(
            "fasttrack_model_metric",
            "The served model's metrics on its held-out test data, as recorded at training.",
            [*model, "metric"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.reloads = Counter(
            "fasttrack_model_reloads",
            "Attempts to load a new model version: success (labelled with the version swapped in) or failure "
            "(labelled with the version that keeps serving; the refused one is in the log).",
            [*model, "outcome"],
            registry=self.registry,
        )
        # Failure drills (issue 17): a registry that cannot be asked is told apart from a version that was refused.
        self.registry_check_failures = Counter(
            "fasttrack_registry_check_failures",
            "Checks of the registry (polls and POST /admin/reload) that got no answer to serve from: the registry "
            "unreachable or refusing, the model or its alias gone. The served version keeps serving; each is also "
            "a failure of fasttrack_model_reloads_total.",
            ["model"],
            registry=self.registry,
        )
        self.feedback = Counter(
            "fasttrack_feedback",
            "Labels received by POST /feedback, by outcome: matched, unknown, expired, duplicate or invalid.",
            [*model, "outcome"],
            registry=self.registry,
        )
        # Access control (serving/auth.py): what was refused, and how many keys are in force; never a secret.
        self.auth_refused = Counter(
            "fasttrack_auth_refused",
            "Requests refused by access control, by reason: missing (no key, 401), invalid (unknown key, 401) or "
            "scope (403; labelled with the key's id, else 'none').",
            ["reason", "key"],
            registry=self.registry,
        )
        self.api_keys = Gauge(
            "fasttrack_api_keys",
            "API keys in force (FASTTRACK_API_KEYS and the key file as last read); 0 when access control is off.",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.dropped = Counter(
            "fasttrack_requests_dropped",
            "Requests not served because of load, by reason: shed (503: FASTTRACK_MAX_IN_FLIGHT requests in flight "
            "and no slot within FASTTRACK_QUEUE_TIMEOUT), timeout (504 after FASTTRACK_REQUEST_TIMEOUT), client_gone "
            "(cancelled unanswered: the client disconnected first).",
            ["reason"],
            registry=self.registry,
        )
        for reason in DROP_REASONS:
            self.dropped.labels(reason)
        self.feedback_limited = Counter(
            "fasttrack_feedback_limited",
            "Feedback bounds at work, by what: pending (a client's oldest waiting prediction pushed out by its own "
            "newer ones, FASTTRACK_FEEDBACK_CLIENT_CAPACITY), share (a client's oldest label in the live window "
            "replaced by its newer one, FASTTRACK_FEEDBACK_CLIENT_SHARE), items (labels refused with their 413, "
            "FASTTRACK_FEEDBACK_MAX_ITEMS).",
            [*model, "what"],
            registry=self.registry,
        )
        self.inference_log = InferenceLogMetrics(self.registry)
        self.live = LiveCollector()
        self.registry.register(self.live)
        self.http = HttpMetrics(self.registry, excluded=UNMEASURED, immediate=multiprocess_mode())

    def for_model(
        self,
        model: str,
        version: str,
        *,
        classifier: bool,
        labels: Sequence[Any] = (),
        categorical: Sequence[str] = (),
        numeric: Sequence[str] = (),
        required: Sequence[str] = (),
        ignored: Sequence[str] = (),
        drift: DriftMonitor | None = None,
        feedback: FeedbackWindow | None = None,
        calibration: CalibrationVerdict | None = None,
        estimate: ConfidenceWindow | None = None,
    ) -> ModelMetrics:
        """The metrics of one loaded model version, with every labelled child created up front (zeros show).

        ``categorical`` features get an unseen-category counter, ``numeric`` ones an out-of-range counter,
        ``required`` ones (the training data always had them) a missing-value counter; ``ignored`` are the field
        names counted when left out (the training data's other columns and ``__unknown__``).
        ``drift`` and ``feedback`` are the version's live windows, exported at scrape time while it is served, with a
        classifier's ``calibration`` and, when that is trusted, the ``estimate`` window of its confidences.
        """
        return ModelMetrics(
            self,
            model,
            version,
            classifier=classifier,
            labels=labels,
            categorical=categorical,
            numeric=numeric,
            required=required,
            ignored=ignored,
            drift=drift,
            feedback=feedback,
            calibration=calibration,
            estimate=estimate,
        )

    def serving(
        self,
        model: str,
        version: str,
        previous: tuple[str, str] | None = None,
        metrics: dict[str, float] | None = None,
        live: ModelMetrics | None = None,
    ) -> None:
        """Mark ``model``/``version`` (with its training ``metrics``) as served, and ``previous`` as no longer.

        Both reload outcomes of the served version start at 0: a counter that first appears at 1 has no earlier
        sample, so ``increase()`` (and the reload alert) would miss the first failure. ``live`` is the served
        version's bound metrics, whose drift and feedback windows the scrape-time collector reads from now on.
        """
        if previous is not None and previous != (model, version):
            self.model_info.labels(*previous).set(0)
            for labels in list(self._metric_series):
                if labels[:2] == previous:
                    self.model_metric.remove(*labels)
                    self._metric_series.discard(labels)
        self.model_info.labels(model, version).set(1)
        for name, value in (metrics or {}).items():
            self.model_metric.labels(model, version, name).set(value)
            self._metric_series.add((model, version, name))
        for outcome in RELOAD_OUTCOMES:
            self.reloads.labels(model, version, outcome)
        self.live.watch(live if live is not None and (live.model, live.version) == (model, version) else None)
        self.model_ready.set(1)

    def reload(self, model: str, version: str, outcome: str) -> None:
        """Count one attempt to load a new version: ``success`` under the version swapped in, ``failure`` under
        the version that keeps serving (the one whose failure counter exists at 0 since it was swapped in)."""
        self.reloads.labels(model, version, outcome).inc()

    def registry_check_failed(self, model: str) -> None:
        """Count one check of the registry that failed before any version could be tried."""
        self.registry_check_failures.labels(model).inc()

    def not_ready(self) -> None:
        """Mark the process as serving no model (yet)."""
        self.model_ready.set(0)

    def render(self) -> bytes:
        """The exposition text of every metric (merged over worker processes in multiprocess mode)."""
        if multiprocess_mode():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            registry.register(self._process)
            registry.register(self.live)  # this worker's windows: they live in each process
            return generate_latest(registry)
        return generate_latest(self.registry)


class InferenceLogMetrics:
    """The inference log's counters (:class:`~fasttrack.monitoring.log_writer.LogCounters`), by table.

    ``fasttrack_inference_log_written_rows_total{table}``, ``fasttrack_inference_log_files_total{table}``,
    ``fasttrack_inference_log_dropped_rows_total{table, reason}`` (``queue_full``, ``store_error``, ``shutdown``) and
    the gauge ``fasttrack_inference_log_queue_rows`` (rows waiting for the writer when it last took the queue; the
    sum over workers). Every series exists from the start at 0, log on or off, so that ``increase()`` sees the first
    dropped row. Updated by the writer thread, never on the request path (but for rows dropped there).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        written = Counter(
            "fasttrack_inference_log_written_rows",
            "Rows written to the inference log (FASTTRACK_INFERENCE_LOG), by table: predictions or feedback.",
            ["table"],
            registry=registry,
        )
        files = Counter(
            "fasttrack_inference_log_files",
            "Parquet files written to the inference log, by table.",
            ["table"],
            registry=registry,
        )
        dropped = Counter(
            "fasttrack_inference_log_dropped_rows",
            "Rows the inference log will never hold, by table and reason: queue_full (the writer fell behind; the "
            "requests were served), store_error (the store refused their file), shutdown (not written in time).",
            ["table", "reason"],
            registry=registry,
        )
        self._queue = Gauge(
            "fasttrack_inference_log_queue_rows",
            "Rows waiting for the inference log's writer when it last took its queue (summed over workers).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._written = {table: written.labels(table) for table in LOG_TABLES}
        self._files = {table: files.labels(table) for table in LOG_TABLES}
        self._dropped = {(t, r): dropped.labels(t, r) for t in LOG_TABLES for r in LOG_DROP_REASONS}

    def written(self, table: str, rows: int) -> None:
        """Count rows written (in one file)."""
        self._written[table].inc(rows)

    def file(self, table: str) -> None:
        """Count one file written."""
        self._files[table].inc()

    def dropped(self, table: str, reason: str, rows: int) -> None:
        """Count rows dropped for ``reason``."""
        self._dropped[table, reason].inc(rows)

    def queued(self, rows: int) -> None:
        """Record the rows the queue held when the writer took it."""
        self._queue.set(rows)


class ModelMetrics:
    """:class:`ServerMetrics` bound to one model version: the hot path touches pre-made children only."""

    def __init__(
        self,
        server: ServerMetrics,
        model: str,
        version: str,
        *,
        classifier: bool,
        labels: Sequence[Any],
        categorical: Sequence[str],
        numeric: Sequence[str],
        required: Sequence[str] = (),
        ignored: Sequence[str] = (),
        drift: DriftMonitor | None = None,
        feedback: FeedbackWindow | None = None,
        calibration: CalibrationVerdict | None = None,
        estimate: ConfidenceWindow | None = None,
    ) -> None:
        self.model = model
        self.version = version
        self.classifier = classifier
        self.drift = drift
        self.feedback_window = feedback
        self.calibration = calibration
        self.estimate = estimate
        self._server = server
        self._outcomes = {o: server.predictions.labels(model, version, o) for o in OUTCOMES}
        self._rows = server.rows.labels(model, version)
        self._inference = server.inference.labels(model, version)
        self._calls = server.model_calls.labels(model, version)
        self._labels = {str(label): server.labels.labels(model, version, str(label)) for label in labels}
        self._values = None if classifier else server.values.labels(model, version)
        self._unseen = {f: server.unseen.labels(model, version, f) for f in categorical}
        self._out_of_range = {f: server.out_of_range.labels(model, version, f) for f in numeric}
        self._missing = {f: server.missing.labels(model, version, f) for f in required}
        self._ignored = {f: server.ignored.labels(model, version, f) for f in ignored}
        self._feedback = {o: server.feedback.labels(model, version, o) for o in FEEDBACK_OUTCOMES}
        self._feedback_limited = {w: server.feedback_limited.labels(model, version, w) for w in FEEDBACK_LIMITS}

    @contextmanager
    def inference(self, rows: int) -> Iterator[None]:
        """Time the model call inside and count its outcome: ``success`` (and ``rows``), or ``error`` on exception."""
        start = perf_counter()
        self._calls.inc()
        try:
            yield
        except BaseException:
            self._outcomes["error"].inc()
            raise
        self.inferred(rows, perf_counter() - start)

    def called(self) -> None:
        """Count one model call shared by several requests (each then counted by :meth:`inferred`)."""
        self._calls.inc()

    def inferred(self, rows: int, seconds: float) -> None:
        """Count one successful request of ``rows`` rows whose model call took ``seconds``."""
        self._inference.observe(seconds)
        self._outcomes["success"].inc()
        self._rows.inc(rows)

    def invalid(self) -> None:
        """Count a request whose input was rejected before reaching the model."""
        self._outcomes["invalid"].inc()

    def inputs(
        self,
        unseen: Mapping[str, int],
        out_of_range: Mapping[str, int],
        missing: Mapping[str, int] | None = None,
        ignored: Mapping[str, int] | None = None,
    ) -> None:
        """Count unusual but valid inputs, per feature, and the fields ignored, per field."""
        for counters, counts in (
            (self._unseen, unseen),
            (self._out_of_range, out_of_range),
            (self._missing, missing),
            (self._ignored, ignored),
        ):
            for name, count in (counts or {}).items():
                counters[name].inc(count)

    def feedback(self, counts: Mapping[FeedbackOutcome, int]) -> None:
        """Count the outcomes of one ``/feedback`` batch (outcome -> how many labels had it)."""
        for outcome, count in counts.items():
            if count:
                self._feedback[outcome].inc(count)

    def feedback_limited(self, what: str, count: int) -> None:
        """Count ``count`` predictions or labels a feedback bound pushed out or refused (``what``: see
        :data:`fasttrack.serving.feedback.LIMITS`)."""
        self._feedback_limited[what].inc(count)

    def outputs(self, values: Sequence[Any]) -> None:
        """Count predicted labels (classifiers) or observe predicted values (regressors)."""
        if self._values is not None:
            observe = self._values.observe
            for value in values:
                observe(value)
            return
        counts = {values[0]: 1} if len(values) == 1 else Tally(values)
        for label, count in counts.items():
            self._label(str(label)).inc(count)

    def _label(self, key: str) -> Any:
        child = self._labels.get(key)
        if child is None:
            if len(self._labels) >= MAX_LABELS:
                key = OTHER_LABEL
            child = self._labels.get(key) or self._server.labels.labels(self.model, self.version, key)
            self._labels[key] = child
        return child


@dataclass(frozen=True)
class _Watched:
    model: str
    version: str
    drift: DriftMonitor | None
    feedback: FeedbackWindow | None
    calibration: CalibrationVerdict | None = None
    estimate: ConfidenceWindow | None = None


class LiveCollector:
    """The served version's drift and live accuracy, computed at scrape time from its windows.

    Exports, labelled ``model`` and ``version``: ``fasttrack_feature_drift{feature, method}`` (PSI of every monitored
    feature and of the predictions, ``feature="__prediction__"``, plus KS for numbers, Jensen-Shannon distance for
    categories; a window reports once it holds the minimum rows), ``fasttrack_feature_drift_threshold{feature,
    method="psi"}`` (the same labels as the PSI series, so ``drift{method="psi"} > threshold`` matches one to one),
    ``fasttrack_live_samples`` (labels joined in the live window) and, once enough were joined,
    ``fasttrack_live_accuracy`` (classifiers) or ``fasttrack_live_rmse`` and ``fasttrack_live_mae`` (regressors).
    A classifier also exports ``fasttrack_calibration_error`` (the ECE recorded at training, when recorded) and,
    only when that calibration is trusted and the confidence window holds the drift window's minimum rows,
    ``fasttrack_estimated_accuracy`` (the mean confidence of the recent predictions).
    Only the served version is exported: a swapped-out version's gauges disappear with it.
    """

    def __init__(self) -> None:
        self._watched: _Watched | None = None

    def watch(self, bound: ModelMetrics | None) -> None:
        """Export the windows of ``bound`` (the served version) from now on; ``None`` exports nothing."""
        self._watched = (
            None
            if bound is None
            else _Watched(
                bound.model, bound.version, bound.drift, bound.feedback_window, bound.calibration, bound.estimate
            )
        )

    def describe(self) -> Iterable[Metric]:
        """The families, without samples (so registering does not compute anything)."""
        return self._families()

    def collect(self) -> Iterable[Metric]:
        """Compute the served version's drift scores and live metrics now."""
        watched = self._watched  # read once: a swap during the scrape does not mix two versions
        families = self._families()
        if watched is None:
            return families
        drift, threshold, accuracy, rmse, mae, samples, estimated, calibration_error = families
        model = [watched.model, watched.version]
        if watched.drift is not None:
            for score in watched.drift.compute():
                drift.add_metric([*model, score.feature, score.method], score.value)
            for feature, level in watched.drift.thresholds.items():
                threshold.add_metric([*model, feature, "psi"], level)
        if watched.feedback is not None:
            live = watched.feedback.metrics()
            samples.add_metric(model, live.samples)
            for family, value in ((accuracy, live.accuracy), (rmse, live.rmse), (mae, live.mae)):
                if value is not None:
                    family.add_metric(model, value)
        if watched.calibration is not None and watched.calibration.error is not None:
            calibration_error.add_metric(model, watched.calibration.error)
        estimate = watched.estimate.estimate() if watched.estimate is not None else None
        if estimate is not None:
            estimated.add_metric(model, estimate)
        return families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        model = ["model", "version"]
        return [
            GaugeMetricFamily(
                "fasttrack_feature_drift",
                "Drift of the recent inputs (and predictions, feature=__prediction__) from the training profile: "
                "psi for all, ks for numbers, js (Jensen-Shannon distance) for categories.",
                labels=[*model, "feature", "method"],
            ),
            GaugeMetricFamily(
                "fasttrack_feature_drift_threshold",
                "PSI above which a feature counts as drifted (FASTTRACK_DRIFT_THRESHOLD, FASTTRACK_DRIFT_THRESHOLDS).",
                labels=[*model, "feature", "method"],
            ),
            GaugeMetricFamily(
                "fasttrack_live_accuracy",
                "Accuracy over the last labels joined by POST /feedback (classifiers; once enough were joined).",
                labels=model,
            ),
            GaugeMetricFamily(
                "fasttrack_live_rmse",
                "RMSE over the last true values joined by POST /feedback (regressors; once enough were joined).",
                labels=model,
            ),
            GaugeMetricFamily(
                "fasttrack_live_mae",
                "MAE over the last true values joined by POST /feedback (regressors; once enough were joined).",
                labels=model,
            ),
            GaugeMetricFamily(
                "fasttrack_live_samples", "Labels joined in the live accuracy window (POST /feedback).", labels=model
            ),
            GaugeMetricFamily(
                "fasttrack_estimated_accuracy",
                "Accuracy estimated from the model's own confidences over the recent predictions, before labels arrive "
                "(classifiers whose calibration error is within FASTTRACK_CALIBRATION_MAX_ERROR; once the window "
                "holds FASTTRACK_DRIFT_MIN_ROWS rows).",
                labels=model,
            ),
            GaugeMetricFamily(
                "fasttrack_calibration_error",
                "Expected calibration error of the classifier on its held-out rows, as recorded at training.",
                labels=model,
            ),
        ]
