"""train(): split, cross-validation, fit, evaluation against the baseline, gate, and reproducibility."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fasttrack.config import CLASSIFICATION_METRICS, REGRESSION_METRICS
from fasttrack.data.describe import infer_schema
from fasttrack.data.schema import Schema, TargetSchema
from fasttrack.errors import ConfigError, DataError
from fasttrack.features.frames import prepare_features
from fasttrack.training.pipeline import build_pipeline
from fasttrack.training.train import EXAMPLE_ROWS, TrainResult, _cross_validate, train

pytestmark = pytest.mark.usefixtures("prepared_input")

train_module = importlib.import_module("fasttrack.training.train")


def test_binary_classification_end_to_end(make_data: Any, train_config: Any) -> None:
    data = make_data("classification", labels=("negative", "positive"))
    steps: list[str] = []
    result = train(data.frame, train_config("hist_gradient_boosting"), data.schema, on_step=steps.append)

    assert isinstance(result, TrainResult)
    assert result.task == "classification"
    assert result.labels == ["negative", "positive"]
    assert result.train_rows + result.test_rows == len(data.frame)
    assert result.test_rows == len(result.X_test) == len(result.y_test)
    # Held out by content: about test_size of the rows (48 of 240), a binomial draw (± 6.2).
    assert 30 <= result.test_rows <= 66
    assert list(result.X_test.columns) == data.schema.feature_names
    assert result.input_example.equals(result.X_test.head(EXAMPLE_ROWS))
    assert result.fit_seconds > 0

    evaluation = result.evaluation
    assert evaluation.primary_metric == "roc_auc"
    assert set(evaluation.metrics) == set(CLASSIFICATION_METRICS)
    assert set(evaluation.baseline) == set(CLASSIFICATION_METRICS)
    assert evaluation.baseline["roc_auc"] == pytest.approx(0.5)
    assert evaluation.metrics["roc_auc"] > 0.85
    assert evaluation.cv_folds == 3
    assert set(evaluation.cv) == set(CLASSIFICATION_METRICS)
    mean, std = evaluation.cv["roc_auc"]
    assert 0.8 < mean <= 1.0
    assert std >= 0.0
    assert evaluation.labels == ["negative", "positive"]
    assert sum(map(sum, evaluation.confusion_matrix or [])) == result.test_rows
    assert evaluation.gate.passed, evaluation.gate.reasons
    assert evaluation.notes == []

    # the split keeps the label balance on average: each class is held out at about test_size
    held_out = result.y_test.value_counts() / data.y.value_counts()
    assert ((held_out > 0.08) & (held_out < 0.32)).all()
    assert (
        result.pipeline.predict(result.X_test).tolist()[:3]
        == result.pipeline.predict(result.input_example).tolist()[:3]
    )
    assert steps == [
        "cross-validating (3 folds)",
        f"fitting hist_gradient_boosting on {result.train_rows} rows",
        f"evaluating on {result.test_rows} held-out rows",
    ]


def test_regression_end_to_end(make_data: Any, train_config: Any) -> None:
    data = make_data("regression")
    result = train(data.frame, train_config("linear", cv_folds=4), data.schema)
    evaluation = result.evaluation
    assert result.task == "regression"
    assert result.labels is None
    assert evaluation.primary_metric == "rmse"
    assert set(evaluation.metrics) == set(REGRESSION_METRICS)
    assert evaluation.metrics["rmse"] < evaluation.baseline["rmse"]
    assert evaluation.metrics["r2"] > 0.7
    assert evaluation.confusion_matrix is None
    assert evaluation.cv_folds == 4
    assert evaluation.gate.passed
    assert result.y_test.dtype == np.float64


@pytest.mark.parametrize("model", ["linear", "xgboost"])
def test_multiclass_and_int_labels(make_data: Any, train_config: Any, model: str) -> None:
    data = make_data("classification", labels=("Adelie", "Chinstrap", "Gentoo"))
    result = train(data.frame, train_config(model), data.schema)
    assert result.labels == ["Adelie", "Chinstrap", "Gentoo"]
    assert set(result.pipeline.predict(result.X_test).tolist()) <= set(result.labels)
    assert len(result.evaluation.confusion_matrix or []) == 3
    assert "roc_auc" in result.evaluation.metrics

    ints = make_data("classification", labels=(0, 1))
    result = train(ints.frame, train_config(model, cv_folds=0), ints.schema)
    predicted = result.pipeline.predict(result.X_test)
    assert predicted.dtype.kind == "i"
    assert set(predicted.tolist()) <= {0, 1}


def test_noise_cannot_beat_the_baseline(make_data: Any, train_config: Any) -> None:
    data = make_data("regression", noise=True)
    result = train(data.frame, train_config("random_forest", cv_folds=0), data.schema)
    gate = result.evaluation.gate
    assert not gate.passed
    assert any("does not beat the baseline's" in reason for reason in gate.reasons)


def test_unreachable_threshold_fails_the_gate_without_raising(make_data: Any, train_config: Any) -> None:
    data = make_data("classification")
    config = train_config("linear", cv_folds=0, thresholds={"accuracy": 0.999, "log_loss": 0.001})
    gate = train(data.frame, config, data.schema).evaluation.gate
    assert not gate.passed
    assert any(reason.startswith("accuracy") and "required minimum of 0.999" in reason for reason in gate.reasons)
    assert any(reason.startswith("log_loss") and "allowed maximum of 0.001" in reason for reason in gate.reasons)


def test_custom_primary_metric(make_data: Any, train_config: Any) -> None:
    data = make_data("classification")
    result = train(data.frame, train_config("linear", cv_folds=0, primary_metric="f1_macro"), data.schema)
    assert result.evaluation.primary_metric == "f1_macro"
    with pytest.raises(ConfigError, match="does not apply to classification"):
        train(data.frame, train_config("linear", primary_metric="rmse"), data.schema)


@pytest.mark.parametrize(("model", "task"), [("hist_gradient_boosting", "classification"), ("xgboost", "regression")])
def test_same_frame_config_and_seed_give_identical_results(
    make_data: Any, train_config: Any, model: str, task: str
) -> None:
    data = make_data(task)
    first = train(data.frame, train_config(model), data.schema)
    second = train(data.frame, train_config(model), data.schema)
    assert first.evaluation.to_dict() == second.evaluation.to_dict()
    pd.testing.assert_frame_equal(first.X_test, second.X_test)
    np.testing.assert_array_equal(first.pipeline.predict(first.X_test), second.pipeline.predict(first.X_test))
    # The split follows the rows' content and the salt, not the seed or the rows' order.
    reseeded = train(data.frame, train_config(model, seed=7), data.schema)
    pd.testing.assert_frame_equal(reseeded.X_test, first.X_test)
    shuffled = data.frame.sample(frac=1.0, random_state=1)
    reordered = train(shuffled, train_config(model), data.schema)
    assert sorted(reordered.X_test["income"]) == sorted(first.X_test["income"])
    other = train(data.frame, train_config(model, split_salt="another"), data.schema)
    assert not other.X_test.equals(first.X_test)


def test_classes_with_a_single_row_do_not_crash(make_data: Any, train_config: Any) -> None:
    data = make_data("classification", labels=("negative", "positive"), rows=60)
    frame = data.frame.copy()
    frame.loc[0, "target"] = "lonely"
    frame.loc[1, "target"] = "solo"
    schema = data.schema.model_copy(
        update={"target": data.schema.target.model_copy(update={"labels": ["negative", "positive", "lonely", "solo"]})}
    )
    result = train(frame, train_config("xgboost", cv_folds=5), schema)
    notes = " | ".join(result.evaluation.notes)
    assert "not stratified" in notes
    assert "'lonely'" in notes
    assert result.labels == ["negative", "positive", "lonely", "solo"]
    assert set(result.pipeline.predict(result.X_test).tolist()) <= set(result.labels)
    assert len(result.evaluation.confusion_matrix or []) == 4
    assert "accuracy" in result.evaluation.metrics
    assert "log_loss" in result.evaluation.metrics


def test_cv_folds_shrink_to_the_rarest_class(make_data: Any, train_config: Any) -> None:
    data = make_data("classification", rows=60)
    frame = data.frame.copy()
    frame.loc[:5, "target"] = "rare"  # six rows: about five land in the training part
    schema = data.schema.model_copy(
        update={"target": data.schema.target.model_copy(update={"labels": ["negative", "positive", "rare"]})}
    )
    result = train(frame, train_config("linear", cv_folds=10), schema)
    assert 2 <= result.evaluation.cv_folds < 10
    assert any("folds instead of 10" in note for note in result.evaluation.notes)
    assert "accuracy" in result.evaluation.cv


def test_cv_skipped_with_a_note_when_impossible(make_data: Any) -> None:
    data = make_data("classification", rows=40)
    y = data.y.copy()
    y.iloc[0] = "rare"  # a class with a single training row: no fold split can hold it
    steps: list[str] = []
    notes: list[str] = []
    pipeline = build_pipeline(data.schema, "linear", task="classification")
    cv, folds = _cross_validate(
        pipeline, data.x, y, task="classification", labels=["negative", "positive", "rare"], folds=3, seed=0,
        report=steps.append, notes=notes,
    )  # fmt: skip
    assert (cv, folds, steps) == ({}, 0, [])
    assert notes == ["cross-validation skipped: the rarest class has 1 training row, too few for 2 folds"]


def test_cv_off(make_data: Any, train_config: Any) -> None:
    data = make_data("regression")
    steps: list[str] = []
    result = train(data.frame, train_config("linear", cv_folds=0), data.schema, on_step=steps.append)
    assert result.evaluation.cv == {}
    assert not any(step.startswith("cross-validating") for step in steps)


def test_rows_without_target_are_left_out(make_data: Any, train_config: Any) -> None:
    data = make_data("regression", rows=100)
    frame = data.frame.copy()
    frame.loc[:9, "target"] = np.nan
    result = train(frame, train_config("linear", cv_folds=0), data.schema)
    assert result.train_rows + result.test_rows == 90


def test_extension_dtype_targets_become_native_labels(make_data: Any, train_config: Any) -> None:
    data = make_data("classification", labels=(0, 1))
    frame = data.frame.copy()
    frame["target"] = frame["target"].astype("Int64")
    result = train(frame, train_config("random_forest", cv_folds=0), data.schema)
    assert result.y_test.dtype == np.int64
    assert result.pipeline.predict(result.X_test).dtype == np.int64

    words = make_data("classification")
    frame = words.frame.copy()
    frame["target"] = frame["target"].astype("string")
    result = train(frame, train_config("linear", cv_folds=0), words.schema)
    assert result.y_test.dtype == object
    assert all(type(v) is str for v in result.pipeline.predict(result.X_test))


def test_labels_not_in_the_schema_are_a_data_error(make_data: Any, train_config: Any) -> None:
    data = make_data("classification")
    frame = data.frame.copy()
    frame.loc[0, "target"] = "surprise"
    with pytest.raises(DataError, match="'surprise'"):
        train(frame, train_config("linear"), data.schema)


def test_labels_default_to_the_sorted_values_when_the_schema_has_none(make_data: Any, train_config: Any) -> None:
    data = make_data("classification", labels=("Gentoo", "Adelie", "Chinstrap"))
    schema = data.schema.model_copy(update={"target": TargetSchema(name="target", task="classification", dtype="str")})
    result = train(data.frame, train_config("linear", cv_folds=0), schema)
    assert result.labels == ["Adelie", "Chinstrap", "Gentoo"]


def test_bad_inputs(make_data: Any, train_config: Any) -> None:
    data = make_data("classification")
    with pytest.raises(ConfigError, match="the config's target is 'label'"):
        train(data.frame, train_config("linear", target="label"), data.schema)
    with pytest.raises(ConfigError, match="regression"):
        train(data.frame, train_config("linear", task="regression"), data.schema)
    with pytest.raises(DataError, match="not in the data"):
        train(data.frame.drop(columns="target"), train_config("linear"), data.schema)
    with pytest.raises(DataError, match="at least"):
        train(data.frame.head(3), train_config("linear"), data.schema)
    with pytest.raises(ConfigError, match="unknown parameter"):
        train(data.frame, train_config("linear", params={"trees": 3}), data.schema)
    assert isinstance(data.schema, Schema)


def test_raw_data_with_the_real_schema_functions(monkeypatch: pytest.MonkeyPatch, train_config: Any) -> None:
    """Cleaned data as ingest leaves it (pandas text, booleans, missing values) through infer_schema and the
    real prepare_features, undoing this module's stand-in."""
    monkeypatch.setattr(train_module, "prepare_features", prepare_features)
    rng = np.random.default_rng(3)
    rows = 200
    a = rng.normal(0, 1, rows)
    colour = pd.Series(rng.choice(["red", "green", "blue"], rows), dtype="str")
    colour[rng.random(rows) < 0.1] = None
    frame = pd.DataFrame(
        {
            "a": a,
            "flag": pd.Series(rng.random(rows) < 0.5, dtype="boolean"),
            "colour": colour,
            "label": pd.Series(np.where(a + (colour == "red") > 0.3, "yes", "no"), dtype="str"),
        }
    )
    config = train_config("xgboost", target="label")
    schema = infer_schema(frame, "label", "auto")
    result = train(frame, config, schema)
    assert result.labels == ["no", "yes"]
    assert result.X_test["colour"].dtype == object
    assert result.evaluation.gate.passed, result.evaluation.gate.reasons
    assert all(type(v) is str for v in result.pipeline.predict(result.X_test))


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_the_held_out_predictions_are_kept(make_data: Any, train_config: Any, task: str) -> None:
    data = make_data(task)
    result = train(data.frame, train_config("hist_gradient_boosting", cv_folds=0), data.schema)
    assert result.test_predictions is not None
    np.testing.assert_array_equal(result.test_predictions, result.pipeline.predict(result.X_test))
    if task == "regression":
        assert result.test_proba is None
        return
    assert result.test_proba is not None
    assert result.labels is not None
    expected = result.pipeline.predict_proba(result.X_test)
    columns = [list(result.pipeline.classes_).index(label) for label in result.labels]
    np.testing.assert_array_equal(result.test_proba, expected[:, columns])


