"""The app: one error handler (three shapes), the access log switch, and start-up that fails before binding."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fasttrack import process
from fasttrack.config import Settings
from fasttrack.errors import ModelNotFoundError
from fasttrack.serving import app as app_module
from fasttrack.serving.predictor import Predictor

AppClient = Callable[..., Any]


def test_framework_errors_have_the_apis_shapes(serve_app: AppClient, settings: Settings, classifier: Predictor) -> None:
    with serve_app(settings, classifier) as (client, _):
        assert client.get("/nowhere").json() == {"error": "Not Found", "details": []}
        assert client.delete("/predict").status_code == 405
        assert client.get("/v2/nowhere").json() == {"error": "Not Found"}
        assert client.get("/invocations").json() == {"error_code": "BAD_REQUEST", "message": "Method Not Allowed"}


def test_an_unexpected_failure_is_a_500_in_shape(
    serve_app: AppClient, settings: Settings, classifier: Predictor
) -> None:
    class Broken:
        name = "broken"
        labels = None

        def predict(self, columns: Any, rows: int, *, probabilities: bool = False) -> Any:
            raise RuntimeError("the model blew up")

    broken = Predictor(classifier.model, classifier.source, runtime=Broken())
    from fastapi.testclient import TestClient

    with TestClient(app_module.create_app(settings, predictor=broken), raise_server_exceptions=False) as client:
        response = client.post("/predict", json={"feature_1": 1.0, "feature_2": 1.0})
    assert response.status_code == 500
    assert response.json()["error"] == "internal error: RuntimeError: the model blew up"


def test_the_access_log_is_off_by_default_and_json_when_on(
    serve_app: AppClient, settings: Settings, classifier: Predictor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fasttrack.access")
    with serve_app(settings, classifier) as (client, _):
        client.post("/predict", json={"feature_1": 5.3, "feature_2": 2.1})
    assert not [r for r in caplog.records if r.name == "fasttrack.access"]
    with serve_app(settings.model_copy(update={"access_log": True}), classifier) as (client, _):
        client.post("/predict?probabilities=true", json={"feature_1": 5.3, "feature_2": 2.1})
    [record] = [r for r in caplog.records if r.name == "fasttrack.access"]
    line = json.loads(record.getMessage())
    assert line["method"] == "POST" and line["path"] == "/predict" and line["status"] == 200
    assert line["query"] == "probabilities=true" and line["model_version"] == "1" and line["ms"] >= 0


def test_an_unknown_model_fails_before_the_port_is_bound(settings: Settings) -> None:
    try:
        with pytest.raises(ModelNotFoundError, match="no-such-model"):
            app_module.run(settings.model_copy(update={"model": "models:/no-such-model@champion", "port": 1}))
    finally:
        process.resume_collection()  # run() is an entry point: it deferred collection for the server it never ran


def test_the_multiprocess_folder_is_fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    given = tmp_path / "metrics"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"stale")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(given))
    folder, made = app_module._multiprocess_dir()
    assert (folder, made) == (given, False)
    assert not list(given.iterdir())
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    folder, made = app_module._multiprocess_dir()
    try:
        assert made and folder.is_dir() and os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(folder)
    finally:
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
        folder.rmdir()


def test_workers_get_the_settings_through_the_environment(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    wanted = settings.model_copy(
        update={
            "model": "models:/sample/1",
            "workers": 3,
            "access_log": True,
            "drift_thresholds": {"feature_1": 0.3},  # a mapping travels as JSON
            "feedback_ttl": 60.0,
        }
    )
    for name in Settings.model_fields:
        monkeypatch.delenv(f"FASTTRACK_{name.upper()}", raising=False)
    app_module._export(wanted)
    try:
        from fasttrack.config import get_settings

        assert get_settings() == wanted
    finally:
        for name in Settings.model_fields:
            os.environ.pop(f"FASTTRACK_{name.upper()}", None)
