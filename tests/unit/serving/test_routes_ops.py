"""Operations: liveness at once, readiness after the background load, /model, /metrics, /admin/reload, /docs."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from fasttrack.config import Settings
from fasttrack.serving.manager import ModelManager
from fasttrack.serving.metrics import ServerMetrics
from fasttrack.serving.predictor import Predictor
from support import REPO, register_broken, register_copy

AppClient = Callable[..., Any]
RECORD = {"feature_1": 5.3, "feature_2": 2.1}


def test_health_answers_at_once_and_ready_only_after_the_load(
    serve_app: AppClient, settings: Settings, gated_load: Any
) -> None:
    gated = gated_load(settings, "models:/sample@champion")
    manager, metrics, release = gated.manager, gated.metrics, gated.release
    with serve_app(settings, manager=manager, metrics=metrics) as (client, _):
        try:
            assert client.get("/health").json() == {"status": "ok"}
            not_ready = client.get("/ready")
            assert not_ready.status_code == 503 and not_ready.json()["status"] == "loading"
            assert client.get("/v2/health/ready").status_code == 503
            early = client.post("/predict", json=RECORD)
            assert early.status_code == 503 and "still loading" in early.json()["error"]
            assert metrics.registry.get_sample_value("fasttrack_model_ready") == 0
        finally:
            release.set()
        assert manager.wait_ready(60)
        assert client.get("/ready").json() == {"status": "ready", "model": "sample", "version": "1"}
        assert client.post("/predict", json=RECORD).json() == {"prediction": "positive"}
        assert metrics.registry.get_sample_value("fasttrack_model_ready") == 1


def test_a_failed_first_load_is_reported(serve_app: AppClient, settings: Settings) -> None:
    broken = settings.model_copy(update={"model": "models:/no-such-model@champion"})
    metrics = ServerMetrics()
    manager = ModelManager(broken, metrics)
    with serve_app(settings, manager=manager, metrics=metrics) as (client, _):
        manager.wait_ready(60)
        ready = client.get("/ready")
        # The answer says no model loaded, not why: the reason (a URI, a path, an exception) is the server's.
        assert (ready.status_code, ready.json()["error"]) == (503, "the model failed to load; the server log says why")
        assert "no-such-model" in str(manager.load_error)
        refused = client.post("/predict", json=RECORD).json()["error"]
        assert "no model is loaded" in refused and "no-such-model" not in refused


def test_model(serve_app: AppClient, settings: Settings, classifier: Predictor) -> None:
    with serve_app(settings, classifier) as (client, _):
        body = client.get("/model").json()
    assert (body["name"], body["version"], body["task"], body["backend"]) == (
        "sample",
        "1",
        "classification",
        "onnx",  # the checked model.onnx is served by default (FASTTRACK_ENGINE=auto)
    )
    assert body["labels"] == ["negative", "positive"]
    assert body["run_id"] and body["trained_at"]
    assert 0.5 < body["metrics"]["roc_auc"] <= 1
    assert [f["name"] for f in body["features"]] == ["feature_1", "feature_2"]
    assert body["features"][0]["kind"] == "numeric" and body["features"][0]["min"] < body["features"][0]["max"]


def test_model_shows_no_training_row_and_not_where_the_data_is(
    serve_app: AppClient, settings: Settings, classifier: Predictor
) -> None:
    with serve_app(settings, classifier) as (client, _):
        body = client.get("/model").json()
    assert body["data"] == {"fingerprint": "test", "rows": 4000, "columns": 3}  # no source path, bucket or query
    assert classifier.metadata.data.source not in str(body)
    (example,) = body["input_example"]
    assert example == classifier.schema.example_record()
    training = pd.read_csv(REPO / "data/sample/classification.csv")
    rows = set(map(tuple, training[["feature_1", "feature_2"]].to_numpy().tolist()))
    assert (example["feature_1"], example["feature_2"]) not in rows
    assert not any(row == example for row in classifier.metadata.input_example)


def test_metrics_move_with_requests(serve_app: AppClient, settings: Settings, classifier: Predictor) -> None:
    def value(text: str, series: str) -> float:
        for line in text.splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        return 0.0

    success = 'fasttrack_predictions_total{model="sample",outcome="success",version="1"}'
    http = 'http_requests_total{handler="/predict",method="POST",status="2xx"}'
    with serve_app(settings, classifier) as (client, _):
        before = client.get("/metrics")
        assert before.headers["content-type"].startswith("text/plain")
        for _ in range(3):
            client.post("/predict", json=RECORD)
            client.get("/health")
        after = client.get("/metrics").text
    assert value(after, success) - value(before.text, success) == 3
    assert value(after, http) - value(before.text, http) == 3
    assert 'fasttrack_model_info{model="sample",version="1"} 1.0' in after
    assert 'fasttrack_model_metric{metric="roc_auc",model="sample",version="1"}' in after
    assert 'handler="/health"' not in after and 'handler="/metrics"' not in after  # probes are not measured


def test_admin_reload(serve_app: AppClient, settings: Settings, model_home: Path, tmp_path: Path) -> None:
    name = f"admin-{uuid.uuid4().hex[:8]}"
    register_copy(model_home, name, alias="champion")
    with serve_app(settings.model_copy(update={"model": f"models:/{name}@champion"})) as (client, _):
        manager = client.app.state.manager  # type: ignore[attr-defined]
        assert manager.wait_ready(60)
        assert client.post("/admin/reload", json={}).json()["outcome"] == "unchanged"
        register_copy(model_home, name, alias="champion")
        swapped = client.post("/admin/reload", json={}).json()
        assert (swapped["outcome"], swapped["version"]) == ("reloaded", "2")
        assert client.post("/predict", json=RECORD).headers["X-Model-Version"] == "2"
        register_broken(model_home, name, tmp_path / "broken", alias="champion")
        refused = client.post("/admin/reload", json={}).json()
        assert (refused["outcome"], refused["version"], refused["candidate"]) == ("refused", "2", "3")
        # The public reason of the refusal, without the cache path and ONNX Runtime's text the log has.
        assert refused["error"] == (
            "cannot load version 3: cannot load the ONNX model extra_files/model.onnx; the server log says more"
        )
        assert client.post("/predict", json=RECORD).headers["X-Model-Version"] == "2"
        metrics = client.get("/metrics").text
        # counted under version 2, which keeps serving (version 3 was refused)
        assert f'fasttrack_model_reloads_total{{model="{name}",outcome="failure",version="2"}} 1.0' in metrics


def test_docs_work_offline(serve_app: AppClient, settings: Settings, classifier: Predictor) -> None:
    with serve_app(settings, classifier) as (client, _):
        page = client.get("/docs")
        assert page.status_code == 200
        assert "cdn" not in page.text.lower()
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
            assert f"/static-offline-docs/{asset}" in page.text
            served = client.get(f"/static-offline-docs/{asset}")
            assert served.status_code == 200 and len(served.content) > 10_000


def test_openapi_names_the_real_features_with_a_training_example(
    serve_app: AppClient, settings: Settings, mixed: Predictor
) -> None:
    with serve_app(settings, mixed) as (client, _):
        document = client.get("/openapi.json").json()
    record = document["components"]["schemas"]["PredictionRecord"]
    # The features, then the training data's other column (the target), accepted and ignored.
    assert list(record["properties"]) == ["amount", "colour", "member", "label"]
    assert record["required"] == ["colour", "member"]  # amount had missing values in training
    assert record["additionalProperties"] is False
    assert {"type": "string", "description": "a category"} in record["properties"]["colour"]["anyOf"]
    example = record["examples"][0]
    assert example["colour"] in ("red", "green", "blue") and isinstance(example["amount"], float)
    body = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["examples"]["one record"]["value"] == example
    assert [p["name"] for p in document["paths"]["/predict"]["get"]["parameters"]] == [
        "amount",
        "colour",
        "member",
        "probabilities",
    ]
    # Query values are text the rules read (a missing marker, "true" for a number): documented as text (fuzzing).
    features = [p for p in document["paths"]["/predict"]["get"]["parameters"] if p["name"] != "probabilities"]
    assert all(p["schema"] == {"type": "string"} for p in features)
    assert features[0]["description"].startswith("a number") and "as the rules read text" in features[0]["description"]
    invocations = document["paths"]["/invocations"]["post"]["requestBody"]["content"]
    assert invocations["application/json"]["examples"]["dataframe_records"]["value"] == {"dataframe_records": [example]}
    v2 = document["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]["application/json"]
    assert [i["name"] for i in v2["example"]["inputs"]] == ["amount", "colour", "member"]
    assert "InvocationsIn" in document["components"]["schemas"]
    assert "V2InferenceRequest" in document["components"]["schemas"]


def test_openapi_before_a_model_is_loaded(serve_app: AppClient, settings: Settings, gated_load: Any) -> None:
    gated = gated_load(settings, "models:/sample/1")
    manager, metrics, release = gated.manager, gated.metrics, gated.release
    with serve_app(settings, manager=manager, metrics=metrics) as (client, _):
        try:
            generic = client.get("/openapi.json").json()["components"]["schemas"]["PredictionRecord"]
            assert generic["additionalProperties"] is True
        finally:
            release.set()
        manager.wait_ready(60)
        loaded = client.get("/openapi.json").json()["components"]["schemas"]["PredictionRecord"]
        assert set(loaded["properties"]) == {"feature_1", "feature_2", "label"}


def test_workers_take_connections_only_once_loaded(serve_app: AppClient, settings: Settings) -> None:
    # Several workers share one port: start-up waits for the model, so no request meets a loading worker.
    with serve_app(settings.model_copy(update={"model": "models:/sample/1", "workers": 2})) as (client, _):
        assert client.get("/ready").status_code == 200
        assert client.post("/predict", json=RECORD).json() == {"prediction": "positive"}