@pytest.mark.parametrize(
    ("model", "labels"),
    [
        ("linear", ("negative", "positive")),
        ("hist_gradient_boosting", ("negative", "positive")),
        ("linear", ("Adelie", "Chinstrap", "Gentoo")),
        ("random_forest", (0, 1, 2)),
    ],
)
def test_a_classifier_records_its_calibration_on_the_held_out_rows(
    make_data: Any, train_config: Any, model: str, labels: tuple[Any, ...]
) -> None:
    data = make_data("classification", labels=labels, rows=400)
    result = train(data.frame, train_config(model, cv_folds=0), data.schema)
    calib = result.evaluation.calibration
    assert calib is not None and result.test_proba is not None
    # The held-out rows, each judged by its top-label confidence (any number of classes) against being right.
    assert calib.rows == result.test_rows
    assert calib.accuracy == pytest.approx(result.evaluation.metrics["accuracy"])
    assert calib.confidence == pytest.approx(float(result.test_proba.max(axis=1).mean()))
    assert sum(b.rows for b in calib.bins) == result.test_rows
    # ECE: the rows-weighted gap of each non-empty bin, recomputed here from the bins' own numbers.
    gaps = [b.rows * abs((b.accuracy or 0.0) - (b.confidence or 0.0)) for b in calib.bins if b.rows]
    assert calib.error == pytest.approx(sum(gaps) / calib.rows)
    assert 0.0 <= calib.error <= 1.0
    # The mean confidence misses the accuracy by at most the ECE (the triangle inequality over bins).
    assert abs(calib.confidence - calib.accuracy) <= calib.error + 1e-12


def test_a_regressor_records_no_calibration(make_data: Any, train_config: Any) -> None:
    data = make_data("regression")
    assert train(data.frame, train_config("linear", cv_folds=0), data.schema).evaluation.calibration is None
