"""The backend seam: validated columns in, predictions out; the sklearn frame is exactly prepare_features'."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fasttrack.config import Settings, get_settings
from fasttrack.errors import ConfigError, ModelLoadError
from fasttrack.features.frames import prepare_features
from fasttrack.registry.model_folder import LoadedModel
from fasttrack.serving.backends import OnnxBackend, SklearnBackend, select_backend
from fasttrack.serving.predictor import Predictor


def test_the_sklearn_frame_is_the_one_the_pipeline_was_fitted_on(mixed: Predictor) -> None:
    records = [{"amount": 30.0, "colour": "red", "member": True}, {"colour": "blue", "member": False}]
    backend = select_backend(mixed.model, "sklearn")
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


# ------------------------------------------------------------------------------------------------- ONNX Runtime
def _records(predictor: Predictor) -> list[dict[str, object]]:
    if predictor.schema.feature_names == ["x"]:
        return [{"x": x} for x in (-7.25, 0.0, 1.5, 3.1, 10.0)]
    if "colour" in predictor.schema.feature_names:
        return [
            {"amount": 30.0, "colour": "red", "member": True},
            {"amount": 75.5, "colour": "blue", "member": False},
            {"colour": "purple", "member": False},  # unseen category, missing amount
            {"amount": 50.0, "colour": "green", "member": True},
        ]
    return [{"feature_1": a, "feature_2": b} for a, b in ((5.3, 2.1), (1.0, 6.0), (3.3, 3.0), (-3.0, 9.5))]


@pytest.mark.parametrize("name", ["classifier", "regressor", "mixed"])
def test_onnx_agrees_with_sklearn(name: str, request: pytest.FixtureRequest) -> None:
    predictor: Predictor = request.getfixturevalue(name)
    sklearn = select_backend(predictor.model, "sklearn")
    onnx = select_backend(predictor.model, "onnx")
    assert isinstance(sklearn, SklearnBackend) and isinstance(onnx, OnnxBackend)
    assert onnx.classes == sklearn.classes  # probability columns keyed by the same labels, in the same order
    columns = predictor.validate(_records(predictor)).columns
    classifier = predictor.is_classifier
    ours, our_proba = onnx.predict(columns, probabilities=classifier)
    theirs, their_proba = sklearn.predict(columns, probabilities=classifier)
    if classifier:
        assert ours.tolist() == theirs.tolist()
        assert all(type(a) is type(b) for a, b in zip(ours.tolist(), theirs.tolist(), strict=True))
        assert our_proba is not None and their_proba is not None and our_proba.dtype == np.float64
        np.testing.assert_allclose(our_proba, their_proba, atol=1e-5)
    else:
        assert all(type(v) is float for v in ours.tolist())  # float32 widened: plain Python floats
        np.testing.assert_allclose(ours, theirs, rtol=1e-4)


def test_auto_picks_onnx_when_the_export_is_ok(classifier: Predictor) -> None:
    assert classifier.model.onnx_path is not None
    assert isinstance(select_backend(classifier.model), OnnxBackend)
    assert isinstance(select_backend(classifier.model, "auto"), OnnxBackend)


def test_the_predictor_uses_the_settings_engine(classifier: Predictor) -> None:
    sklearn = Predictor(classifier.model, classifier.source, settings=Settings.model_construct(engine="sklearn"))
    assert sklearn.backend.name == "sklearn" and sklearn.describe()["backend"] == "sklearn"
    onnx = Predictor(classifier.model, classifier.source, settings=Settings.model_construct(engine="onnx"))
    assert onnx.backend.name == "onnx" and onnx.describe()["backend"] == "onnx"
    assert onnx.labels == sklearn.labels
    record = [{"feature_1": 5.3, "feature_2": 2.1}]
    ours = onnx.predict_input(onnx.validate(record), probabilities=True)
    theirs = sklearn.predict_input(sklearn.validate(record), probabilities=True)
    assert ours.values == theirs.values
    assert ours.probability_records()[0].keys() == theirs.probability_records()[0].keys()
    onnx.check()


def _without_onnx(model: LoadedModel, tmp_path: Path, *, status: str | None) -> LoadedModel:
    """A copy of ``model`` whose folder has no model.onnx (status None: no export recorded at all)."""
    folder = tmp_path / "model"
    shutil.copytree(model.path, folder)
    onnx = model.metadata.onnx
    if status is None:
        metadata = model.metadata.model_copy(update={"onnx": None})
    else:
        assert onnx is not None
        metadata = model.metadata.model_copy(update={"onnx": onnx.model_copy(update={"status": status})})
    if status in (None, "ok"):
        (folder / "extra_files" / "model.onnx").unlink()
    return LoadedModel(path=folder, pipeline=model.pipeline, schema=model.schema, metadata=metadata)


@pytest.mark.parametrize("status", [None, "ok", "disagrees"])
def test_no_usable_onnx_means_sklearn_or_a_clear_refusal(
    classifier: Predictor, tmp_path: Path, status: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    model = _without_onnx(classifier.model, tmp_path, status=status)
    assert model.onnx_path is None
    with caplog.at_level(logging.INFO, logger="fasttrack.serving.backends"):
        assert isinstance(select_backend(model, "auto"), SklearnBackend)
    assert "serving with scikit-learn" in caplog.text
    assert isinstance(select_backend(model, "sklearn"), SklearnBackend)
    with pytest.raises(ModelLoadError, match="FASTTRACK_ENGINE=onnx but the model has no usable ONNX model"):
        select_backend(model, "onnx")


def test_an_unreadable_onnx_file_falls_back_under_auto_only(classifier: Predictor, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(classifier.model.path, folder)
    (folder / "extra_files" / "model.onnx").write_bytes(b"not a graph")
    broken = classifier.model
    model = LoadedModel(path=folder, pipeline=broken.pipeline, schema=broken.schema, metadata=broken.metadata)
    assert isinstance(select_backend(model, "auto"), SklearnBackend)
    model = LoadedModel(path=folder, pipeline=broken.pipeline, schema=broken.schema, metadata=broken.metadata)
    with pytest.raises(ModelLoadError, match="cannot load the ONNX model"):
        select_backend(model, "onnx")


def test_engine_setting() -> None:
    assert Settings.model_construct().engine == "auto"
    with pytest.raises(ConfigError, match="FASTTRACK_ENGINE"):
        get_settings(engine="tensorrt")
