"""The model pipeline: every model for both tasks, original labels, and robustness to odd inputs."""

from __future__ import annotations

import pickle
from typing import Any

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from xgboost import XGBClassifier

from fasttrack.data.schema import FeatureSchema, Schema, TargetSchema
from fasttrack.errors import ConfigError
from fasttrack.training.estimators import LabelEncodedClassifier
from fasttrack.training.pipeline import (
    FOREST_BOUNDS,
    MISSING_CATEGORY,
    MODEL_KINDS,
    build_pipeline,
    encoded_categories,
    with_string_missing_categories,
)

FAST = {
    "linear": {},
    "random_forest": {"n_estimators": 20},
    "hist_gradient_boosting": {"max_iter": 20},
    "xgboost": {"n_estimators": 20, "n_jobs": 1},
}

# (task, labels): string and integer binary labels, multiclass strings, and regression.
TARGETS: list[tuple[str, tuple[Any, ...] | None]] = [
    ("classification", ("negative", "positive")),
    ("classification", (0, 1)),
    ("classification", ("Adelie", "Chinstrap", "Gentoo")),
    ("regression", None),
]


def _fit(make_data: Any, model: str, task: str, labels: Any, **kwargs: Any) -> tuple[Any, Any]:
    data = make_data(task, labels=labels) if labels is not None else make_data(task)
    pipeline = build_pipeline(data.schema, model, task=task, params=FAST[model], **kwargs)
    pipeline.fit(data.x, data.y)
    return pipeline, data


@pytest.mark.parametrize("model", MODEL_KINDS)
@pytest.mark.parametrize(("task", "labels"), TARGETS, ids=["binary-str", "binary-int", "multiclass", "regression"])
def test_every_model_fits_and_predicts_original_labels(make_data: Any, model: str, task: str, labels: Any) -> None:
    pipeline, data = _fit(make_data, model, task, labels)
    assert [name for name, _ in pipeline.steps] == ["preprocess", "model"]
    predicted = pipeline.predict(data.x)
    assert len(predicted) == len(data.x)
    if task == "regression":
        assert predicted.dtype.kind == "f"
        assert np.corrcoef(predicted, data.y)[0, 1] > 0.8
        return
    assert list(pipeline.classes_) == sorted(labels)
    assert set(predicted.tolist()) <= set(labels)
    # Native label types: str labels stay str, int labels stay integers (not floats, not codes).
    assert all(type(v.item() if isinstance(v, np.generic) else v) is type(labels[0]) for v in predicted)
    proba = pipeline.predict_proba(data.x)
    assert proba.shape == (len(data.x), len(labels))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert (predicted == data.y.to_numpy()).mean() > 0.7


@pytest.mark.parametrize("model", MODEL_KINDS)
def test_unseen_rare_and_missing_values_at_predict_time(make_data: Any, model: str) -> None:
    pipeline, data = _fit(make_data, model, "classification", ("negative", "positive"))
    row = {"age": 41.0, "income": 22000.0, "member": 1.0}
    odd = pd.DataFrame(
        [
            {**row, "colour": "never-seen"},
            {**row, "colour": "purple"},  # rare in training: grouped with unseen ones
            {**row, "colour": np.nan},
            {"age": np.nan, "income": np.nan, "member": np.nan, "colour": np.nan},
        ],
        columns=data.schema.feature_names,
    ).astype({"age": "float64", "income": "float64", "member": "float64", "colour": object})
    proba = pipeline.predict_proba(odd)
    assert np.isfinite(proba).all()
    np.testing.assert_array_equal(proba[0], proba[1])
    assert set(pipeline.predict(odd).tolist()) <= {"negative", "positive"}


def test_categories_come_from_the_schema_sorted_with_missing(make_data: Any) -> None:
    pipeline, _ = _fit(make_data, "linear", "classification", ("negative", "positive"))
    encoder = pipeline.named_steps["preprocess"].named_transformers_["categorical"].named_steps["encode"]
    assert [list(c) for c in encoder.categories_] == [sorted(["red", "green", "blue", MISSING_CATEGORY])]
    assert encoder.handle_unknown == "ignore"
    assert encoder.min_frequency is None


