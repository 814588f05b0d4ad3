"""ONNX export: every model kind converts and agrees with scikit-learn; failures are recorded, never raised."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fasttrack.config import Settings, TrainConfig
from fasttrack.data.describe import infer_schema
from fasttrack.data.ingest import ingest
from fasttrack.features.frames import prepare_features
from fasttrack.registry import onnx as fx
from fasttrack.registry import tracking
from fasttrack.registry.model_folder import ONNX_FILE, load_model_folder
from fasttrack.training import pipeline as pipeline_module
from fasttrack.training.train import TrainResult, train

# Small models: the point is the conversion, not the fit.
PARAMS: dict[str, dict[str, Any]] = {
    "linear": {},
    "random_forest": {"n_estimators": 15, "max_depth": 6},
    "hist_gradient_boosting": {"max_iter": 25},
    "xgboost": {"n_estimators": 25, "max_depth": 3},
}
TASKS = ("binary", "multiclass", "regression")


def mixed_frame(task: str, rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """Numeric (with gaps), boolean, and categorical (with gaps and two rare categories) features."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, rows)
    a[rng.random(rows) < 0.1] = np.nan
    b = rng.normal(5, 2, rows)
    flag = rng.random(rows) < 0.4
    colour = rng.choice(["red", "green", "blue", "rare1", "rare2"], rows, p=[0.4, 0.3, 0.28, 0.01, 0.01])
    colour = colour.astype(object)
    colour[rng.random(rows) < 0.1] = None
    size = rng.choice(["S", "M", "L"], rows)
    signal = np.nan_to_num(a) - (b - 5) / 2 + flag + (colour == "red") + (size == "L") + rng.normal(0, 0.3, rows)
    frame = pd.DataFrame({"a": a, "b": b, "flag": flag, "colour": colour, "size": size})
    if task == "regression":
        frame["y"] = signal * 10 + 100
    elif task == "binary":
        frame["y"] = np.where(signal > 0.5, "yes", "no")
    else:
        frame["y"] = np.digitize(signal, [0.0, 1.2]).astype(int)  # integer labels 0, 1, 2
    return frame


def fit(model: str, task: str, **overrides: Any) -> TrainResult:
    frame = mixed_frame(task)
    resolved = "regression" if task == "regression" else "classification"
    values: dict[str, Any] = {
        "data": "memory://mixed.csv",
        "target": "y",
        "name": "mixed",
        "model": model,
        "task": resolved,
        "params": PARAMS[model],
        "cv_folds": 0,
    }
    values.update(overrides)
    return train(frame, TrainConfig.model_validate(values), infer_schema(frame, "y", resolved))


def with_surprises(x: pd.DataFrame) -> pd.DataFrame:
    """Held-out rows plus unseen and missing categories and missing numbers, as serving sees them."""
    surprising = x.copy()
    surprising.loc[surprising.index[::7], "colour"] = "purple"  # never seen in training
    surprising.loc[surprising.index[1::7], "colour"] = np.nan
    surprising.loc[surprising.index[2::7], "size"] = np.nan  # missing, though training had none
    surprising.loc[surprising.index[3::7], "b"] = np.nan
    surprising.loc[surprising.index[4::7], "flag"] = np.nan
    return pd.concat([x, surprising], ignore_index=True)


@pytest.fixture(scope="module", params=[(m, t) for m in PARAMS for t in TASKS], ids=lambda p: f"{p[0]}-{p[1]}")
def trained(request: pytest.FixtureRequest) -> TrainResult:
    model, task = request.param
    return fit(model, task)


def test_every_model_kind_converts_and_agrees_exactly(trained: TrainResult) -> None:
    result = fx.export(trained.pipeline, trained.schema, trained.task, trained.X_test)
    assert (result.status, result.reason) == ("ok", None)
    assert result.onnx is not None and result.agreement is not None
    assert result.agreement.rows == len(trained.X_test)
    assert result.agreement.mismatches == 0

    # Unseen categories, missing categories and missing numbers agree too.
    rows = with_surprises(trained.X_test)
    agreement = fx.check_agreement(result.onnx, trained.pipeline, rows, trained.schema, trained.task)
    assert agreement.ok, agreement.describe()
    assert agreement.mismatches == 0
    if trained.task == "regression":
        assert agreement.max_rel_diff is not None and agreement.max_rel_diff <= fx.REGRESSION_RTOL
    else:
        assert agreement.max_abs_diff <= fx.PROBA_ATOL


