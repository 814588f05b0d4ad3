"""Accuracy before labels arrive: the confidence window, what the server exports (or refuses to), and how close the
estimate lands to the real accuracy of a calibrated model on held-out traffic."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from fasttrack.config import Settings, TrainConfig
from fasttrack.data.describe import infer_schema
from fasttrack.registry.model_folder import DataLineage, LoadedModel, load_model_folder, metadata_for, save_model_folder
from fasttrack.registry.resolve import ResolvedModel
from fasttrack.serving.estimate import ConfidenceWindow
from fasttrack.serving.metrics import ServerMetrics
from fasttrack.serving.predictor import Predictor
from fasttrack.training.train import train

AppClient = Callable[..., AbstractContextManager[tuple[TestClient, ServerMetrics]]]
ESTIMATED = "fasttrack_estimated_accuracy"
CALIBRATION_ERROR = "fasttrack_calibration_error"


def gauges(client: TestClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every gauge sample of ``/metrics``, by name and then by its sorted labels."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def records(rows: int, seed: int) -> list[dict[str, float]]:
    """Records of the sample classifier's two features, around its training data."""
    rng = np.random.default_rng(seed)
    return [{"feature_1": float(a), "feature_2": float(b)} for a, b in rng.normal(4, 2, (rows, 2))]


# ------------------------------------------------------------------------------------------- the window
def test_the_window_reports_its_mean_once_it_holds_the_minimum_rows() -> None:
    window = ConfidenceWindow(window=6, min_rows=3)
    window.observe(np.array([[0.9, 0.05, 0.05], [0.3, 0.7, 0.0]]))
    assert (window.rows(), window.estimate()) == (2, None)
    window.observe(np.array([[0.2, 0.5, 0.3]]))  # any number of classes: the top-label confidence
    assert window.estimate() == pytest.approx((0.9 + 0.7 + 0.5) / 3)


def test_the_window_keeps_the_last_rows_only() -> None:
    window = ConfidenceWindow(window=4, min_rows=1)
    for confidence in (0.6, 0.7, 0.8, 0.9, 1.0):
        window.observe(np.array([[confidence, 1 - confidence]]))
    assert window.rows() == 4
    assert window.estimate() == pytest.approx((0.7 + 0.8 + 0.9 + 1.0) / 4)
    # A batch larger than the window keeps its last rows, copied (the batch's array is not kept alive).
    batch = np.column_stack([np.linspace(0.5, 1.0, 11), 1 - np.linspace(0.5, 1.0, 11)])
    window.observe(batch)
    assert window.estimate() == pytest.approx(float(np.linspace(0.5, 1.0, 11)[-4:].mean()))
    assert all(part.base is None for part in window._recent)


def test_the_window_holds_fewer_than_twice_its_rows_whatever_the_calls() -> None:
    window = ConfidenceWindow(window=100, min_rows=1)
    rng = np.random.default_rng(0)
    for size in rng.integers(1, 150, 500):
        confident = rng.uniform(0.5, 1.0, size)
        window.observe(np.column_stack([confident, 1 - confident]))
        held = sum(len(part) for part in window._recent)
        assert 100 <= held < 200 or held == window.rows() < 100, held
    last = np.linspace(0.55, 0.95, 100)
    window.observe(np.column_stack([last, 1 - last]))
    assert window.rows() == 100 and window.estimate() == pytest.approx(float(last.mean()))


def test_the_window_refuses_a_minimum_above_its_size() -> None:
    with pytest.raises(ValueError, match="min_rows must be between 1 and window"):
        ConfidenceWindow(window=10, min_rows=11)


# ------------------------------------------------------------------------------------ what the server does
def rebuilt(predictor: Predictor, settings: Settings, **metadata: Any) -> Predictor:
    """``predictor``'s model served afresh with ``settings`` (and its metadata changed as given)."""
    model = predictor.model
    if metadata:
        model = LoadedModel(model.path, model.pipeline, model.schema, model.metadata.model_copy(update=metadata))
    return Predictor(model, predictor.source, metrics=ServerMetrics(), settings=settings)


@pytest.fixture
def small(settings: Settings) -> Settings:
    """Serving settings with a window of 40 rows that reports from 10, and every recorded calibration trusted."""
    return settings.model_copy(update={"drift_window": 40, "drift_min_rows": 10, "calibration_max_error": 1.0})


