"""The backend seam: validated columns in, predictions out; the sklearn frame is exactly prepare_features'."""

from __future__ import annotations

import pandas as pd

from fasttrack.data.schema import prepare_features
from fasttrack.serving.backends import SklearnBackend, select_backend
from fasttrack.serving.predictor import Predictor


def test_the_sklearn_frame_is_the_one_the_pipeline_was_fitted_on(mixed: Predictor) -> None:
    records = [{"amount": 30.0, "colour": "red", "member": True}, {"colour": "blue", "member": False}]
    backend = select_backend(mixed.model)
    assert isinstance(backend, SklearnBackend)
    frame = backend.frame(mixed.validate(records).columns)
    expected = prepare_features(pd.DataFrame(records), mixed.schema)
    pd.testing.assert_frame_equal(frame, expected)
    assert frame["colour"].dtype == object  # never pandas' str dtype: skl2onnx and the encoders expect objects


def test_predict_with_and_without_probabilities(classifier: Predictor, regressor: Predictor) -> None:
    columns = classifier.validate([{"feature_1": 5.3, "feature_2": 2.1}]).columns
    values, proba = classifier.backend.predict(columns)
    assert values.tolist() == ["positive"] and proba is None
    values, proba = classifier.backend.predict(columns, probabilities=True)
    assert proba is not None and proba.shape == (1, 2)
    assert classifier.backend.classes == ["negative", "positive"]
    assert regressor.backend.classes is None
    _, none = regressor.backend.predict(regressor.validate([{"x": 1.0}]).columns, probabilities=True)
    assert none is None
