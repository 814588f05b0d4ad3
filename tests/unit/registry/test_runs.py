"""Recording a training run: params, tags and metrics in one batch, artifacts, and registration as the last step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from fasttrack.config import Settings, TrainConfig
from fasttrack.data.describe import infer_schema
from fasttrack.errors import ModelLoadError
from fasttrack.export import check as fx
from fasttrack.export import onnx as export_onnx
from fasttrack.features.frames import prepare_features
from fasttrack.registry import runs
from fasttrack.registry.model_folder import ONNX_FILE, ModelMetadata, OnnxInfo, load_model_folder
from fasttrack.registry.resolve import resolve_model
from fasttrack.registry.store import client
from fasttrack.registry.versions import list_versions
from fasttrack.runtime.model import Model, ModelIdentity
from fasttrack.runtime.select import open_runtime
from fasttrack.training.train import TrainResult, train


def log(result: TrainResult, settings: Settings, **kwargs: Any) -> runs.TrackedRun:
    return runs.log_training(result, settings=settings, source="memory://toy.csv", fingerprint="f" * 64, **kwargs)


def test_first_version_is_registered_as_champion(good_result: TrainResult, settings: Settings) -> None:
    run = log(good_result, settings)
    assert run.registered
    assert (run.version, run.aliases) == ("1", ["champion"])
    assert (settings.home / "mlflow.db").is_file()
    assert (settings.home / "artifacts").is_dir()

    mlflow_client = client(settings)
    recorded = mlflow_client.get_run(run.run_id).data
    assert recorded.tags["fasttrack.data.fingerprint"] == "f" * 64
    assert recorded.tags["fasttrack.gate"] == "passed"
    assert recorded.params["model"] == "linear"
    assert recorded.metrics["test_accuracy"] == pytest.approx(good_result.evaluation.metrics["accuracy"])
    assert "baseline_accuracy" in recorded.metrics
    artifacts = {a.path for a in mlflow_client.list_artifacts(run.run_id, "reports")}
    assert artifacts == {"reports/evaluation.json", "reports/holdout.parquet"}


def test_params_tags_and_metrics_go_in_one_batch(
    good_result: TrainResult, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[tuple[int, int, set[str]]] = []
    log_batch = MlflowClient.log_batch

    def recording(
        self: MlflowClient, run_id: str, metrics: Any = (), params: Any = (), tags: Any = (), **kw: Any
    ) -> Any:
        batches.append((len(metrics), len(params), {tag.key for tag in tags}))
        return log_batch(self, run_id, metrics=metrics, params=params, tags=tags, **kw)

    monkeypatch.setattr(MlflowClient, "log_batch", recording)
    run = log(good_result, settings)
    metrics, params, tags = batches[0]
    assert (metrics, params) == (len(runs._metrics(good_result)), len(runs._params(good_result)))
    assert {"fasttrack.task", "fasttrack.gate", "fasttrack.data.fingerprint", fx.TAG_ONNX} <= tags

    recorded = client(settings).get_run(run.run_id).data
    assert recorded.params == {k: str(v) for k, v in runs._params(good_result).items()}
    assert recorded.metrics == pytest.approx(runs._metrics(good_result))
    assert recorded.tags[fx.TAG_ONNX] == "ok"
    assert recorded.tags["fasttrack.data.source"] == "memory://toy.csv"
    assert recorded.tags["fasttrack.version.scikit-learn"]


def test_a_model_failing_the_gate_is_logged_but_not_registered(failing_result: TrainResult, settings: Settings) -> None:
    assert not failing_result.evaluation.gate.passed
    run = log(failing_result, settings)
    assert not run.registered
    assert client(settings).get_run(run.run_id).data.tags["fasttrack.gate"] == "failed"
    assert list_versions(settings) == []


def test_a_model_that_cannot_be_loaded_back_is_not_registered(
    good_result: TrainResult, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: object) -> None:
        raise ModelLoadError("simulated: the stored copy is unreadable")

    monkeypatch.setattr(runs, "load_model_folder", broken)  # what the default check loads the stored copy with
    with pytest.raises(ModelLoadError, match="simulated"):
        log(good_result, settings)
    assert MlflowClient(tracking_uri=settings.resolved_tracking_uri()).search_registered_models() == []


def test_the_check_runs_on_the_stored_copy_before_registration(good_result: TrainResult, settings: Settings) -> None:
    checked: list[tuple[Path, list[str]]] = []

    def check(folder: Path, metadata: ModelMetadata) -> None:
        checked.append((folder, sorted(p.name for p in folder.iterdir())))
        assert client(settings).search_registered_models() == []  # not registered yet
        load_model_folder(folder)

    run = log(good_result, settings, check=check)
    assert run.version == "1"
    [(folder, files)] = checked
    assert not folder.exists()  # a temporary download, removed after the check
    assert {"MLmodel", "model.pkl", "extra_files"} <= set(files)

    def refuses(folder: Path, metadata: ModelMetadata) -> None:
        raise ModelLoadError("the check refused it")

    with pytest.raises(ModelLoadError, match="the check refused it"):
        log(good_result, settings, check=refuses)
    assert [v.version for v in list_versions(settings)] == ["1"]


def test_an_export_made_by_the_caller_is_stored(good_result: TrainResult, settings: Settings) -> None:
    exported = runs.OnnxExport(info=OnnxInfo(status="failed", reason="exported elsewhere"), file=None)
    run = log(good_result, settings, onnx=exported)
    tags = client(settings).get_run(run.run_id).data.tags
    assert (tags[fx.TAG_ONNX], tags[fx.TAG_ONNX_REASON]) == ("failed", "exported elsewhere")
    loaded = load_model_folder(resolve_model("models:/toy/1", settings).path)
    assert loaded.onnx_path is None
    assert loaded.metadata.onnx == exported.info


def test_registration_stores_the_onnx_model(good_result: TrainResult, settings: Settings) -> None:
    run = log(good_result, settings)
    assert run.registered
    loaded = load_model_folder(resolve_model("models:/toy/1", settings).path)
    assert loaded.onnx_path is not None and loaded.onnx_path.name == ONNX_FILE
    info = loaded.metadata.onnx
    assert info is not None
    assert (info.status, info.mismatches, info.rows_checked) == ("ok", 0, good_result.test_rows)
    assert {"onnxruntime", "skl2onnx"} <= set(info.libraries)
    assert client(settings).get_run(run.run_id).data.tags[fx.TAG_ONNX] == "ok"

    frame = pd.DataFrame({"a": [2.0, -2.0, None], "b": [-2.0, 2.0, 0.0], "colour": ["red", "purple", None]})
    served = Model(loaded, open_runtime(loaded), ModelIdentity("models:/toy/1", "toy", "1"))
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
    run = log(good_result, settings)
    assert run.registered  # served by scikit-learn
    loaded = load_model_folder(resolve_model("models:/toy/1", settings).path)
    assert loaded.onnx_path is None and open_runtime(loaded).name == "sklearn"
    assert loaded.metadata.onnx is not None and loaded.metadata.onnx.status == "failed"
    tags = client(settings).get_run(run.run_id).data.tags
    assert tags[fx.TAG_ONNX] == "failed"
    assert tags[fx.TAG_ONNX_REASON] == "ValueError: simulated: cannot convert"


def trained(model: str, **params: Any) -> TrainResult:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    frame["label"] = np.where(frame["a"] > frame["b"], "yes", "no")
    values = {"data": "memory://toy.csv", "target": "label", "model": model, "params": params, "cv_folds": 0}
    return train(frame, TrainConfig.model_validate(values), infer_schema(frame, "label", "auto"))


def test_only_xgboost_models_require_xgboost() -> None:
    linear = runs._pip_requirements(trained("linear").pipeline)
    assert [r.split("==")[0] for r in linear] == ["scikit-learn", "numpy", "pandas", "cloudpickle"]
    xgb = runs._pip_requirements(trained("xgboost", n_estimators=5, n_jobs=1).pipeline)
    assert [r.split("==")[0] for r in xgb] == ["scikit-learn", "numpy", "pandas", "cloudpickle", "xgboost-cpu"]
