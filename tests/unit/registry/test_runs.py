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
from fasttrack.registry import manifest, runs
from fasttrack.registry.layout import TAG_ONNX, TAG_ONNX_REASON
from fasttrack.registry.model_folder import ONNX_FILE, ModelMetadata, OnnxInfo, load_model_folder
from fasttrack.registry.resolve import resolve_model
from fasttrack.registry.store import client
from fasttrack.registry.versions import list_versions
from fasttrack.training.train import TrainResult, train

#: An export as the caller hands it over when conversion failed: recorded, no graph stored.
FAILED_EXPORT = runs.OnnxExport(info=OnnxInfo(status="failed", reason="exported elsewhere"), file=None)


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
    assert good_result.evaluation.calibration is not None
    assert recorded.metrics["calibration_error"] == pytest.approx(good_result.evaluation.calibration.error)
    artifacts = {a.path for a in mlflow_client.list_artifacts(run.run_id, "reports")}
    assert artifacts == {"reports/evaluation.json", "reports/holdout.parquet", "reports/train_rows.parquet"}
    assert recorded.params["split_salt"] == "fasttrack"


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
    run = log(good_result, settings, onnx=FAILED_EXPORT)
    metrics, params, tags = batches[0]
    assert (metrics, params) == (len(runs._metrics(good_result)), len(runs._params(good_result)))
    assert {"fasttrack.task", "fasttrack.gate", "fasttrack.data.fingerprint", TAG_ONNX, TAG_ONNX_REASON} <= tags

    recorded = client(settings).get_run(run.run_id).data
    assert recorded.params == {k: str(v) for k, v in runs._params(good_result).items()}
    assert recorded.metrics == pytest.approx(runs._metrics(good_result))
    assert recorded.tags[TAG_ONNX] == "failed"
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
    # skops, never a pickle; the manifest is written into the checked copy before the check loads it
    assert {"MLmodel", "model.skops", "extra_files", manifest.MANIFEST_FILE} <= set(files)
    assert "model.pkl" not in files
    stored = resolve_model("models:/toy/1", settings).path
    assert manifest.verify(stored)  # the registered version carries the manifest of what was checked
    assert manifest.read(stored) == manifest.digests(stored)

    def refuses(folder: Path, metadata: ModelMetadata) -> None:
        raise ModelLoadError("the check refused it")

    with pytest.raises(ModelLoadError, match="the check refused it"):
        log(good_result, settings, check=refuses)
    assert [v.version for v in list_versions(settings)] == ["1"]


def test_an_export_made_by_the_caller_is_stored(good_result: TrainResult, settings: Settings, tmp_path: Path) -> None:
    run = log(good_result, settings, onnx=FAILED_EXPORT)
    tags = client(settings).get_run(run.run_id).data.tags
    assert (tags[TAG_ONNX], tags[TAG_ONNX_REASON]) == ("failed", "exported elsewhere")
    loaded = load_model_folder(resolve_model("models:/toy/1", settings).path)
    assert loaded.onnx_path is None
    assert loaded.metadata.onnx == FAILED_EXPORT.info

    # The registry stores the graph it is given as it is: it never opens or runs it.
    graph = tmp_path / ONNX_FILE
    graph.write_bytes(b"the caller's graph")
    agreed = runs.OnnxExport(info=OnnxInfo(status="ok", rows_checked=60), file=graph)
    log(good_result, settings, onnx=agreed)
    stored = load_model_folder(resolve_model("models:/toy/2", settings).path)
    assert stored.onnx_path is not None and stored.onnx_path.read_bytes() == b"the caller's graph"
    assert stored.metadata.onnx == agreed.info


def test_without_an_export_no_graph_is_stored_or_recorded(good_result: TrainResult, settings: Settings) -> None:
    run = log(good_result, settings)
    assert run.registered  # by default the stored copy was only loaded back: nothing predicted it
    assert TAG_ONNX not in client(settings).get_run(run.run_id).data.tags
    loaded = load_model_folder(resolve_model("models:/toy/1", settings).path)
    assert loaded.metadata.onnx is None and loaded.onnx_path is None


def test_the_signature_comes_from_the_held_out_predictions(good_result: TrainResult, settings: Settings) -> None:
    from mlflow.models import get_model_info, infer_signature

    run = log(good_result, settings)
    signature = get_model_info(run.model_uri).signature
    assert signature is not None and signature.outputs is not None
    # The signature MLflow infers from the pipeline's own predictions of the input example.
    example = good_result.input_example
    assert signature == infer_signature(example, good_result.pipeline.predict(example))


def trained(model: str, **params: Any) -> TrainResult:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    frame["label"] = np.where(frame["a"] > frame["b"], "yes", "no")
    values = {"data": "memory://toy.csv", "target": "label", "model": model, "params": params, "cv_folds": 0}
    return train(frame, TrainConfig.model_validate(values), infer_schema(frame, "label", "auto"))


def test_only_xgboost_models_require_xgboost() -> None:
    linear = runs._pip_requirements(trained("linear").pipeline)
    assert [r.split("==")[0] for r in linear] == ["scikit-learn", "numpy", "pandas", "skops"]
    xgb = runs._pip_requirements(trained("xgboost", n_estimators=5, n_jobs=1).pipeline)
    assert [r.split("==")[0] for r in xgb] == ["scikit-learn", "numpy", "pandas", "skops", "xgboost-cpu"]


def test_runs_of_killed_processes_are_ended_as_killed_by_the_next_training(
    good_result: TrainResult, settings: Settings
) -> None:
    """``kill -9`` of ``train`` leaves its run RUNNING; the next training of the model ends it as KILLED, and only
    it: a run of a live process (this one) and a run that names no process stay as they are."""
    import subprocess
    import sys
    from dataclasses import replace

    from fasttrack.registry.layout import TAG_ABANDONED, TAG_OWNER
    from fasttrack.registry.liveness import Owner, this_process

    first = log(good_result, settings)
    mlflow_client = client(settings)
    assert Owner.decode(mlflow_client.get_run(first.run_id).data.tags[TAG_OWNER]) == this_process()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    me = this_process()
    assert me is not None
    owners = {"killed": replace(me, pid=child.pid, start="0").encode(), "alive": me.encode(), "unknown": None}
    started = {
        label: mlflow_client.create_run(first.experiment_id, tags={TAG_OWNER: owner} if owner else {}).info.run_id
        for label, owner in owners.items()
    }
    log(good_result, settings)
    status = {label: mlflow_client.get_run(run_id).info.status for label, run_id in started.items()}
    assert status == {"killed": "KILLED", "alive": "RUNNING", "unknown": "RUNNING"}
    killed = mlflow_client.get_run(started["killed"])
    reason = f"its process (pid {child.pid} on {me.host}) ended without finishing the run"
    assert killed.data.tags[TAG_ABANDONED] == reason
    assert killed.info.end_time is not None
    assert mlflow_client.get_run(first.run_id).info.status == "FINISHED"
