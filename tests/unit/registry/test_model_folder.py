"""The model folder: written as an MLflow model with FastTrack's files, loaded back and checked."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fasttrack.config import Settings
from fasttrack.errors import ModelLoadError
from fasttrack.registry import manifest
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
        ("model.skops", r"model\.skops.* missing"),
    ],
)
@pytest.mark.parametrize("with_manifest", [True, False])
def test_incomplete_folder_is_refused_with_the_reason(
    good_result: TrainResult, tmp_path: Path, damage: str, message: str, with_manifest: bool
) -> None:
    folder = save_folder(good_result, tmp_path / "model")
    if not with_manifest:  # a folder saved before manifests: the loader's own checks find what is missing
        (folder / manifest.MANIFEST_FILE).unlink()
    (folder / damage).unlink()
    with pytest.raises(ModelLoadError, match=message):
        _ = load_model_folder(folder).pipeline


def test_corrupt_metadata_is_refused(good_result: TrainResult, tmp_path: Path) -> None:
    folder = save_folder(good_result, tmp_path / "model")
    (folder / "extra_files" / "fasttrack.json").write_text(json.dumps({"name": 3}), encoding="utf-8")
    with pytest.raises(manifest.IntegrityError, match=r"extra_files/fasttrack\.json changed since registration"):
        load_model_folder(folder)
    manifest.write(folder)  # as if it had been registered so: the metadata's own check refuses it
    with pytest.raises(ModelLoadError, match="unreadable model metadata"):
        load_model_folder(folder)


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="model folder not found"):
        load_model_folder(tmp_path / "nothing")


def test_the_pipeline_is_saved_with_skops_and_the_folder_with_its_manifest(
    good_result: TrainResult, tmp_path: Path
) -> None:
    folder = save_folder(good_result, tmp_path / "model")
    assert (folder / "model.skops").is_file() and not (folder / "model.pkl").exists()
    assert manifest.verify(folder)


def test_trusted_types_written_into_the_folder_are_ignored(
    good_result: TrainResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever can write the artifact can write MLmodel's skops_trusted_types: the loader reads only settings."""
    import skops.io
    import yaml

    folder = save_folder(good_result, tmp_path / "model")
    skops.io.dump({"hostile": Hostile()}, folder / "model.skops")
    spec = yaml.safe_load((folder / "MLmodel").read_text())
    spec["flavors"]["sklearn"]["skops_trusted_types"] = [f"{__name__}.Hostile"]
    (folder / "MLmodel").write_text(yaml.safe_dump(spec))
    manifest.write(folder)  # even re-signed by the manifest, the folder's own list is not trusted
    with pytest.raises(ModelLoadError, match=rf"does not trust: {__name__}\.Hostile"):
        _ = load_model_folder(folder, Settings()).pipeline
    monkeypatch.setenv("FASTTRACK_TRUSTED_TYPES", f'["{__name__}.Hostile"]')  # the operator's choice
    assert load_model_folder(folder).pipeline["hostile"].value == 1


class Hostile:
    def __init__(self) -> None:
        self.value = 1


def pickled_folder(result: TrainResult, path: Path) -> Path:
    """A model folder as FastTrack saved them before skops: a cloudpickled pipeline, no manifest."""
    import mlflow.sklearn

    from fasttrack.registry.model_folder import write_extra_files

    lineage = DataLineage(source="memory://toy.csv", fingerprint="abc", rows=300, columns=4)
    extras = write_extra_files(path.parent / "extras", metadata_for(result, name="toy", data=lineage), result.schema)
    mlflow.sklearn.save_model(
        result.pipeline,
        str(path),
        extra_files=[str(p) for p in extras],
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
    )
    return path


def test_an_older_pickled_folder_loads_only_when_pickle_is_allowed(
    good_result: TrainResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", raising=False)
    folder = pickled_folder(good_result, tmp_path / "model")
    loaded = load_model_folder(folder, Settings())  # metadata and schema load; nothing is unpickled yet
    assert "has no fasttrack-manifest.json" in caplog.text
    with pytest.raises(ModelLoadError, match=r"model\.pkl is a pickle .* refused because FASTTRACK_ALLOW_PICKLE"):
        _ = loaded.pipeline
    with pytest.raises(ModelLoadError, match="is a pickle"):
        open_runtime(loaded, "sklearn")
    allowed = load_model_folder(folder, Settings(allow_pickle=True))
    assert allowed.pipeline is not None
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")  # MLflow's switch is honoured
    with pytest.raises(ModelLoadError, match="MLFLOW_ALLOW_PICKLE_DESERIALIZATION is false"):
        _ = load_model_folder(folder, Settings(allow_pickle=True)).pipeline
