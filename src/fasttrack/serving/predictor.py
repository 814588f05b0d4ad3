"""The data plane: a loaded model that validates records against its training schema and predicts. No HTTP here.

:meth:`Predictor.predict` is the hot path. Records are validated by the feature contract's record driver
(:class:`~fasttrack.features.records.RecordDriver`: one small loop per record, no pandas), which names every bad
field and why, converts each value to the model's input and counts the valid but unusual values; the result is one
array per feature, which the model's :class:`~fasttrack.runtime.base.Runtime` turns into predictions.

Each predictor also owns its version's live monitoring windows: :meth:`Predictor.predict` appends every validated
batch (inputs and predictions) to the :class:`~fasttrack.serving.drift.DriftMonitor` and remembers every prediction
under a new id in the :class:`~fasttrack.serving.feedback.FeedbackWindow`, O(1) per row, and, for a classifier whose
recorded calibration is trusted, its probabilities to the :class:`~fasttrack.serving.estimate.ConfidenceWindow`
(O(1) per call); the scores are computed when Prometheus scrapes. A new version gets fresh windows, swapped in with
it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from fasttrack.config import ExtraFields, Settings
from fasttrack.data.schema import FeatureSchema, Label, Schema
from fasttrack.errors import BadRequestError, ConfigError, ModelLoadError, SchemaValidationError
from fasttrack.features.records import UNKNOWN_FIELD, ModelInput, RecordDriver
from fasttrack.monitoring.performance import CalibrationVerdict, calibration_verdict
from fasttrack.registry.model_folder import LoadedModel, ModelMetadata, load_model_folder
from fasttrack.registry.resolve import ResolvedModel, resolve_model
from fasttrack.runtime.base import Runtime
from fasttrack.runtime.select import open_runtime
from fasttrack.serving.drift import DriftMonitor
from fasttrack.serving.estimate import ConfidenceWindow
from fasttrack.serving.feedback import CLIENT, FeedbackWindow
from fasttrack.serving.metrics import ModelMetrics, ServerMetrics

if TYPE_CHECKING:
    from fasttrack.monitoring.log_writer import LogSource

log = logging.getLogger(__name__)

#: The training data's lineage ``GET /model`` shows: what identifies it, never where it is.
PUBLIC_LINEAGE: Final = {"fingerprint", "rows", "columns"}


@dataclass(frozen=True)
class PredictionBatch:
    """Predictions for a batch, in input order, as plain Python values (labels keep their type).

    ``ids`` are the predictions' ids for ``POST /feedback`` (one per row), and ``prediction_id`` what the
    ``X-Prediction-Id`` header carries: the id itself for one prediction, else the batch's base id, row ``i``'s id
    being ``{prediction_id}-{i}``. Both are empty for predictions that are not tracked (checks, tools).
    """

    values: list[Any]
    probabilities: np.ndarray | None = None
    classes: list[str] | None = None
    prediction_id: str | None = None
    ids: list[str] = field(default_factory=list)

    def probability_records(self) -> list[dict[str, float]]:
        """Class probabilities per row, keyed by label as text (the JSON way); empty when not computed."""
        if self.probabilities is None or self.classes is None:
            return []
        classes = self.classes
        return [dict(zip(classes, row, strict=True)) for row in self.probabilities.tolist()]


class Predictor:
    """A model ready to serve: validates records against the training schema, predicts, records metrics."""

    def __init__(
        self,
        model: LoadedModel,
        source: ResolvedModel,
        *,
        runtime: Runtime | None = None,
        metrics: ServerMetrics | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.model = model
        self.source = source
        self.schema: Schema = model.schema
        self.metadata: ModelMetadata = model.metadata
        # Settings (when not given) are the defaults, never the environment: tests build predictors freely.
        monitoring = settings if settings is not None else Settings.model_construct()
        self.runtime: Runtime = runtime if runtime is not None else open_runtime(model, monitoring.runtime)
        self.is_classifier = model.is_classifier
        self.features = {f.name: f for f in self.schema.features}
        self.records = RecordDriver(self.schema)
        self._classes = None if self.runtime.labels is None else [str(c) for c in self.runtime.labels]
        try:
            self.drift = DriftMonitor(
                self.schema,
                window=monitoring.drift_window,
                min_observations=monitoring.drift_min_rows,
                thresholds=monitoring.drift_thresholds,
                default_threshold=monitoring.drift_threshold,
            )
        except ValueError as exc:
            where = f"{self.name} version {self.version}"
            raise ConfigError(f"FASTTRACK_DRIFT_THRESHOLDS does not fit {where}: {exc}") from None
        self.feedback = FeedbackWindow(
            self.metadata.task,
            capacity=monitoring.feedback_capacity,
            ttl=monitoring.feedback_ttl or None,
            labels=self.metadata.labels if self.is_classifier else None,
            metrics_window=monitoring.live_window,
            min_samples=monitoring.live_min_samples,
            client_capacity=monitoring.feedback_client_capacity,
            client_share=monitoring.feedback_client_share,
        )
        #: Whether every classifier call computes the class probabilities, asked for or not, for what tracks them
        #: (the inference log, the estimated accuracy). Free with ONNX Runtime, which computes them anyway.
        self.track_probabilities = False
        #: A classifier's recorded calibration, judged (None for a regressor); and the window of recent confidences
        #: its accuracy is estimated from, only when that calibration is trusted (never a misleading number).
        self.calibration: CalibrationVerdict | None = None
        self.estimate: ConfidenceWindow | None = None
        if self.is_classifier:
            self.calibration = calibration_verdict(self.metadata.calibration, monitoring.calibration_max_error)
            if self.calibration.trusted:
                self.estimate = ConfidenceWindow(monitoring.drift_window, monitoring.drift_min_rows)
                self.track_probabilities = True
        #: Where :meth:`_track` also puts every prediction: the inference log, when the server has one (set by
        #: the model manager before the version serves), else ``None``.
        self.inference_log: LogSource | None = None
        self._coalescer = Coalescer(self)
        self.metrics: ModelMetrics = (metrics or ServerMetrics()).for_model(
            self.name,
            self.version,
            classifier=self.is_classifier,
            labels=self.metadata.labels or (),
            categorical=[f.name for f in self.schema.features if f.known_categories() is not None],
            numeric=[f.name for f in self.schema.features if f.kind == "numeric" and f.min is not None],
            required=[f.name for f in self.schema.features if not f.nullable],
            ignored=[*self.schema.training_columns, UNKNOWN_FIELD],
            drift=self.drift,
            feedback=self.feedback,
            calibration=self.calibration,
            estimate=self.estimate,
        )
        self.feedback.on_limit = self.metrics.feedback_limited
        if self.calibration is not None:
            say = log.info if self.calibration.trusted else log.warning
            say("%s version %s: %s", self.name, self.version, self.calibration.reason)

    @classmethod
    def load(cls, uri: str | None, settings: Settings, metrics: ServerMetrics | None = None) -> Predictor:
        """Resolve ``uri`` (default: the settings' model) to a local folder and load it."""
        return cls.from_resolved(resolve_model(uri, settings), metrics, settings)

    @classmethod
    def from_resolved(
        cls, resolved: ResolvedModel, metrics: ServerMetrics | None = None, settings: Settings | None = None
    ) -> Predictor:
        """Load an already resolved model folder (``settings``: the monitoring windows' sizes and thresholds, and
        how its pipeline may be read)."""
        return cls(load_model_folder(resolved.path, settings), resolved, metrics=metrics, settings=settings)

    @property
    def name(self) -> str:
        """Registered model name (or the name recorded in the folder)."""
        return self.source.name or self.metadata.name

    @property
    def version(self) -> str:
        """Registered version, or ``local`` for a folder served directly."""
        return self.source.version or "local"

    @property
    def labels(self) -> list[Label] | None:
        """Class labels in probability order (classifiers), else ``None``."""
        return self.runtime.labels

    # ------------------------------------------------------------------------------------------- validation
    def validate(self, records: Sequence[Any], *, extra: ExtraFields = "refuse") -> ModelInput:
        """Check every record against the schema and build the model's input; raises naming every problem.

        See :class:`~fasttrack.features.records.RecordDriver`: ``extra`` refuses or ignores fields the model
        never saw (the training data's other columns are always ignored).
        """
        return self.records.validate(records, extra=extra)

    # ------------------------------------------------------------------------------------------- prediction
    def predict(
        self,
        records: Sequence[Any],
        *,
        probabilities: bool = False,
        single: bool = False,
        extra: ExtraFields = "refuse",
    ) -> PredictionBatch:
        """Validate and predict a batch of records, in order, recording metrics (see :meth:`validate`).

        The batch goes into the drift windows and every prediction gets an id, remembered for ``/feedback``:
        ``single`` (one record answered as one prediction) gives it a plain id, otherwise row ``i`` of the batch
        has the id ``{base}-{i}`` (see :class:`PredictionBatch`).
        """
        return self._answer(self._accept(records, probabilities, extra), probabilities, single)

    async def predict_together(
        self,
        records: Sequence[Any],
        *,
        probabilities: bool = False,
        single: bool = False,
        extra: ExtraFields = "refuse",
    ) -> PredictionBatch:
        """:meth:`predict` for the event loop: requests validated in the same loop iteration share one model call.

        Same checks, answers, metrics and windows as :meth:`predict`; the model call, and the appending to the
        monitoring windows, are shared (see :class:`Coalescer`). For small batches: the model runs on the event loop.
        """
        model_input = self._accept(records, probabilities, extra)
        return await self._coalescer.infer(model_input, probabilities, single)

    def _accept(self, records: Sequence[Any], probabilities: bool, extra: ExtraFields) -> ModelInput:
        """Validated input, with its unusual values counted; a rejected request is counted as invalid."""
        if probabilities and not self.is_classifier:
            self.metrics.invalid()
            raise BadRequestError("probabilities apply to classifiers; this model is a regressor")
        try:
            model_input = self.records.validate(records, extra=extra)
        except SchemaValidationError:
            self.metrics.invalid()
            raise
        self.metrics.inputs(model_input.unseen, model_input.out_of_range, model_input.missing, model_input.ignored)
        return model_input

    def _answer(
        self, model_input: ModelInput, probabilities: bool, single: bool, client: str | None = None
    ) -> PredictionBatch:
        """One request's model call, timed and counted, then its labels counted and the request tracked (as
        ``client``'s predictions; default: the request's, :data:`~fasttrack.serving.feedback.CLIENT`)."""
        client = CLIENT.get() if client is None else client
        with self.metrics.inference(model_input.rows):
            batch = self._infer(model_input, probabilities or self.track_probabilities)
        self.metrics.outputs(batch.values)
        ((base, ids),) = self._track(
            model_input.values, batch.values, batch.probabilities, [(model_input.rows, single, client)]
        )
        if probabilities:
            return PredictionBatch(batch.values, batch.probabilities, batch.classes, base, ids)
        return PredictionBatch(batch.values, prediction_id=base, ids=ids)

    def _track(
        self,
        columns: Mapping[str, list[Any]],
        predictions: list[Any],
        probabilities: np.ndarray | None,
        requests: Sequence[tuple[int, bool, str]],
    ) -> list[tuple[str, list[str]]]:
        """Append validated rows and their predictions to the drift windows and remember the predictions under
        new ids, for one or several requests at once (O(1) per row; one lock and one random read per call); append
        the probabilities to the estimate's window when there is one, and hand the call to the inference log when
        there is one (one append each per call).

        ``columns`` and ``predictions`` hold the requests' rows one request after the other, ``probabilities``
        (when computed: see :attr:`track_probabilities`) their class probabilities; ``requests`` gives each one's
        ``(rows, single, client)``. Returns each request's base id and row ids (see :class:`PredictionBatch`).
        """
        self.drift.observe_columns(columns)
        self.drift.observe_predictions(predictions)
        bases = FeedbackWindow.new_ids(len(requests))
        tracked: list[tuple[str, list[str]]] = []
        every: list[str] = []
        for base, (rows, single, _) in zip(bases, requests, strict=True):
            ids = [base] if single and rows == 1 else [f"{base}-{row}" for row in range(rows)]
            tracked.append((base, ids))
            every.extend(ids)
        clients = {client for _, _, client in requests}
        if len(clients) == 1:  # the usual case: one record_many for the whole call
            self.feedback.record_many(zip(every, predictions, strict=True), clients.pop())
        else:  # each request's predictions under its own client
            start = 0
            for (_, ids), (_, _, client) in zip(tracked, requests, strict=True):
                end = start + len(ids)
                self.feedback.record_many(zip(ids, predictions[start:end], strict=True), client)
                start = end
        if self.estimate is not None and probabilities is not None:
            self.estimate.observe(probabilities)
        inference_log = self.inference_log
        if inference_log is not None:  # one append to its queue: converted and written by its own thread
            inference_log.predictions(columns, predictions, probabilities, every)
        return tracked

    def predict_input(self, model_input: ModelInput, *, probabilities: bool = False) -> PredictionBatch:
        """Predict already validated input, without recording metrics (checks and tools)."""
        return self._infer(model_input, probabilities and self.is_classifier)

    def _infer(self, model_input: ModelInput, probabilities: bool) -> PredictionBatch:
        prediction = self.runtime.predict(model_input.columns, model_input.rows, probabilities=probabilities)
        values = prediction.values
        if values.dtype == np.float32:  # ONNX Runtime's regression values: plain Python floats downstream
            values = values.astype(np.float64)
        proba = prediction.probabilities
        if proba is None:
            return PredictionBatch(values.tolist())
        return PredictionBatch(values.tolist(), proba.astype(np.float64, copy=False), self._classes)

    def check(self) -> None:
        """Predict the model's input example (or the schema's example record) and check the answers make sense.

        Run on every model before it is served; raises ``ModelLoadError`` saying what went wrong.
        """
        records: list[dict[str, Any]] = list(self.metadata.input_example) or [dict(self.schema.example_record())]
        try:
            batch = self.predict_input(self.validate(records), probabilities=self.is_classifier)
        except Exception as exc:
            raise ModelLoadError(
                f"{self.name} version {self.version} fails on its input example: {type(exc).__name__}: {exc}"
            ) from None
        problem = self._implausible(batch, len(records))
        if problem:
            raise ModelLoadError(f"{self.name} version {self.version} fails its check on the input example: {problem}")

    def _implausible(self, batch: PredictionBatch, rows: int) -> str | None:
        if len(batch.values) != rows:
            return f"{len(batch.values)} predictions for {rows} rows"
        if not self.is_classifier:
            bad = [v for v in batch.values if not isinstance(v, int | float) or not math.isfinite(v)]
            return f"non-finite predictions {bad[:3]}" if bad else None
        known = {str(label) for label in self.metadata.labels or []}
        unknown = {str(v) for v in batch.values} - known
        if known and unknown:
            return f"labels {sorted(unknown)} are not among the model's labels {sorted(known)}"
        if batch.probabilities is not None and not np.allclose(batch.probabilities.sum(axis=1), 1.0, atol=1e-6):
            return "class probabilities do not sum to 1"
        return None

    # ------------------------------------------------------------------------------------------------ about
    def describe(self) -> dict[str, Any]:
        """What ``GET /model`` shows: identity, lineage, metrics, labels, every feature with its type and range, and
        a classifier's calibration (``{error, trusted, reason}``: whether its accuracy is estimated, and why).

        Whoever can reach the server sees it, so it holds nothing of the training data itself and nothing of where
        it lives: the example record is made of each feature's typical value (the median, the commonest
        category), and the lineage is the data's fingerprint and size, not its source."""
        meta = self.metadata
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.source.alias,
            "uri": self.source.uri,
            "run_id": meta.run_id,
            "trained_at": meta.trained_at,
            "task": meta.task,
            "target": meta.target,
            "estimator": meta.model,
            "backend": self.runtime.name,
            "primary_metric": meta.primary_metric,
            "metrics": meta.metrics,
            "baseline_metrics": meta.baseline_metrics,
            "labels": self.labels,
            "features": [_describe_feature(f) for f in self.schema.features],
            # Never a row of the training data (it may be personal data): the schema's typical values instead.
            "input_example": [self.schema.example_record()],
            # What identifies the training data, not where it is (a path, a bucket, a database and its query).
            "data": meta.data.model_dump(mode="json", include=PUBLIC_LINEAGE),
            "libraries": meta.libraries,
            "calibration": self.calibration.as_dict() if self.calibration is not None else None,
        }