def test_runtime_takes_raw_columns_and_records(trained: TrainResult) -> None:
    converted = fx.convert(trained.pipeline, trained.schema, trained.task)
    assert converted.onnx is not None
    model = fx.OnnxModel.load(converted.onnx, trained.schema, trained.labels)
    raw = {
        "a": [0.5, None, float("nan"), 2.0, -1.0],
        "b": [5.0, 4.0, None, 7.5, 3.0],
        "flag": [True, False, None, True, False],
        "colour": [" red ", None, float("nan"), "purple", ""],
        "size": ["L", "S", None, "M", "L"],
    }
    expected = trained.pipeline.predict(prepare_features(pd.DataFrame(raw), trained.schema))
    values, proba = model.predict(raw)
    records = [dict(zip(raw, row, strict=True)) for row in zip(*raw.values(), strict=True)]
    record_values, record_proba = model.predict_records(records)
    if trained.task == "regression":
        np.testing.assert_allclose(values, expected, rtol=1e-4)
        assert proba is None
    else:
        assert values.tolist() == expected.tolist()
        assert [type(v) for v in values.tolist()] == [type(v) for v in expected.tolist()]
        reference = trained.pipeline.predict_proba(prepare_features(pd.DataFrame(raw), trained.schema))
        order = [list(trained.pipeline.classes_).index(label) for label in trained.labels or []]
        assert proba is not None
        np.testing.assert_allclose(proba, reference[:, order], atol=fx.PROBA_ATOL)
        assert record_proba is not None
        np.testing.assert_array_equal(record_proba, proba)
    np.testing.assert_array_equal(record_values, values)

    # The batch variant (category codes instead of text) predicts the same.
    coded = fx.OnnxModel.load(converted.onnx, trained.schema, trained.labels, categorical_codes=True)
    assert coded.category_codes is not None and set(coded.category_codes) == {"colour", "size"}
    coded_values, coded_proba = coded.predict(raw)
    np.testing.assert_array_equal(coded_values, values)
    if proba is not None:
        assert coded_proba is not None
        np.testing.assert_array_equal(coded_proba, proba)


def test_labels_come_back_in_their_own_type_and_order() -> None:
    result = fit("linear", "multiclass")
    onnx_bytes = fx.convert(result.pipeline, result.schema, result.task).onnx
    assert onnx_bytes is not None
    reversed_labels = list(reversed(result.labels or []))
    model = fx.OnnxModel.load(onnx_bytes, result.schema, reversed_labels)
    columns = {name: result.X_test[name].to_numpy() for name in result.schema.feature_names}
    labels, proba = model.predict(columns)
    assert labels.dtype == np.int64
    assert proba is not None
    reference = result.pipeline.predict_proba(result.X_test)
    np.testing.assert_allclose(proba, reference[:, ::-1], atol=fx.PROBA_ATOL)


def test_hist_gradient_boosting_fix_is_local_to_the_conversion() -> None:
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import get_converter
    from sklearn.ensemble import HistGradientBoostingClassifier

    alias = sklearn_operator_name_map[HistGradientBoostingClassifier]
    before = get_converter(alias)
    result = fit("hist_gradient_boosting", "binary")
    assert fx.convert(result.pipeline, result.schema, result.task).ok
    assert get_converter(alias) is before  # skl2onnx's registry is as it was


def test_boolean_attributes_become_integers() -> None:
    assert fx._no_booleans([np.uint8(1), False, True, 2]) == [np.uint8(1), 0, 1, 2]
    assert fx._no_booleans(np.array([True, False])).tolist() == [1, 0]
    assert fx._no_booleans(["BRANCH_LEQ", "LEAF"]) == ["BRANCH_LEQ", "LEAF"]
    assert fx._no_booleans(True) == 1


def test_a_failing_conversion_is_recorded_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    result = fit("linear", "binary")

    def broken(*args: object) -> bytes:
        raise RuntimeError("simulated converter failure\nwith a second line")

    monkeypatch.setattr(fx, "_convert", broken)
    outcome = fx.export(result.pipeline, result.schema, result.task, result.X_test)
    assert outcome.status == "failed"
    assert outcome.onnx is None
    assert outcome.reason == "RuntimeError: simulated converter failure with a second line"


def test_a_disagreeing_model_is_recorded_with_its_mismatches(monkeypatch: pytest.MonkeyPatch) -> None:
    result = fit("linear", "binary")
    other = fit("linear", "binary", params={"C": 1e-4})  # a much weaker model: different predictions
    other_bytes = fx.convert(other.pipeline, other.schema, other.task).onnx
    monkeypatch.setattr(fx, "_convert", lambda *args: other_bytes)
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
    onnx_bytes = fx.convert(result.pipeline, result.schema, result.task).onnx
    assert onnx_bytes is not None

    class Shifted:
        """The pipeline, off by 1e-3 relative: far beyond float32 rounding."""

        def predict(self, x: pd.DataFrame) -> np.ndarray[Any, Any]:
            return np.asarray(result.pipeline.predict(x)) * 1.001

    agreement = fx.check_agreement(onnx_bytes, Shifted(), result.X_test, result.schema, "regression")
    assert agreement.mismatches == len(result.X_test)
    assert not agreement.ok