def test_encoded_categories_edge_cases() -> None:
    def feature(frequent: list[str] | None, nullable: bool) -> FeatureSchema:
        return FeatureSchema(
            name="c",
            kind="categorical",
            dtype="str",
            nullable=nullable,
            missing_ratio=0.0,
            frequent_categories=frequent,
        )

    assert encoded_categories(feature(["b", "a"], nullable=False)) == ["a", "b"]
    assert encoded_categories(feature(["b", "a"], nullable=True)) == [MISSING_CATEGORY, "a", "b"]
    # An encoder cannot have an empty category list: a feature with no frequent category keeps one column.
    assert encoded_categories(feature(None, nullable=False)) == [MISSING_CATEGORY]


def test_linear_models_scale_and_tree_models_do_not(make_data: Any) -> None:
    data = make_data("classification")
    for model, scaled in [("linear", True), ("random_forest", False), ("xgboost", False)]:
        numeric = build_pipeline(data.schema, model, task="classification").named_steps["preprocess"].transformers[0]
        assert ("scale" in numeric[1].named_steps) is scaled


def test_numeric_only_and_categorical_only_schemas(make_data: Any) -> None:
    data = make_data("regression")
    target = data.schema.target
    for keep in (["age", "income", "member"], ["colour"]):
        schema = Schema(features=[data.schema.feature(n) for n in keep], target=target, n_rows=data.schema.n_rows)
        pipeline = build_pipeline(schema, "hist_gradient_boosting", task="regression", params={"max_iter": 10})
        pipeline.fit(data.frame[keep], data.y)
        assert len(pipeline.predict(data.frame[keep])) == len(data.frame)


@pytest.mark.parametrize(("model", "task"), [("random_forest", "regression"), ("xgboost", "classification")])
def test_unknown_parameter_is_a_config_error_naming_it(make_data: Any, model: str, task: str) -> None:
    data = make_data(task)
    with pytest.raises(ConfigError, match="unknown parameter 'n_trees'") as raised:
        build_pipeline(data.schema, model, task=task, params={"n_trees": 5, "max_depth": 3})
    assert "valid parameters:" in str(raised.value)
    assert "n_estimators" in str(raised.value)


def test_invalid_parameter_value_is_a_config_error(make_data: Any) -> None:
    data = make_data("classification")
    with pytest.raises(ConfigError, match=r"invalid parameter for the random_forest classification model.*max_depth"):
        build_pipeline(data.schema, "random_forest", task="classification", params={"max_depth": "deep"})


def test_params_override_defaults(make_data: Any) -> None:
    data = make_data("classification")
    forest = build_pipeline(data.schema, "random_forest", task="classification", params={"max_depth": 3}, seed=7)
    assert forest.named_steps["model"].max_depth == 3
    assert forest.named_steps["model"].random_state == 7
    boosted = build_pipeline(data.schema, "xgboost", task="classification", params={"max_depth": 2})
    wrapper = boosted.named_steps["model"]
    assert isinstance(wrapper, LabelEncodedClassifier)
    assert wrapper.estimator.max_depth == 2
    assert wrapper.estimator.n_estimators == 300


def test_the_forest_is_bounded_by_default_and_params_lift_the_bounds(make_data: Any) -> None:
    schema = make_data("classification").schema
    for task in ("classification", "regression"):
        forest = build_pipeline(schema, "random_forest", task=task).named_steps["model"]
        assert {name: forest.get_params()[name] for name in FOREST_BOUNDS} == FOREST_BOUNDS
    unbounded = {name: None if name != "min_samples_leaf" else 1 for name in FOREST_BOUNDS}
    forest = build_pipeline(schema, "random_forest", task="classification", params=unbounded).named_steps["model"]
    assert {name: forest.get_params()[name] for name in FOREST_BOUNDS} == unbounded


def test_unknown_model_is_a_config_error(make_data: Any) -> None:
    with pytest.raises(ConfigError, match="unknown model"):
        build_pipeline(make_data("classification").schema, "svm", task="classification")  # type: ignore[arg-type]


