"""Tracking and registry against a real embedded MLflow store (SQLite in a temporary folder)."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from fasttrack.config import Settings
from fasttrack.errors import ModelLoadError, ModelNotFoundError
from fasttrack.registry import tracking
from fasttrack.registry.model_folder import load_model_folder
from fasttrack.training.train import TrainResult


def log(result: TrainResult, settings: Settings, **kwargs: object) -> tracking.TrackedRun:
    return tracking.log_training(result, settings=settings, source="memory://toy.csv", fingerprint="f" * 64, **kwargs)


def test_first_version_is_registered_as_champion(good_result: TrainResult, settings: Settings) -> None:
    run = log(good_result, settings)
    assert run.registered
    assert (run.version, run.aliases) == ("1", ["champion"])
    assert (settings.home / "mlflow.db").is_file()
    assert (settings.home / "artifacts").is_dir()

    client = tracking.client(settings)
    recorded = client.get_run(run.run_id).data
    assert recorded.tags["fasttrack.data.fingerprint"] == "f" * 64
    assert recorded.tags["fasttrack.gate"] == "passed"
    assert recorded.params["model"] == "linear"
    assert recorded.metrics["test_accuracy"] == pytest.approx(good_result.evaluation.metrics["accuracy"])
    assert "baseline_accuracy" in recorded.metrics
    artifacts = {a.path for a in client.list_artifacts(run.run_id, "reports")}
    assert artifacts == {"reports/evaluation.json", "reports/holdout.parquet"}


def test_later_versions_keep_the_champion_until_promoted(good_result: TrainResult, settings: Settings) -> None:
    log(good_result, settings)
    second = log(good_result, settings)
    assert (second.version, second.aliases) == ("2", [])
    rows = tracking.list_versions(settings, "toy")
    assert [(r.version, r.aliases) for r in rows] == [("2", []), ("1", ["champion"])]
    assert rows[0].primary_metric == "roc_auc"
    assert rows[0].primary_metric_value == pytest.approx(good_result.evaluation.metrics["roc_auc"])

    tracking.promote(settings, "toy", "2")
    assert [(r.version, r.aliases) for r in tracking.list_versions(settings)] == [("2", ["champion"]), ("1", [])]


def test_promoting_a_missing_version_says_so(good_result: TrainResult, settings: Settings) -> None:
    log(good_result, settings)
    with pytest.raises(ModelNotFoundError, match="promoting toy version 7"):
        tracking.promote(settings, "toy", "7")


def test_a_model_failing_the_gate_is_logged_but_not_registered(failing_result: TrainResult, settings: Settings) -> None:
    assert not failing_result.evaluation.gate.passed
    run = log(failing_result, settings)
    assert not run.registered
    client = tracking.client(settings)
    assert client.get_run(run.run_id).data.tags["fasttrack.gate"] == "failed"
    assert tracking.list_versions(settings) == []


def test_a_model_that_cannot_be_loaded_back_is_not_registered(
    good_result: TrainResult, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: object) -> None:
        raise ModelLoadError("simulated: the stored copy is unreadable")

    monkeypatch.setattr(tracking, "load_model_folder", broken)
    with pytest.raises(ModelLoadError, match="simulated"):
        log(good_result, settings)
    assert MlflowClient(tracking_uri=settings.resolved_tracking_uri()).search_registered_models() == []


@pytest.mark.parametrize(
    ("uri", "version"),
    [("models:/toy@champion", "1"), ("models:/toy/2", "2"), ("models:/toy", "2"), ("models:/toy@challenger", "2")],
)
def test_resolve_model_uris(good_result: TrainResult, settings: Settings, uri: str, version: str) -> None:
    log(good_result, settings)
    log(good_result, settings)
    tracking.promote(settings, "toy", "2", alias="challenger")
    resolved = tracking.resolve_model(uri, settings)
    assert (resolved.name, resolved.version) == ("toy", version)
    loaded = load_model_folder(resolved.path)
    assert loaded.metadata.labels == ["no", "yes"] and loaded.onnx_path is not None
    assert tracking.resolve_model(uri, settings).path == resolved.path  # cached, not downloaded again


def test_champion_falls_back_to_latest_when_unset(good_result: TrainResult, settings: Settings) -> None:
    log(good_result, settings)
    tracking.client(settings).delete_registered_model_alias("toy", "champion")
    assert tracking.resolve_model("models:/toy@champion", settings).version == "1"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("models:/nothing@champion", "no registered model 'nothing'"),
        ("models:/nothing/3", "resolving models:/nothing/3"),
        ("not/a/folder", "neither a folder nor a model URI"),
        ("models:/a/b/c", "cannot parse model URI"),
    ],
)
def test_unknown_models_are_reported(settings: Settings, uri: str, message: str) -> None:
    with pytest.raises(ModelNotFoundError, match=message):
        tracking.resolve_model(uri, settings)


def test_tracking_uri_environment_is_honoured(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/elsewhere.db")
    assert settings.resolved_tracking_uri() == "sqlite:////tmp/elsewhere.db"


def test_a_cached_version_resolves_without_the_registry(
    good_result: TrainResult, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    log(good_result, settings)
    first = tracking.resolve_model("models:/toy/1", settings)

    def offline(settings: Settings) -> MlflowClient:
        raise AssertionError("the registry was asked")

    monkeypatch.setattr(tracking, "client", offline)
    again = tracking.resolve_model("models:/toy/1", settings)  # an explicit version is immutable: the cache answers
    assert (again.path, again.name, again.version, again.alias) == (first.path, "toy", "1", None)
    with pytest.raises(AssertionError, match="registry was asked"):
        tracking.resolve_model("models:/toy@champion", settings)  # an alias may have moved: always asked