def test_sessions_are_single_threaded_and_quiet() -> None:
    trained = fit("linear", "binary")
    onnx_bytes = fx.convert(trained.pipeline, trained.schema, trained.task).onnx
    assert onnx_bytes is not None
    model = fx.OnnxModel.load(onnx_bytes, trained.schema, trained.labels)
    options = model.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level) == (1, 1, 3)

    # One model, many threads: every thread gets the answers it would get alone.
    columns = {name: trained.X_test[name].to_numpy() for name in trained.schema.feature_names}
    expected, _ = model.predict(columns)
    failures: list[str] = []

    def work() -> None:
        for _ in range(20):
            labels, _ = model.predict(columns)
            if labels.tolist() != expected.tolist():
                failures.append("different labels")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_missing_category_matches_the_pipeline() -> None:
    assert fx.MISSING_CATEGORY == pipeline_module.MISSING_CATEGORY


def test_registration_stores_the_onnx_model(good_result: TrainResult, settings: Settings) -> None:
    run = tracking.log_training(good_result, settings=settings, source="memory://toy.csv", fingerprint="f" * 64)
    assert run.registered
    loaded = load_model_folder(tracking.resolve_model("models:/toy/1", settings).path)
    assert loaded.onnx_path is not None and loaded.onnx_path.name == ONNX_FILE
    info = loaded.metadata.onnx
    assert info is not None
    assert (info.status, info.mismatches, info.rows_checked) == ("ok", 0, good_result.test_rows)
    assert {"onnxruntime", "skl2onnx"} <= set(info.libraries)
    assert tracking.client(settings).get_run(run.run_id).data.tags[fx.TAG_ONNX] == "ok"

    onnx_model = loaded.onnx_model()
    assert onnx_model is not None and loaded.onnx_model() is onnx_model  # opened once
    frame = pd.DataFrame({"a": [2.0, -2.0, None], "b": [-2.0, 2.0, 0.0], "colour": ["red", "purple", None]})
    labels, _ = onnx_model.predict({name: frame[name].to_numpy() for name in frame})
    assert labels.tolist() == loaded.predict(frame)


def test_registration_survives_a_failed_conversion(
    good_result: TrainResult, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> bytes:
        raise ValueError("simulated: cannot convert")

    monkeypatch.setattr(fx, "_convert", broken)
    run = tracking.log_training(good_result, settings=settings, source="memory://toy.csv", fingerprint="f" * 64)
    assert run.registered  # served by scikit-learn
    loaded = load_model_folder(tracking.resolve_model("models:/toy/1", settings).path)
    assert loaded.onnx_path is None and loaded.onnx_model() is None
    assert loaded.metadata.onnx is not None and loaded.metadata.onnx.status == "failed"
    tags = tracking.client(settings).get_run(run.run_id).data.tags
    assert tags[fx.TAG_ONNX] == "failed"
    assert tags[fx.TAG_ONNX_REASON] == "ValueError: simulated: cannot convert"


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
    outcome = fx.export(result.pipeline, result.schema, result.task, result.X_test)
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
    onnx_bytes = fx.convert(result.pipeline, result.schema, result.task).onnx
    assert onnx_bytes is not None and result.test_predictions is not None
    reference = fx.Reference(result.test_predictions, result.test_proba, result.labels)
    predicted = fx.check_agreement(onnx_bytes, result.pipeline, result.X_test, result.schema, result.task)
    counting = _Counting(result.pipeline)
    known = fx.check_agreement(onnx_bytes, counting, result.X_test, result.schema, result.task, reference=reference)
    assert counting.calls == []
    assert known == predicted
    assert known.ok and known.rows == len(result.X_test)

    # A reference for other rows is ignored: the pipeline predicts these.
    short = fx.Reference(result.test_predictions[:3], None if result.test_proba is None else result.test_proba[:3])
    assert (
        fx.check_agreement(onnx_bytes, counting, result.X_test, result.schema, result.task, reference=short)
        == predicted
    )
    assert counting.calls


def test_a_reference_is_what_the_onnx_model_is_compared_with() -> None:
    result = fit("linear", "binary")
    onnx_bytes = fx.convert(result.pipeline, result.schema, result.task).onnx
    assert onnx_bytes is not None and result.test_predictions is not None
    flipped = np.where(result.test_predictions == "yes", "no", "yes").astype(object)
    wrong = fx.Reference(flipped, result.test_proba, result.labels)
    agreement = fx.check_agreement(
        onnx_bytes, result.pipeline, result.X_test, result.schema, "classification", reference=wrong
    )
    assert agreement.mismatches == len(result.X_test)
    outcome = fx.export(result.pipeline, result.schema, result.task, result.X_test, reference=wrong)
    assert outcome.status == "disagrees"


def test_only_xgboost_models_need_the_extra_converters(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> None:
        raise AssertionError("registered XGBoost's converters for a scikit-learn model")

    hgb = fit("hist_gradient_boosting", "binary")
    xgb = fit("xgboost", "binary")
    assert fx._needs_registered_converters(xgb.pipeline.named_steps[pipeline_module.MODEL_STEP])
    assert not fx._needs_registered_converters(hgb.pipeline.named_steps[pipeline_module.MODEL_STEP])
    monkeypatch.setattr(fx, "_register_converters", refuse)
    assert fx.convert(hgb.pipeline, hgb.schema, hgb.task).status == "ok"
    linear = fit("linear", "regression")
    assert fx.convert(linear.pipeline, linear.schema, linear.task).status == "ok"