@pytest.mark.parametrize("model", MODEL_KINDS)
def test_same_seed_same_predictions(make_data: Any, model: str) -> None:
    first, data = _fit(make_data, model, "classification", ("negative", "positive"), seed=3)
    second, _ = _fit(make_data, model, "classification", ("negative", "positive"), seed=3)
    np.testing.assert_array_equal(first.predict_proba(data.x), second.predict_proba(data.x))


def test_string_missing_copy_predicts_like_the_original_on_the_token(make_data: Any) -> None:
    pipeline, data = _fit(make_data, "linear", "classification", ("negative", "positive"))
    onnx_ready = with_string_missing_categories(pipeline)
    tokens = data.x.copy()
    tokens["colour"] = tokens["colour"].where(tokens["colour"].notna(), MISSING_CATEGORY)
    assert data.x["colour"].isna().any()
    np.testing.assert_allclose(onnx_ready.predict_proba(tokens), pipeline.predict_proba(data.x))
    imputer = onnx_ready.named_steps["preprocess"].named_transformers_["categorical"].named_steps["impute"]
    assert imputer.missing_values == MISSING_CATEGORY
    original = pipeline.named_steps["preprocess"].named_transformers_["categorical"].named_steps["impute"]
    assert original.missing_values is not MISSING_CATEGORY


class TestLabelEncodedClassifier:
    """The XGBoost wrapper behaves like a normal sklearn classifier with original labels."""

    @pytest.fixture
    def fitted(self) -> LabelEncodedClassifier:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(120, 3))
        y = np.where(x[:, 0] > 0.3, "high", np.where(x[:, 0] < -0.3, "low", "mid")).astype(object)
        return LabelEncodedClassifier(XGBClassifier(n_estimators=10, random_state=0)).fit(x, y)

    def test_original_labels_and_inner_estimator(self, fitted: LabelEncodedClassifier) -> None:
        assert list(fitted.classes_) == ["high", "low", "mid"]
        assert isinstance(fitted.estimator_, XGBClassifier)
        x = np.array([[2.0, 0, 0], [-2.0, 0, 0], [0.0, 0, 0]])
        assert fitted.predict(x).tolist() == ["high", "low", "mid"]
        assert fitted.predict_proba(x).shape == (3, 3)
        assert fitted.n_features_in_ == 3
        assert fitted.feature_importances_.shape == (3,)

    def test_sklearn_api_and_pickling(self, fitted: LabelEncodedClassifier) -> None:
        params = fitted.get_params()
        assert params["estimator__n_estimators"] == 10
        copy = clone(fitted).set_params(estimator__n_estimators=5)
        assert copy.estimator.n_estimators == 5
        assert not hasattr(copy, "estimator_")
        x = np.random.default_rng(1).normal(size=(10, 3))
        for dumps, loads in [(pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)]:
            restored = loads(dumps(fitted))
            np.testing.assert_array_equal(restored.predict_proba(x), fitted.predict_proba(x))
            assert restored.predict(x).tolist() == fitted.predict(x).tolist()

    def test_integer_labels_that_are_not_codes(self) -> None:
        x = np.arange(40, dtype=np.float64).reshape(-1, 1)
        y = np.where(x[:, 0] > 20, 7, 3)
        model = LabelEncodedClassifier(XGBClassifier(n_estimators=5)).fit(x, y)
        assert model.classes_.tolist() == [3, 7]
        assert set(model.predict(x).tolist()) == {3, 7}


def test_target_schema_is_not_needed_by_the_pipeline() -> None:
    schema = Schema(
        features=[FeatureSchema(name="a", kind="numeric", dtype="float64", nullable=False, missing_ratio=0.0)],
        target=TargetSchema(name="t", task="regression", dtype="float64"),
        n_rows=3,
    )
    pipeline = build_pipeline(schema, "linear", task="regression").fit(
        pd.DataFrame({"a": [1.0, 2.0, 3.0]}), pd.Series([2.0, 4.0, 6.0])
    )
    np.testing.assert_allclose(pipeline.predict(pd.DataFrame({"a": [4.0]})), [8.0])
