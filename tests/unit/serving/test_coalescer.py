"""Same-tick coalescing: requests reaching the model in one event-loop iteration share one backend call.

``Predictor.predict_together`` is driven with ``asyncio.gather`` on fresh predictors whose backend is wrapped to
count its calls (the session's predictors are left alone); every answer is checked against ``Predictor.predict``
for the same request on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from fasttrack.config import Settings
from fasttrack.errors import BadRequestError, SchemaValidationError
from fasttrack.runtime.base import Prediction, Runtime
from fasttrack.serving.metrics import ServerMetrics
from fasttrack.serving.predictor import PredictionBatch, Predictor

RECORD = {"feature_1": 5.3, "feature_2": 2.1}
OTHER = {"feature_1": 1.0, "feature_2": 6.0}
POISON = 666.0  # a feature_1 value the failing backend refuses


class CountingRuntime:
    """A runtime that records the rows of every call, and fails any call holding a row ``poisoned`` picks."""

    def __init__(self, inner: Runtime, poisoned: Callable[[Mapping[str, np.ndarray]], bool] | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.task = inner.task
        self.schema = inner.schema
        self.labels = inner.labels
        self.poisoned = poisoned
        self.calls: list[int] = []

    def predict(self, columns: Mapping[str, np.ndarray], rows: int, *, probabilities: bool = False) -> Prediction:
        self.calls.append(rows)
        if self.poisoned is not None and self.poisoned(columns):
            raise RuntimeError("the model refuses this row")
        return self.inner.predict(columns, rows, probabilities=probabilities)


def poison(columns: Mapping[str, np.ndarray]) -> bool:
    return bool((columns["feature_1"] == POISON).any())


@dataclass
class Fresh:
    predictor: Predictor
    backend: CountingRuntime
    metrics: ServerMetrics

    def sample(self, name: str, **labels: str) -> float | None:
        labels = {"model": self.predictor.name, "version": self.predictor.version, **labels}
        return self.metrics.registry.get_sample_value(name, labels)


@pytest.fixture
def fresh(settings: Settings) -> Callable[..., Fresh]:
    """``fresh(predictor, poisoned=None)``: a new Predictor on the same model, its runtime counted."""

    def make(of: Predictor, poisoned: Callable[[Mapping[str, np.ndarray]], bool] | None = None) -> Fresh:
        backend = CountingRuntime(of.runtime, poisoned)
        metrics = ServerMetrics()
        predictor = Predictor(of.model, of.source, runtime=backend, metrics=metrics, settings=settings)
        return Fresh(predictor, backend, metrics)

    return make


@dataclass(frozen=True)
class Ask:
    """One request: its records, whether it wants probabilities, whether it is one record answered as one."""

    records: Sequence[Any]
    probabilities: bool = False
    single: bool = False


def together(predictor: Predictor, asks: Sequence[Ask], *, errors: bool = False) -> list[Any]:
    """Every request at once, in one event-loop iteration (``errors``: exceptions are returned, not raised)."""

    async def run() -> list[Any]:
        calls = [predictor.predict_together(a.records, probabilities=a.probabilities, single=a.single) for a in asks]
        return list(await asyncio.gather(*calls, return_exceptions=errors))

    return asyncio.run(run())


def alone(predictor: Predictor, ask: Ask) -> PredictionBatch:
    return predictor.predict(ask.records, probabilities=ask.probabilities, single=ask.single)


def assert_same_answer(got: PredictionBatch, expected: PredictionBatch) -> None:
    """Values, probabilities and classes as ``predict`` gives them (ids are new for every request)."""
    assert got.values == expected.values
    assert got.classes == expected.classes
    if expected.probabilities is None:
        assert got.probabilities is None
    else:
        assert got.probabilities is not None
        np.testing.assert_array_equal(got.probabilities, expected.probabilities)


# ------------------------------------------------------------------------------------------------ one call
def test_requests_in_the_same_iteration_share_one_model_call(
    fresh: Callable[..., Fresh], classifier: Predictor
) -> None:
    served = fresh(classifier)
    asks = [Ask([RECORD], single=True), Ask([OTHER, RECORD]), Ask([OTHER], single=True)]
    together(served.predictor, asks)
    assert served.backend.calls == [4]


def test_a_lone_request_is_a_call_of_its_own(fresh: Callable[..., Fresh], classifier: Predictor) -> None:
    served = fresh(classifier)

    async def one_after_the_other() -> None:
        await served.predictor.predict_together([RECORD], single=True)
        await served.predictor.predict_together([RECORD, OTHER])

    asyncio.run(one_after_the_other())
    assert served.backend.calls == [1, 2]


# ---------------------------------------------------------------------------------------------- the answers
CLASSIFIER_ASKS = [
    Ask([RECORD], single=True),
    Ask([OTHER, RECORD], probabilities=True),
    Ask([RECORD], probabilities=True, single=True),
    Ask([OTHER, OTHER, RECORD]),
]
REGRESSOR_ASKS = [Ask([{"x": 3.1}], single=True), Ask([{"x": -2.0}, {"x": 0.5}]), Ask([{"x": 10.0}])]
MIXED_ASKS = [
    Ask([{"amount": 40.0, "colour": "red", "member": True}], probabilities=True, single=True),
    Ask([{"colour": "purple", "member": False}, {"amount": None, "colour": "blue", "member": 1}]),
    Ask([{"amount": 1e6, "colour": "green", "member": False}], probabilities=True),
]
ANSWERS = {"classifier": CLASSIFIER_ASKS, "regressor": REGRESSOR_ASKS, "mixed": MIXED_ASKS}


@pytest.mark.parametrize("model", ANSWERS)
def test_each_request_gets_what_predict_gives_it_alone(
    fresh: Callable[..., Fresh], request: pytest.FixtureRequest, model: str
) -> None:
    of: Predictor = request.getfixturevalue(model)
    asks = ANSWERS[model]
    served, reference = fresh(of), fresh(of)
    got = together(served.predictor, asks)
    assert served.backend.calls == [sum(len(a.records) for a in asks)]
    for ask, answer in zip(asks, got, strict=True):
        assert_same_answer(answer, alone(reference.predictor, ask))


def test_probabilities_go_only_to_the_requests_that_asked(fresh: Callable[..., Fresh], classifier: Predictor) -> None:
    served = fresh(classifier)
    plain, asked = together(served.predictor, [Ask([RECORD, OTHER]), Ask([OTHER], probabilities=True)])
    assert plain.probabilities is None and plain.classes is None
    assert plain.probability_records() == []
    assert asked.classes == ["negative", "positive"]
    assert asked.probabilities is not None and asked.probabilities.shape == (1, 2)
    assert served.backend.calls == [3]


def test_ids_are_distinct_and_every_row_is_tracked(fresh: Callable[..., Fresh], classifier: Predictor) -> None:
    served = fresh(classifier)
    one, batch, other = together(
        served.predictor, [Ask([RECORD], single=True), Ask([RECORD, OTHER]), Ask([OTHER], single=True)]
    )
    assert one.ids == [one.prediction_id] and other.ids == [other.prediction_id]
    assert batch.ids == [f"{batch.prediction_id}-0", f"{batch.prediction_id}-1"]
    ids = [*one.ids, *batch.ids, *other.ids]
    assert len(set(ids)) == 4 and len({one.prediction_id, batch.prediction_id, other.prediction_id}) == 3
    predictor = served.predictor
    assert len(predictor.feedback) == 4
    assert predictor.drift.observations()["feature_1"] == 4
    truth = [(one.ids[0], "positive"), (batch.ids[1], "negative"), (other.ids[0], "negative")]
    assert predictor.feedback.join(truth).matched == 3


def test_success_is_counted_per_request_and_rows_per_row(fresh: Callable[..., Fresh], classifier: Predictor) -> None:
    served = fresh(classifier)
    together(served.predictor, [Ask([RECORD], single=True), Ask([RECORD, OTHER]), Ask([OTHER], single=True)])
    assert served.backend.calls == [4]
    assert served.sample("fasttrack_predictions_total", outcome="success") == 3
    assert served.sample("fasttrack_predictions_total", outcome="error") == 0
    assert served.sample("fasttrack_prediction_rows_total") == 4
    assert served.sample("fasttrack_inference_seconds_count") == 3
    positive = served.sample("fasttrack_predicted_label_total", label="positive")
    negative = served.sample("fasttrack_predicted_label_total", label="negative")
    assert (positive, negative) == (2, 2)


# ---------------------------------------------------------------------------------------------------- failures
def test_when_the_shared_call_fails_only_the_failing_request_fails(
    fresh: Callable[..., Fresh], classifier: Predictor
) -> None:
    served, reference = fresh(classifier, poison), fresh(classifier)
    good, bad, also_good = Ask([RECORD], single=True), Ask([{**RECORD, "feature_1": POISON}]), Ask([OTHER, RECORD])
    first, failed, last = together(served.predictor, [good, bad, also_good], errors=True)
    assert isinstance(failed, RuntimeError) and "refuses" in str(failed)
    assert_same_answer(first, alone(reference.predictor, good))
    assert_same_answer(last, alone(reference.predictor, also_good))
    assert served.backend.calls == [4, 1, 1, 2]  # the shared call, then each request alone
    assert served.sample("fasttrack_predictions_total", outcome="success") == 2
    assert served.sample("fasttrack_predictions_total", outcome="error") == 1
    assert served.sample("fasttrack_prediction_rows_total") == 3
    assert len(served.predictor.feedback) == 3  # the failed request left nothing in the windows


def test_an_invalid_request_fails_alone_before_the_model(fresh: Callable[..., Fresh], classifier: Predictor) -> None:
    served = fresh(classifier)
    asks = [Ask([RECORD], single=True), Ask([{"feature_1": "x", "feature_2": 1.0}]), Ask([OTHER], single=True)]
    first, invalid, last = together(served.predictor, asks, errors=True)
    assert isinstance(invalid, SchemaValidationError)
    assert (first.values, last.values) == (["positive"], ["negative"])
    assert served.backend.calls == [2]
    assert served.sample("fasttrack_predictions_total", outcome="invalid") == 1
    assert served.sample("fasttrack_predictions_total", outcome="success") == 2


def test_probabilities_of_a_regressor_are_refused_and_counted_invalid(
    fresh: Callable[..., Fresh], regressor: Predictor
) -> None:
    served = fresh(regressor)
    refused, value = together(
        served.predictor, [Ask([{"x": 1.0}], probabilities=True), Ask([{"x": 1.0}], single=True)], errors=True
    )
    assert isinstance(refused, BadRequestError) and "regressor" in str(refused)
    assert isinstance(value.values[0], float)
    assert served.backend.calls == [1]
    assert served.sample("fasttrack_predictions_total", outcome="invalid") == 1


@pytest.mark.parametrize("cancelled", [0, 1, 2], ids=["the first", "the middle one", "the last"])
def test_a_cancelled_waiter_does_not_break_the_others(
    fresh: Callable[..., Fresh], classifier: Predictor, cancelled: int
) -> None:
    served, reference = fresh(classifier), fresh(classifier)
    asks = [Ask([RECORD], single=True), Ask([OTHER, RECORD], probabilities=True), Ask([OTHER], single=True)]

    async def run() -> list[Any]:
        predictor = served.predictor
        tasks = [
            asyncio.create_task(predictor.predict_together(a.records, probabilities=a.probabilities, single=a.single))
            for a in asks
        ]
        await asyncio.sleep(0)  # every request is validated and waits for the shared call, not yet made
        assert served.backend.calls == []
        tasks[cancelled].cancel()
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    results = asyncio.run(run())
    assert isinstance(results[cancelled], asyncio.CancelledError)
    for index, (ask, answer) in enumerate(zip(asks, results, strict=True)):
        if index != cancelled:
            assert_same_answer(answer, alone(reference.predictor, ask))
    # The cancelled request's client is gone: its rows are not predicted, counted or given ids.
    assert served.backend.calls == [4 - len(asks[cancelled].records)]
    assert served.sample("fasttrack_predictions_total", outcome="error") == 0
    assert len(served.predictor.feedback) == 4 - len(asks[cancelled].records)


def test_a_cancelled_waiter_does_not_break_the_others_when_the_shared_call_fails(
    fresh: Callable[..., Fresh], classifier: Predictor
) -> None:
    served = fresh(classifier, poison)
    asks = [Ask([RECORD], single=True), Ask([{**RECORD, "feature_1": POISON}]), Ask([OTHER], single=True)]

    async def run() -> list[Any]:
        predictor = served.predictor
        tasks = [asyncio.create_task(predictor.predict_together(a.records, single=a.single)) for a in asks]
        await asyncio.sleep(0)
        tasks[0].cancel()
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    cancelled, failed, answered = asyncio.run(run())
    assert isinstance(cancelled, asyncio.CancelledError)
    assert isinstance(failed, RuntimeError)
    assert answered.values == ["negative"]


def test_a_failure_after_the_shared_call_reaches_every_request(
    fresh: Callable[..., Fresh], classifier: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flush runs on the event loop, outside every request: what fails there must not leave them waiting."""
    served = fresh(classifier)

    def broken(columns: Any) -> None:
        raise RuntimeError("the drift window is broken")

    monkeypatch.setattr(served.predictor.drift, "observe_columns", broken)
    asks = [Ask([RECORD], single=True), Ask([OTHER, RECORD])]

    async def run() -> list[Any]:
        predictor = served.predictor
        calls = [predictor.predict_together(a.records, single=a.single) for a in asks]
        return list(await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), timeout=10))

    results = asyncio.run(run())
    assert all(isinstance(r, RuntimeError) and "drift window" in str(r) for r in results), results
    assert served.backend.calls == [3]