def test_a_calibrated_classifier_exports_its_estimate(
    serve_app: AppClient, small: Settings, classifier: Predictor
) -> None:
    recorded = classifier.metadata.calibration
    assert recorded is not None, "training records every classifier's calibration"
    traffic = records(50, seed=1)
    expected = classifier.predict_input(classifier.validate(traffic), probabilities=True).probabilities
    assert expected is not None
    with serve_app(small, classifier) as (client, _):
        described = client.get("/model").json()["calibration"]
        assert (described["error"], described["trusted"]) == (recorded.error, True)
        assert "within FASTTRACK_CALIBRATION_MAX_ERROR (1)" in described["reason"]
        labels = (("model", "sample"), ("version", "1"))
        for record in traffic[:9]:  # below the window's minimum: no estimate yet, the calibration error already
            assert client.post("/predict", json=record).status_code == 200
        scraped = gauges(client)
        assert ESTIMATED not in scraped
        assert scraped[CALIBRATION_ERROR] == {labels: pytest.approx(recorded.error)}
        for start in range(9, 50, 7):  # single records and batches alike
            assert client.post("/predict", json=traffic[start : start + 7]).status_code == 200
        # The window holds the last 40 of the 50 rows: their mean top-label probability.
        assert gauges(client)[ESTIMATED] == {labels: pytest.approx(float(expected.max(axis=1)[-40:].mean()))}


def test_an_estimate_above_the_maximum_calibration_error_is_not_exported(
    serve_app: AppClient, small: Settings, classifier: Predictor, caplog: pytest.LogCaptureFixture
) -> None:
    strict = small.model_copy(update={"calibration_max_error": 0.0})
    recorded = classifier.metadata.calibration
    assert recorded is not None and recorded.error > 0.0
    caplog.set_level(logging.INFO, logger="fasttrack.serving.predictor")
    predictor = rebuilt(classifier, strict)
    assert predictor.estimate is None and not predictor.track_probabilities
    (line,) = [r for r in caplog.records if r.levelno == logging.WARNING and "calibration error" in r.getMessage()]
    assert "sample version 1" in line.getMessage() and "above FASTTRACK_CALIBRATION_MAX_ERROR (0)" in line.getMessage()
    with serve_app(strict, classifier) as (client, _):
        calibration = client.get("/model").json()["calibration"]
        assert calibration["error"] == recorded.error and calibration["trusted"] is False
        assert "above FASTTRACK_CALIBRATION_MAX_ERROR (0)" in calibration["reason"]
        assert "no accuracy is estimated" in calibration["reason"]
        assert client.post("/predict", json=records(20, seed=2)).status_code == 200
        scraped = gauges(client)
        assert ESTIMATED not in scraped
        assert CALIBRATION_ERROR in scraped  # the reason it is absent is on the dashboard too


def test_a_classifier_without_recorded_calibration_says_so(small: Settings, classifier: Predictor) -> None:
    predictor = rebuilt(classifier, small, calibration=None)
    assert predictor.estimate is None and not predictor.track_probabilities
    described = predictor.describe()["calibration"]
    assert (described["error"], described["trusted"]) == (None, False)
    assert described["reason"].startswith("no calibration was recorded")
    predictor.predict(records(20, seed=3))
    families = {family.name for family in predictor.metrics._server.live.collect() if family.samples}
    assert families.isdisjoint({ESTIMATED, CALIBRATION_ERROR})


def test_a_regressor_has_no_calibration_and_no_estimate(
    serve_app: AppClient, small: Settings, regressor: Predictor
) -> None:
    with serve_app(small, regressor) as (client, _):
        assert client.get("/model").json()["calibration"] is None
        for _ in range(3):
            assert client.post("/predict", json=[{"x": 3.1}] * 10).status_code == 200
        assert {ESTIMATED, CALIBRATION_ERROR}.isdisjoint(gauges(client))


def test_coalesced_requests_reach_the_window_together(small: Settings, classifier: Predictor) -> None:
    predictor = rebuilt(classifier, small)
    assert predictor.estimate is not None
    first, second = records(6, seed=4), records(5, seed=5)

    async def together() -> None:
        await asyncio.gather(predictor.predict_together(first), predictor.predict_together(second))

    asyncio.run(together())
    expected = predictor.predict_input(predictor.validate(first + second), probabilities=True).probabilities
    assert expected is not None
    assert predictor.estimate.rows() == 11
    assert predictor.estimate.estimate() == pytest.approx(float(expected.max(axis=1).mean()))


# --------------------------------------------------------------- the estimate against the real accuracy
#: Rows of held-out traffic per case, and so the window the estimate covers.
TRAFFIC = 2000


