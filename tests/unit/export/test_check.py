"""ONNX export: every model kind converts and agrees with scikit-learn; failures are recorded, never raised."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fasttrack.config import TrainConfig
from fasttrack.data.describe import infer_schema
from fasttrack.data.ingest import ingest
from fasttrack.export import check as fx
from fasttrack.export import onnx as export_onnx
from fasttrack.runtime.base import Prediction
from fasttrack.runtime.onnx import OnnxRuntime
from fasttrack.runtime.sklearn import SklearnRuntime
from fasttrack.training import pipeline as pipeline_module
from fasttrack.training.train import TrainResult, train
from support import PARAMS, TASKS, fit


def with_surprises(x: pd.DataFrame) -> pd.DataFrame:
    """Held-out rows plus unseen and missing categories and missing numbers, as serving sees them."""
    surprising = x.copy()
    surprising.loc[surprising.index[::7], "colour"] = "purple"  # never seen in training
    surprising.loc[surprising.index[1::7], "colour"] = np.nan
    surprising.loc[surprising.index[2::7], "size"] = np.nan  # missing, though training had none
    surprising.loc[surprising.index[3::7], "b"] = np.nan
    surprising.loc[surprising.index[4::7], "flag"] = np.nan
    return pd.concat([x, surprising], ignore_index=True)


def runtimes(result: TrainResult, onnx: bytes, pipeline: Any = None) -> tuple[OnnxRuntime, SklearnRuntime]:
    """The two runtimes of one trained model (``pipeline`` standing in for its own when given)."""
    graph = OnnxRuntime.open(onnx, result.schema, result.task, result.labels)
    return graph, SklearnRuntime(pipeline or result.pipeline, result.schema, result.task, result.labels)


def agreement(result: TrainResult, onnx: bytes, rows: pd.DataFrame, **kwargs: Any) -> fx.Agreement:
    pipeline = kwargs.pop("pipeline", None)
    return fx.check_agreement(*runtimes(result, onnx, pipeline), rows, **kwargs)


@pytest.fixture(scope="module", params=[(m, t) for m in PARAMS for t in TASKS], ids=lambda p: f"{p[0]}-{p[1]}")
def trained(request: pytest.FixtureRequest) -> TrainResult:
    model, task = request.param
    return fit(model, task)


def test_every_model_kind_converts_and_agrees_exactly(trained: TrainResult) -> None:
    result = fx.export(trained.pipeline, trained.schema, trained.task, trained.X_test, labels=trained.labels)
    assert (result.status, result.reason) == ("ok", None)
    assert result.onnx is not None and result.agreement is not None
    assert result.agreement.rows == len(trained.X_test)
    assert result.agreement.mismatches == 0

    # Unseen categories, missing categories and missing numbers agree too.
    found = agreement(trained, result.onnx, with_surprises(trained.X_test))
    assert found.ok, found.describe()
    assert found.mismatches == 0
    if trained.task == "regression":
        assert found.max_rel_diff is not None and found.max_rel_diff <= fx.REGRESSION_RTOL
    else:
        assert found.max_abs_diff <= fx.PROBA_ATOL


def test_hist_gradient_boosting_fix_is_local_to_the_conversion() -> None:
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import get_converter
    from sklearn.ensemble import HistGradientBoostingClassifier

    alias = sklearn_operator_name_map[HistGradientBoostingClassifier]
    before = get_converter(alias)
    result = fit("hist_gradient_boosting", "binary")
    assert export_onnx.convert(result.pipeline, result.schema, result.task)
    assert get_converter(alias) is before  # skl2onnx's registry is as it was


def test_boolean_attributes_become_integers() -> None:
    assert export_onnx._no_booleans([np.uint8(1), False, True, 2]) == [np.uint8(1), 0, 1, 2]
    assert export_onnx._no_booleans(np.array([True, False])).tolist() == [1, 0]
    assert export_onnx._no_booleans(["BRANCH_LEQ", "LEAF"]) == ["BRANCH_LEQ", "LEAF"]
    assert export_onnx._no_booleans(True) == 1


def test_a_failing_conversion_is_recorded_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    result = fit("linear", "binary")

    def broken(*args: object) -> bytes:
        raise RuntimeError("simulated converter failure\nwith a second line")

    monkeypatch.setattr(export_onnx, "_convert", broken)
    outcome = fx.export(result.pipeline, result.schema, result.task, result.X_test)
    assert outcome.status == "failed"
    assert outcome.onnx is None
    assert outcome.reason == "RuntimeError: simulated converter failure with a second line"


def test_a_disagreeing_model_is_recorded_with_its_mismatches(monkeypatch: pytest.MonkeyPatch) -> None:
    result = fit("linear", "binary")
    other = fit("linear", "binary", params={"C": 1e-4})  # a much weaker model: different predictions
    other_bytes = export_onnx.convert(other.pipeline, other.schema, other.task)
    monkeypatch.setattr(export_onnx, "_convert", lambda *args: other_bytes)
    outcome = fx.export(result.pipeline, result.schema, result.task, result.X_test)
    assert outcome.status == "disagrees"
    assert outcome.agreement is not None and not outcome.agreement.ok
    assert outcome.agreement.mismatches > 0 or outcome.agreement.max_abs_diff > fx.PROBA_ATOL
    assert outcome.reason is not None and "held-out rows" in outcome.reason

    info, path = fx.export_to_folder(result.pipeline, result.schema, result.task, result.X_test, Path("/nonexistent"))
    assert info.status == "disagrees"
    assert path is None  # no file for a model that must not be served


def test_regression_tolerance_is_relative_with_a_floor() -> None:
    result = fit("linear", "regression")
    onnx_bytes = export_onnx.convert(result.pipeline, result.schema, result.task)

    class Shifted:
        """The pipeline, off by 1e-3 relative: far beyond float32 rounding."""

        def predict(self, x: pd.DataFrame) -> np.ndarray[Any, Any]:
            return np.asarray(result.pipeline.predict(x)) * 1.001

    found = agreement(result, onnx_bytes, result.X_test, pipeline=Shifted())
    assert found.mismatches == len(result.X_test)
    assert not found.ok


@pytest.mark.datasets
def test_adult_categorical_pipeline_agrees_on_its_held_out_rows(datasets_dir: Path) -> None:
    data = ingest(datasets_dir / "adult.csv", target="income")
    config = TrainConfig.model_validate(
        {
            "data": "adult.csv",
            "target": "income",
            "model": "hist_gradient_boosting",
            "params": {"max_iter": 40},
            "cv_folds": 0,
        }
    )
    result = train(data.frame, config, infer_schema(data.frame, "income"))
    assert sum(f.kind == "categorical" for f in result.schema.features) >= 8
    outcome = fx.export(result.pipeline, result.schema, result.task, result.X_test, labels=result.labels)
    assert outcome.status == "ok", outcome.reason
    assert outcome.agreement is not None
    assert (outcome.agreement.rows, outcome.agreement.mismatches) == (result.test_rows, 0)
    assert outcome.agreement.max_abs_diff <= fx.PROBA_ATOL


class _Counting:
    """The pipeline, recording every call that makes it predict."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.classes_ = getattr(pipeline, "classes_", None)
        self.calls: list[str] = []

    def predict(self, x: pd.DataFrame) -> Any:
        self.calls.append("predict")
        return self.pipeline.predict(x)

    def predict_proba(self, x: pd.DataFrame) -> Any:
        self.calls.append("predict_proba")
        return self.pipeline.predict_proba(x)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_the_predictions_training_kept_stand_in_for_the_pipeline(task: str) -> None:
    result = fit("hist_gradient_boosting", task)
    onnx_bytes = export_onnx.convert(result.pipeline, result.schema, result.task)
    assert result.test_predictions is not None
    reference = Prediction(result.test_predictions, result.test_proba)
    predicted = agreement(result, onnx_bytes, result.X_test)
    counting = _Counting(result.pipeline)
    known = agreement(result, onnx_bytes, result.X_test, pipeline=counting, reference=reference)
    assert counting.calls == []
    assert known == predicted
    assert known.ok and known.rows == len(result.X_test)

    # A reference for other rows is ignored: the pipeline predicts these.
    short = Prediction(result.test_predictions[:3], None if result.test_proba is None else result.test_proba[:3])
    assert agreement(result, onnx_bytes, result.X_test, pipeline=counting, reference=short) == predicted
    assert counting.calls