@dataclass(slots=True)
class _Waiting:
    model_input: ModelInput
    probabilities: bool
    single: bool
    answer: asyncio.Future[PredictionBatch]
    client: str  # whose predictions these are (the flush runs outside the request's context)


class Coalescer:
    """One model call for every request that reaches the model in the same event-loop iteration.

    A model call has a fixed cost that dwarfs the arithmetic of a few rows: ONNX Runtime spends 10-15 µs per call
    with its code in the CPU caches, and over 100 µs when the network stack and the web framework have evicted it
    between two requests, as they do in a server. Under concurrent load, several requests are read in one
    iteration of the event loop; the first to be validated schedules a flush with ``call_soon``, which runs after
    the others already scheduled in that iteration, so one call predicts all of their rows. No request waits for a
    timer: a lone request is flushed at once, alone (the adaptive batching of MLServer or BentoML without their
    latency budget). Rows are independent for every model FastTrack trains, so the answers are the same as one
    call per request.

    The requests' rows and predictions also go into the monitoring windows together (one append per feature,
    one lock, one read of randomness for the ids), and the predicted labels are counted once per call: the same
    windows, ids and counts as one request at a time, for a fraction of the cost.

    If the shared call fails, each request is retried alone, so that one request's failure stays its own; if what
    follows it (counting, tracking) fails, every request of the call gets that error rather than no answer. The
    inference histogram observes the shared call's time for each request in it (the time it spent in the model).
    A request cancelled before the flush (its client went away) is neither predicted nor counted. Event-loop
    only: :meth:`Predictor.predict` (thread pool, tools) calls the model directly.
    """

    def __init__(self, predictor: Predictor) -> None:
        self._predictor = predictor
        self._waiting: list[_Waiting] = []

    async def infer(self, model_input: ModelInput, probabilities: bool, single: bool = False) -> PredictionBatch:
        """The tracked predictions for ``model_input`` (ids included), from the call shared with this iteration's
        other requests (``single``: one record answered as one prediction, as in :meth:`Predictor.predict`)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[PredictionBatch] = loop.create_future()
        self._waiting.append(_Waiting(model_input, probabilities, single, answer, CLIENT.get()))
        if len(self._waiting) == 1:
            loop.call_soon(self._flush)
        return await answer

    def _flush(self) -> None:
        waiting = [each for each in self._waiting if not each.answer.done()]
        self._waiting = []
        if len(waiting) <= 1:
            for each in waiting:
                self._alone(each)
            return
        predictor = self._predictor
        inputs = [w.model_input for w in waiting]
        values = {name: [v for i in inputs for v in i.values[name]] for name in inputs[0].values}
        together = ModelInput(values=values, rows=sum(i.rows for i in inputs), kinds=inputs[0].kinds)
        probabilities = any(w.probabilities for w in waiting)
        predictor.metrics.called()
        start = perf_counter()
        try:
            batch = predictor._infer(together, probabilities or predictor.track_probabilities)
        except Exception:
            for each in waiting:
                self._alone(each)
            return
        seconds = perf_counter() - start
        try:
            self._answer_all(waiting, batch, values, seconds)
        except Exception as exc:  # a flush runs outside every request: its failure must reach them, not the loop
            for each in waiting:
                if not each.answer.done():
                    each.answer.set_exception(exc)

    def _answer_all(
        self, waiting: list[_Waiting], batch: PredictionBatch, values: Mapping[str, list[Any]], seconds: float
    ) -> None:
        """Count and track the shared call's predictions, and give each request its part."""
        predictor = self._predictor
        predicted = batch.values
        predictor.metrics.outputs(predicted)
        requests = [(w.model_input.rows, w.single, w.client) for w in waiting]
        tracked = predictor._track(values, predicted, batch.probabilities, requests)
        offset = 0
        for each, (base, ids) in zip(waiting, tracked, strict=True):
            rows = each.model_input.rows
            start_row, offset = offset, offset + rows
            predictor.metrics.inferred(rows, seconds)
            proba = (
                batch.probabilities[start_row:offset]
                if each.probabilities and batch.probabilities is not None
                else None
            )
            classes = batch.classes if proba is not None else None
            each.answer.set_result(PredictionBatch(predicted[start_row:offset], proba, classes, base, ids))

    def _alone(self, each: _Waiting) -> None:
        try:
            each.answer.set_result(
                self._predictor._answer(each.model_input, each.probabilities, each.single, each.client)
            )
        except Exception as exc:
            each.answer.set_exception(exc)


def _describe_feature(feature: FeatureSchema) -> dict[str, Any]:
    described: dict[str, Any] = {
        "name": feature.name,
        "kind": feature.kind,
        "dtype": feature.dtype,
        "nullable": feature.nullable,
        "example": feature.example,
    }
    if feature.kind == "numeric":
        described.update(min=feature.min, max=feature.max, integer=feature.integer)
    if feature.kind == "categorical":
        described["categories"] = feature.categories
    return described