def tolerance(estimate: float, rows: int = TRAFFIC) -> float:
    """How far the real accuracy of ``rows`` predictions may land from a calibrated model's estimate.

    For a calibrated model, row ``i`` is right with probability ``c_i``, its confidence: the estimate is the mean
    of the ``c_i`` and the real accuracy the mean of ``rows`` draws right/wrong with those chances, whose standard
    error is ``sqrt(mean(c (1 - c)) / rows)``, at most ``sqrt(a (1 - a) / rows)`` with ``a`` the estimate (Jensen).
    Three such standard errors: about 0.03 for 2,000 rows at 80 % accuracy, a miss left to chance 0.3 % of the
    time. The calibration's own error adds no allowance: a calibrated model's estimate is right on average.
    """
    return 3 * math.sqrt(estimate * (1 - estimate) / rows)


def logistic_frame(rows: int, seed: int, *, shift: float = 0.0, concept: bool = False) -> pd.DataFrame:
    """Two features and a label drawn from a logistic model (so a logistic regression is calibrated on it).

    ``shift`` moves the first feature's mean (covariate shift: inputs move, the relation stays); ``concept``
    changes the relation itself (concept drift: the first feature's effect is reversed).
    """
    rng = np.random.default_rng(seed)
    x1 = rng.normal(shift, 1.0, rows)
    x2 = rng.normal(0.0, 1.0, rows)
    logit = (-1.5 if concept else 1.5) * x1 - 1.0 * x2 + 0.3
    positive = rng.random(rows) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame({"x1": x1, "x2": x2, "label": np.where(positive, "yes", "no")})


@pytest.fixture(scope="module")
def calibrated_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A logistic regression trained on 4,000 rows of :func:`logistic_frame`, saved as a model folder."""
    frame = logistic_frame(4000, seed=0)
    config = TrainConfig(data="memory://logistic.csv", target="label", name="logistic", model="linear", cv_folds=0)
    result = train(frame, config, infer_schema(frame, "label", "classification"))
    lineage = DataLineage(source=config.data or "", fingerprint="generated", rows=len(frame), columns=3)
    folder = tmp_path_factory.mktemp("estimate") / "logistic"
    return save_model_folder(result, folder, metadata_for(result, name="logistic", data=lineage))


@dataclass(frozen=True)
class Measured:
    estimate: float
    accuracy: float


def serve_traffic(folder: Path, settings: Settings, frame: pd.DataFrame) -> Measured:
    """Serve ``frame``'s rows through a fresh Predictor of ``folder`` (batches of 50, as clients would send them):
    the estimate it exports afterwards, and the accuracy of its answers against the labels."""
    window = settings.model_copy(update={"drift_window": len(frame), "drift_min_rows": 100})
    predictor = Predictor(
        load_model_folder(folder), ResolvedModel(uri=str(folder), path=folder), metrics=ServerMetrics(), settings=window
    )
    assert predictor.calibration is not None and predictor.calibration.trusted, predictor.calibration
    assert predictor.estimate is not None
    answers: list[Any] = []
    rows = frame.drop(columns=["label"]).to_dict("records")
    for start in range(0, len(rows), 50):
        answers.extend(predictor.predict(rows[start : start + 50]).values)
    estimate = predictor.estimate.estimate()
    assert estimate is not None
    return Measured(estimate, float(np.mean(np.asarray(answers) == frame["label"].to_numpy())))


@pytest.fixture
def served(calibrated_folder: Path, settings: Settings) -> Callable[[pd.DataFrame], Measured]:
    return lambda frame: serve_traffic(calibrated_folder, settings, frame)


def test_the_estimate_lands_near_the_real_accuracy_of_held_out_traffic(served: Callable[..., Measured]) -> None:
    same = served(logistic_frame(TRAFFIC, seed=1))
    assert abs(same.estimate - same.accuracy) <= tolerance(same.estimate), same
    # Covariate shift (the first feature moves by 1.5 standard deviations): the model grows surer and right more
    # often, by far more than the tolerance, and the estimate follows without a label.
    shifted = served(logistic_frame(TRAFFIC, seed=2, shift=1.5))
    assert shifted.accuracy - same.accuracy > 2 * tolerance(same.estimate), (same, shifted)
    assert abs(shifted.estimate - shifted.accuracy) <= tolerance(shifted.estimate), shifted


def test_concept_drift_is_beyond_the_estimates_reach(served: Callable[..., Measured]) -> None:
    # The same inputs with the relation changed: the confidences (the estimate) stay, the accuracy falls. The
    # tolerance above fails here, as it must: only labels reveal concept drift.
    drifted = served(logistic_frame(TRAFFIC, seed=1, concept=True))
    same = served(logistic_frame(TRAFFIC, seed=1))
    assert drifted.estimate == pytest.approx(same.estimate)
    assert drifted.estimate - drifted.accuracy > tolerance(drifted.estimate), drifted
