"""The data plane: validation names every bad field, predictions match the pipeline, checks refuse broken models."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from fasttrack.errors import BadRequestError, ModelLoadError, SchemaValidationError
from fasttrack.features.frames import prepare_features
from fasttrack.registry.model_folder import LoadedModel
from fasttrack.serving.metrics import ServerMetrics
from fasttrack.serving.predictor import Predictor


def problems(predictor: Predictor, records: list[Any]) -> list[tuple[str, str]]:
    with pytest.raises(SchemaValidationError) as caught:
        predictor.validate(records)
    return [(v.field, v.reason) for v in caught.value.violations]


def fresh(predictor: Predictor) -> Predictor:
    """The same loaded model with metrics of its own."""
    return Predictor(predictor.model, predictor.source, metrics=ServerMetrics())


def sample_value(metrics: ServerMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# ----------------------------------------------------------------------------------------------- validation
# What a record may hold is the record driver's (tests/unit/features/test_records.py); here, what the predictor
# does with it: refused requests are counted invalid, unusual values are counted per feature.
def test_a_refused_request_is_counted_invalid(classifier: Predictor) -> None:
    predictor = fresh(classifier)
    assert problems(predictor, [{"feature_1": "abc", "feature_2": 2.1}]) == [
        ("feature_1", "expected a number, got 'abc'")
    ]
    with pytest.raises(SchemaValidationError):
        predictor.predict([{"feature_1": "abc", "feature_2": 2.1}])
    labels = {"model": "sample", "version": "1", "outcome": "invalid"}
    assert sample_value(predictor.metrics._server, "fasttrack_predictions_total", **labels) == 1


def test_unusual_values_are_served_and_counted(mixed: Predictor) -> None:
    predictor = fresh(mixed)
    low = predictor.schema.feature("amount").min
    assert low is not None
    records = [
        {"amount": low - 100, "colour": "purple", "member": True},
        {"amount": 50, "colour": "red", "member": True, "label": "yes"},
        {"amount": 1e9, "colour": "orange", "member": None},
    ]
    model_input = predictor.validate(records)
    assert model_input.unseen == {"colour": 2}
    assert model_input.out_of_range == {"amount": 2}
    assert len(predictor.predict(records).values) == 3
    assert len(predictor.predict([{"colour": "red", "member": True, "other": 1}], extra="ignore").values) == 1
    metrics = predictor.metrics._server
    labels = {"model": "mixed", "version": "1"}
    assert sample_value(metrics, "fasttrack_unseen_category_total", feature="colour", **labels) == 2
    assert sample_value(metrics, "fasttrack_out_of_range_total", feature="amount", **labels) == 2
    assert sample_value(metrics, "fasttrack_missing_value_total", feature="member", **labels) == 1
    assert sample_value(metrics, "fasttrack_ignored_field_total", field="label", **labels) == 1
    assert sample_value(metrics, "fasttrack_ignored_field_total", field="__unknown__", **labels) == 1


# ----------------------------------------------------------------------------------------------- prediction
def pipeline_predictions(model: LoadedModel, records: list[dict[str, Any]]) -> list[Any]:
    return model.pipeline.predict(prepare_features(pd.DataFrame(records), model.schema)).tolist()  # type: ignore[no-any-return]


def test_predictions_match_the_pipeline(classifier: Predictor, regressor: Predictor, mixed: Predictor) -> None:
    cases = {
        classifier: [{"feature_1": 5.3, "feature_2": 2.1}, {"feature_1": 1.0, "feature_2": 6.0}],
        regressor: [{"x": 3.1}, {"x": -2}],
        mixed: [
            {"amount": 30.0, "colour": "red", "member": True},
            {"amount": None, "colour": "blue", "member": False},
            {"colour": "never-seen", "member": True},
        ],
    }
    for predictor, records in cases.items():
        ours, theirs = predictor.predict(records).values, pipeline_predictions(predictor.model, records)
        if predictor.is_classifier:
            assert ours == theirs
        else:
            # The ONNX graph (float32) serves by default; registration checked it against sklearn within rel 1e-4.
            assert ours == pytest.approx(theirs, rel=1e-4)


def test_the_briefs_example(classifier: Predictor, regressor: Predictor) -> None:
    assert classifier.predict([{"feature_1": 5.3, "feature_2": 2.1}]).values == ["positive"]
    value = regressor.predict([{"x": 3.1}]).values[0]
    assert isinstance(value, float)
    assert value == pytest.approx(2 * 3.1 + 1, abs=0.5)


def test_probabilities(classifier: Predictor, regressor: Predictor) -> None:
    batch = classifier.predict([{"feature_1": 5.3, "feature_2": 2.1}] * 3, probabilities=True)
    rows = batch.probability_records()
    assert len(rows) == 3
    assert set(rows[0]) == {"negative", "positive"}
    assert sum(rows[0].values()) == pytest.approx(1.0)
    assert rows[0]["positive"] > 0.5
    assert classifier.predict([{"feature_1": 5.3, "feature_2": 2.1}]).probabilities is None
    with pytest.raises(BadRequestError, match="regressor"):
        regressor.predict([{"x": 1.0}], probabilities=True)


def test_prediction_metrics(classifier: Predictor, regressor: Predictor) -> None:
    predictor = fresh(classifier)
    metrics = predictor.metrics._server
    labels = {"model": "sample", "version": "1"}
    predictor.predict([{"feature_1": 5.3, "feature_2": 2.1}, {"feature_1": 1.0, "feature_2": 6.0}])
    with pytest.raises(SchemaValidationError):
        predictor.predict([{"feature_1": "x"}])
    assert sample_value(metrics, "fasttrack_predictions_total", outcome="success", **labels) == 1
    assert sample_value(metrics, "fasttrack_predictions_total", outcome="invalid", **labels) == 1
    assert sample_value(metrics, "fasttrack_prediction_rows_total", **labels) == 2
    assert sample_value(metrics, "fasttrack_inference_seconds_count", **labels) == 1
    assert sample_value(metrics, "fasttrack_predicted_label_total", label="positive", **labels) == 1
    assert sample_value(metrics, "fasttrack_predicted_label_total", label="negative", **labels) == 1

    reg = fresh(regressor)
    reg.predict([{"x": 3.1}])
    reg_metrics = reg.metrics._server
    assert sample_value(reg_metrics, "fasttrack_prediction_value_count", model="sample-regression", version="1") == 1


def test_a_failing_model_counts_an_error(classifier: Predictor) -> None:
    class Broken:
        name = "broken"
        labels = None

        def predict(self, columns: Any, rows: int, *, probabilities: bool = False) -> Any:
            raise RuntimeError("boom")

    predictor = Predictor(classifier.model, classifier.source, runtime=Broken(), metrics=ServerMetrics())
    with pytest.raises(RuntimeError):
        predictor.predict([{"feature_1": 1.0, "feature_2": 1.0}])
    metrics = predictor.metrics._server
    assert sample_value(metrics, "fasttrack_predictions_total", model="sample", version="1", outcome="error") == 1


# ---------------------------------------------------------------------------------------------------- checks
def test_check_passes_on_real_models(classifier: Predictor, regressor: Predictor, mixed: Predictor) -> None:
    for predictor in (classifier, regressor, mixed):
        predictor.check()


def test_check_refuses_a_model_failing_its_input_example(classifier: Predictor) -> None:
    metadata = classifier.metadata.model_copy(update={"input_example": [{"feature_1": "x", "feature_2": 1.0}]})
    model = LoadedModel(classifier.model.path, classifier.model.pipeline, classifier.schema, metadata)
    with pytest.raises(ModelLoadError, match="fails on its input example"):
        Predictor(model, classifier.source).check()


def test_check_refuses_answers_that_make_no_sense(classifier: Predictor) -> None:
    metadata = classifier.metadata.model_copy(update={"labels": ["cat", "dog"]})
    model = LoadedModel(classifier.model.path, classifier.model.pipeline, classifier.schema, metadata)
    with pytest.raises(ModelLoadError, match=r"not among the (model.s )?labels"):
        Predictor(model, classifier.source).check()


def test_describe(mixed: Predictor) -> None:
    described = mixed.describe()
    assert described["name"] == "mixed"
    assert described["version"] == "1"
    assert described["task"] == "classification"
    assert described["labels"] == ["no", "yes"]
    assert described["run_id"]
    features = {f["name"]: f for f in described["features"]}
    assert features["amount"]["nullable"] is True
    assert features["amount"]["min"] < features["amount"]["max"]
    assert sorted(features["colour"]["categories"]) == ["blue", "green", "red"]
    assert features["member"]["kind"] == "boolean"
