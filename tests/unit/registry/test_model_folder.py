"""The model folder: written as an MLflow model with FastTrack's files, loaded back and checked."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fasttrack.errors import ModelLoadError
from fasttrack.registry.model_folder import (
    DataLineage,
    library_versions,
    load_model_folder,
    metadata_for,
    read_metadata,
    save_model_folder,
)
from fasttrack.runtime.model import Model
from fasttrack.runtime.select import open_runtime
from fasttrack.training.train import TrainResult


def save_folder(result: TrainResult, path: Path, **metadata_overrides: object) -> Path:
    """Save ``result`` the way the registry does, without a tracking store."""
    lineage = DataLineage(source="memory://toy.csv", fingerprint="abc", rows=300, columns=4)
    metadata = metadata_for(result, name="toy", data=lineage).model_copy(update=metadata_overrides)
    return save_model_folder(result, path, metadata)


def test_folder_round_trip_predicts_original_labels(good_result: TrainResult, tmp_path: Path) -> None:
    folder = save_folder(good_result, tmp_path / "model")
    loaded = load_model_folder(folder)
    frame = pd.DataFrame({"a": [2.0, -2.0], "b": [-2.0, 2.0], "colour": ["red", "purple"]})
    model = Model(loaded, open_runtime(loaded, "sklearn"))
    assert model.predict(frame).tolist() == ["yes", "no"]
    assert model.labels == ["no", "yes"]
    assert model.predict_proba(frame)[0, 1] > 0.9
    assert loaded.schema == good_result.schema
    assert read_metadata(folder).labels == ["no", "yes"]
    # The calibration measured at training travels with the model, for the server to judge.
    assert good_result.evaluation.calibration is not None
    assert read_metadata(folder).calibration == good_result.evaluation.calibration


def test_folder_is_a_standard_mlflow_model(good_result: TrainResult, tmp_path: Path) -> None:
    import mlflow.pyfunc

    folder = save_folder(good_result, tmp_path / "model")
    pyfunc = mlflow.pyfunc.load_model(str(folder))
    frame = pd.DataFrame({"a": [2.0], "b": [-2.0], "colour": ["red"]})
    assert list(pyfunc.predict(frame)) == ["yes"]


def test_scikit_learn_version_mismatch_is_refused(good_result: TrainResult, tmp_path: Path) -> None:
    libraries = {**library_versions(), "scikit-learn": "0.24.2"}
    folder = save_folder(good_result, tmp_path / "model", libraries=libraries)
    with pytest.raises(ModelLoadError, match=r"scikit-learn 0\.24\.2"):
        load_model_folder(folder)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("MLmodel", "MLmodel is missing"),
        ("extra_files/fasttrack.json", "fasttrack.json is missing"),
        ("extra_files/schema.json", "schema.json is missing"),
        ("model.pkl", "cannot load the model"),
    ],
)
def test_incomplete_folder_is_refused_with_the_reason(
    good_result: TrainResult, tmp_path: Path, damage: str, message: str
) -> None:
    folder = save_folder(good_result, tmp_path / "model")
    (folder / damage).unlink()
    with pytest.raises(ModelLoadError, match=message):
        load_model_folder(folder)


def test_corrupt_metadata_is_refused(good_result: TrainResult, tmp_path: Path) -> None:
    folder = save_folder(good_result, tmp_path / "model")
    (folder / "extra_files" / "fasttrack.json").write_text(json.dumps({"name": 3}), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="unreadable model metadata"):
        load_model_folder(folder)


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="model folder not found"):
        load_model_folder(tmp_path / "nothing")
