"""Publishing a trained model into a real embedded store: the ONNX export and the checks that run the model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fasttrack.config import Settings, get_settings
from fasttrack.errors import SchemaValidationError
from fasttrack.export import onnx as export_onnx
from fasttrack.features.frames import prepare_features
from fasttrack.registry.layout import TAG_ONNX, TAG_ONNX_REASON
from fasttrack.registry.model_folder import ONNX_FILE, ModelMetadata, load_model_folder
from fasttrack.registry.resolve import ResolvedModel, resolve_model
from fasttrack.registry.runs import TrackedRun
from fasttrack.registry.store import client
from fasttrack.runtime.model import Model
from fasttrack.runtime.select import open_runtime
from fasttrack.training import publish
from fasttrack.training.train import TrainResult
from unit.registry.conftest import fit, make_frame


@pytest.fixture(scope="module")
def good_result() -> TrainResult:
    """A small linear model on two numeric features and a colour that passes the gate."""
    return fit(make_frame())


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings whose embedded store lives in ``tmp_path`` (MLflow's own variables cleared)."""
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "FASTTRACK_TRACKING_URI", "FASTTRACK_MODEL"):
        monkeypatch.delenv(var, raising=False)
    return get_settings(home=tmp_path / "home")


def published(result: TrainResult, settings: Settings) -> TrackedRun:
    return publish.publish(result, settings=settings, source="memory://toy.csv", fingerprint="f" * 64)


def test_registration_stores_the_checked_onnx_model(good_result: TrainResult, settings: Settings) -> None:
    run = published(good_result, settings)
    assert run.registered
    loaded = load_model_folder(resolve_model("models:/toy/1", settings).path)
    assert loaded.onnx_path is not None and loaded.onnx_path.name == ONNX_FILE
    info = loaded.metadata.onnx
    assert info is not None
    assert (info.status, info.mismatches, info.rows_checked) == ("ok", 0, good_result.test_rows)
    assert {"onnxruntime", "skl2onnx"} <= set(info.libraries)
    assert client(settings).get_run(run.run_id).data.tags[TAG_ONNX] == "ok"

    frame = pd.DataFrame({"a": [2.0, -2.0, None], "b": [-2.0, 2.0, 0.0], "colour": ["red", "purple", None]})
    served = Model(loaded, open_runtime(loaded), ResolvedModel("models:/toy/1", loaded.path, "toy", "1"))
    assert served.runtime.name == "onnx"
    assert (
        served.predict(frame).tolist() == good_result.pipeline.predict(prepare_features(frame, loaded.schema)).tolist()
    )


def test_registration_survives_a_failed_conversion(
    good_result: TrainResult, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> bytes:
        raise ValueError("simulated: cannot convert")

    monkeypatch.setattr(export_onnx, "_convert", broken)
    run = published(good_result, settings)
    assert run.registered  # served by scikit-learn
    loaded = load_model_folder(resolve_model("models:/toy/1", settings).path)
    assert loaded.onnx_path is None and open_runtime(loaded).name == "sklearn"
    assert loaded.metadata.onnx is not None and loaded.metadata.onnx.status == "failed"
    tags = client(settings).get_run(run.run_id).data.tags
    assert tags[TAG_ONNX] == "failed"
    assert tags[TAG_ONNX_REASON] == "ValueError: simulated: cannot convert"


def test_the_stored_copy_predicts_its_input_example(good_result: TrainResult, settings: Settings) -> None:
    published(good_result, settings)
    folder = resolve_model("models:/toy/1", settings).path
    publish.predicts_input_example(folder, load_model_folder(folder).metadata)  # passes on the registered model

    # An input example its own schema refuses fails the check, so such a model is never registered.
    meta = load_model_folder(folder).metadata
    bad: ModelMetadata = meta.model_copy(update={"input_example": [{"a": "not a number", "b": 1.0, "colour": "red"}]})
    with pytest.raises(SchemaValidationError):
        publish.predicts_input_example(folder, bad)
