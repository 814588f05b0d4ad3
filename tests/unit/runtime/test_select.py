"""The one place an engine is chosen: what auto, onnx and sklearn give, and how a missing graph is refused."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fasttrack.config import Settings, get_settings
from fasttrack.errors import ConfigError, ModelLoadError
from fasttrack.features.frames import prepare_features
from fasttrack.registry.model_folder import LoadedModel
from fasttrack.runtime.onnx import OnnxRuntime
from fasttrack.runtime.select import batch_threads, open_runtime
from fasttrack.runtime.sklearn import SklearnRuntime
from fasttrack.serving.predictor import Predictor


def records_for(predictor: Predictor) -> list[dict[str, object]]:
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


def test_the_sklearn_frame_is_the_one_the_pipeline_was_fitted_on(mixed: Predictor) -> None:
    records = [{"amount": 30.0, "colour": "red", "member": True}, {"colour": "blue", "member": False}]
    runtime = open_runtime(mixed.model, "sklearn")
    assert isinstance(runtime, SklearnRuntime)
    frame = runtime.frame(mixed.validate(records).columns, 2)
    expected = prepare_features(pd.DataFrame(records), mixed.schema)
    pd.testing.assert_frame_equal(frame, expected)
    assert frame["colour"].dtype == object  # never pandas' str dtype: skl2onnx and the encoders expect objects


@pytest.mark.parametrize("name", ["classifier", "regressor", "mixed"])
def test_onnx_agrees_with_sklearn(name: str, request: pytest.FixtureRequest) -> None:
    predictor: Predictor = request.getfixturevalue(name)
    sklearn = open_runtime(predictor.model, "sklearn")
    onnx = open_runtime(predictor.model, "onnx")
    assert isinstance(sklearn, SklearnRuntime) and isinstance(onnx, OnnxRuntime)
    assert onnx.labels == sklearn.labels  # probability columns keyed by the same labels, in the same order
    model_input = predictor.validate(records_for(predictor))
    classifier = predictor.is_classifier
    ours = onnx.predict(model_input.columns, model_input.rows, probabilities=classifier)
    theirs = sklearn.predict(model_input.columns, model_input.rows, probabilities=classifier)
    if classifier:
        assert ours.values.tolist() == theirs.values.tolist()
        assert all(type(a) is type(b) for a, b in zip(ours.values.tolist(), theirs.values.tolist(), strict=True))
        assert ours.probabilities is not None and theirs.probabilities is not None
        np.testing.assert_allclose(ours.probabilities, theirs.probabilities, atol=1e-5)
        assert ours.codes is not None and [onnx.labels[c] for c in ours.codes] == ours.values.tolist()  # type: ignore[index]
    else:
        np.testing.assert_allclose(ours.values, theirs.values, rtol=1e-4)
        assert ours.probabilities is None and theirs.probabilities is None


def test_auto_picks_onnx_when_the_export_is_ok(classifier: Predictor) -> None:
    assert classifier.model.onnx_path is not None
    assert isinstance(open_runtime(classifier.model), OnnxRuntime)
    assert isinstance(open_runtime(classifier.model, "auto"), OnnxRuntime)


def test_the_server_runs_one_slice_at_a_time_and_batch_scoring_one_per_core(classifier: Predictor) -> None:
    served = open_runtime(classifier.model)
    batch = open_runtime(classifier.model, threads=batch_threads())
    assert isinstance(served, OnnxRuntime) and isinstance(batch, OnnxRuntime)
    assert served.threads == 1
    assert classifier.runtime.threads == 1  # type: ignore[attr-defined]
    assert batch.threads == batch_threads() == len(os.sched_getaffinity(0))


def test_the_predictor_uses_the_settings_runtime(classifier: Predictor) -> None:
    sklearn = Predictor(classifier.model, classifier.source, settings=Settings.model_construct(runtime="sklearn"))
    assert sklearn.runtime.name == "sklearn" and sklearn.describe()["backend"] == "sklearn"
    onnx = Predictor(classifier.model, classifier.source, settings=Settings.model_construct(runtime="onnx"))
    assert onnx.runtime.name == "onnx" and onnx.describe()["backend"] == "onnx"
    assert onnx.labels == sklearn.labels
    record = [{"feature_1": 5.3, "feature_2": 2.1}]
    ours = onnx.predict_input(onnx.validate(record), probabilities=True)
    theirs = sklearn.predict_input(sklearn.validate(record), probabilities=True)
    assert ours.values == theirs.values
    assert ours.probabilities is not None and ours.probabilities.dtype == np.float64
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


@pytest.mark.parametrize("status", [None, "disagrees"])
def test_no_usable_onnx_means_sklearn_or_a_clear_refusal(
    classifier: Predictor, tmp_path: Path, status: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    model = _without_onnx(classifier.model, tmp_path, status=status)
    assert model.onnx_path is None
    with caplog.at_level(logging.INFO, logger="fasttrack.runtime.select"):
        assert isinstance(open_runtime(model, "auto"), SklearnRuntime)
    assert "predicting with scikit-learn" in caplog.text
    assert isinstance(open_runtime(model, "sklearn"), SklearnRuntime)
    with pytest.raises(ModelLoadError, match="has no usable ONNX model"):
        open_runtime(model, "onnx")


def test_a_checked_graph_gone_missing_is_refused_not_replaced_by_sklearn(classifier: Predictor, tmp_path: Path) -> None:
    model = _without_onnx(classifier.model, tmp_path, status="ok")  # registered with a graph, the file deleted
    assert model.onnx_path is None
    with pytest.raises(ModelLoadError, match=r"refused: .*registered with a checked ONNX graph.*model.onnx is missing"):
        open_runtime(model, "auto")
    with pytest.raises(ModelLoadError, match="has no usable ONNX model"):
        open_runtime(model, "onnx")
    assert isinstance(open_runtime(model, "sklearn"), SklearnRuntime)  # the operator's explicit choice still works


def test_a_garbage_onnx_file_is_refused_under_auto_too(
    classifier: Predictor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 17: a garbage model.onnx was served by unpickling scikit-learn with only a warning."""
    folder = tmp_path / "model"
    shutil.copytree(classifier.model.path, folder)
    (folder / "extra_files" / "model.onnx").write_bytes(b"not a graph")
    broken = classifier.model
    model = LoadedModel(path=folder, pipeline=broken.pipeline, schema=broken.schema, metadata=broken.metadata)
    for engine in ("auto", "onnx"):
        with pytest.raises(ModelLoadError, match=r"refused: cannot load the ONNX model extra_files/model\.onnx"):
            open_runtime(model, engine)  # type: ignore[arg-type]
    assert "predicting with scikit-learn" not in caplog.text


def test_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.model_construct().runtime == "auto"
    with pytest.raises(ConfigError, match="FASTTRACK_RUNTIME"):
        get_settings(runtime="tensorrt")
    monkeypatch.setenv("FASTTRACK_ENGINE", "sklearn")  # the setting's former name is still read
    assert get_settings().runtime == "sklearn"
    monkeypatch.setenv("FASTTRACK_RUNTIME", "onnx")  # and the new one wins
    assert get_settings().runtime == "onnx"
    with pytest.raises(ConfigError, match="unknown engine"):
        open_runtime(None, "tensorrt")  # type: ignore[arg-type]