def test_a_reference_is_what_the_onnx_model_is_compared_with() -> None:
    result = fit("linear", "binary")
    onnx_bytes = export_onnx.convert(result.pipeline, result.schema, result.task)
    assert result.test_predictions is not None
    flipped = np.where(result.test_predictions == "yes", "no", "yes").astype(object)
    wrong = Prediction(flipped, result.test_proba)
    assert agreement(result, onnx_bytes, result.X_test, reference=wrong).mismatches == len(result.X_test)
    outcome = fx.export(
        result.pipeline, result.schema, result.task, result.X_test, labels=result.labels, reference=wrong
    )
    assert outcome.status == "disagrees"


def test_only_xgboost_models_need_the_extra_converters(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> None:
        raise AssertionError("registered XGBoost's converters for a scikit-learn model")

    hgb = fit("hist_gradient_boosting", "binary")
    xgb = fit("xgboost", "binary")
    assert export_onnx._needs_registered_converters(xgb.pipeline.named_steps[pipeline_module.MODEL_STEP])
    assert not export_onnx._needs_registered_converters(hgb.pipeline.named_steps[pipeline_module.MODEL_STEP])
    monkeypatch.setattr(export_onnx, "_register_converters", refuse)
    assert export_onnx.convert(hgb.pipeline, hgb.schema, hgb.task)
    linear = fit("linear", "regression")
    assert export_onnx.convert(linear.pipeline, linear.schema, linear.task)
