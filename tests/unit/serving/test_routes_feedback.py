"""Live monitoring wired into the server: prediction ids, ``POST /feedback``, live metrics and drift in /metrics."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from fasttrack.config import Settings
from fasttrack.errors import ConfigError
from fasttrack.registry.resolve import ResolvedModel
from fasttrack.serving.app import create_app
from fasttrack.serving.manager import ModelManager
from fasttrack.serving.metrics import ServerMetrics
from fasttrack.serving.predictor import Predictor
from support import REPO

AppClient = Callable[..., Any]
RECORD = {"feature_1": 5.3, "feature_2": 2.1}
ID = re.compile(r"[0-9a-f]{32}")
SAMPLE = pd.read_csv(REPO / "data" / "sample" / "classification.csv")
REGRESSION = pd.read_csv(REPO / "data" / "sample" / "regression.csv")
LABELS = {"model": "sample", "version": "1"}


def rows(
    frame: pd.DataFrame, count: int, start: int = 0, target: str = "label"
) -> tuple[list[dict[str, Any]], list[Any]]:
    """``count`` records of a sample file and their true targets."""
    part = frame.iloc[start : start + count]
    return part.drop(columns=[target]).to_dict("records"), part[target].tolist()


def sample(metrics: ServerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, {**LABELS, **labels})


def predict_ids(client: TestClient, records: list[dict[str, Any]]) -> list[str]:
    response = client.post("/predict?ids=true", json=records)
    assert response.status_code == 200, response.text
    ids: list[str] = response.json()["ids"]
    return ids


@pytest.fixture
def client(
    serve_app: AppClient, settings: Settings, classifier: Predictor
) -> Iterator[tuple[TestClient, ServerMetrics]]:
    with serve_app(settings, classifier) as served:
        yield served


# ------------------------------------------------------------------------------------------------ prediction ids
def test_one_record_gets_an_id_in_the_header_and_on_request_in_the_body(client: tuple[TestClient, Any]) -> None:
    test_client, _ = client
    plain = test_client.post("/predict", json=RECORD)
    assert ID.fullmatch(plain.headers["X-Prediction-Id"])
    assert plain.json() == {"prediction": "positive"}  # the briefs' answer is unchanged
    asked = test_client.post("/predict?ids=true", json=RECORD)
    assert asked.json() == {"prediction": "positive", "id": asked.headers["X-Prediction-Id"]}
    assert asked.headers["X-Prediction-Id"] != plain.headers["X-Prediction-Id"]
    query = test_client.get("/predict", params={"feature_1": "5.3", "feature_2": "2.1", "ids": "true"})
    assert query.json()["id"] == query.headers["X-Prediction-Id"] and ID.fullmatch(query.json()["id"])


def test_a_batch_gets_a_base_id_and_row_i_is_base_dash_i(client: tuple[TestClient, Any]) -> None:
    test_client, _ = client
    response = test_client.post("/predict?ids=true", json=[RECORD, RECORD, RECORD])
    base = response.headers["X-Prediction-Id"]
    assert ID.fullmatch(base)
    assert response.json()["ids"] == [f"{base}-0", f"{base}-1", f"{base}-2"]
    assert "ids" not in test_client.post("/predict", json=[RECORD]).json()


def test_mlflow_and_v2_answers_carry_the_batch_base_id(client: tuple[TestClient, Any]) -> None:
    test_client, _ = client
    mlflow = test_client.post("/invocations", json={"dataframe_records": [RECORD, RECORD]})
    assert mlflow.json() == {"predictions": ["positive", "positive"]}
    v2 = test_client.post(
        "/v2/models/sample/infer",
        json={
            "inputs": [
                {"name": "feature_1", "shape": [1], "datatype": "FP64", "data": [5.3]},
                {"name": "feature_2", "shape": [1], "datatype": "FP64", "data": [2.1]},
            ]
        },
    )
    for response in (mlflow, v2):
        base = response.headers["X-Prediction-Id"]
        assert ID.fullmatch(base)
        joined = test_client.post("/feedback", json={"id": f"{base}-0", "label": "positive"}).json()
        assert joined["items"][0]["outcome"] == "matched"


def test_rejected_input_gets_no_id(client: tuple[TestClient, Any]) -> None:
    test_client, _ = client
    response = test_client.post("/predict", json={"feature_1": "x", "feature_2": 1.0})
    assert response.status_code == 422 and "X-Prediction-Id" not in response.headers


# ------------------------------------------------------------------------------------------------ POST /feedback
def test_every_label_is_answered_with_its_outcome(client: tuple[TestClient, ServerMetrics]) -> None:
    test_client, metrics = client
    first, second, third = predict_ids(test_client, [RECORD, RECORD, RECORD])
    response = test_client.post(
        "/feedback",
        json=[
            {"id": first, "label": "positive"},
            {"id": second, "label": "negative"},  # a wrong prediction is still a match
            {"id": "0" * 32, "label": "positive"},
            {"id": first, "label": "positive"},
            {"id": third, "label": "maybe"},
            {"id": third, "label": None},
        ],
    )
    assert response.status_code == 200
    assert response.headers["X-Model-Version"] == "1"
    body = response.json()
    assert (body["model"], body["version"], body["received"]) == ("sample", "1", 6)
    outcomes = [item["outcome"] for item in body["items"]]
    assert outcomes == ["matched", "matched", "unknown", "duplicate", "invalid", "invalid"]
    assert body["counts"] == {"matched": 2, "unknown": 1, "expired": 0, "duplicate": 1, "invalid": 2}
    assert body["items"][0] == {"id": first, "outcome": "matched", "predicted": "positive"}
    assert "not issued by this server" in body["items"][2]["reason"]
    assert "not one of the model's labels" in body["items"][4]["reason"]
    assert body["live"] == {"samples": 2, "accuracy": None, "rmse": None, "mae": None}  # fewer than min samples
    for outcome, count in body["counts"].items():
        assert sample(metrics, "fasttrack_feedback_total", outcome=outcome) == count
    # an invalid label leaves the prediction waiting for a valid one
    assert test_client.post("/feedback", json={"id": third, "label": "negative"}).json()["counts"]["matched"] == 1


@pytest.mark.parametrize("shape", ["one", "list", "items"])
def test_one_label_a_list_or_items(client: tuple[TestClient, Any], shape: str) -> None:
    test_client, _ = client
    (prediction_id,) = predict_ids(test_client, [RECORD])
    item = {"id": prediction_id, "label": "positive"}
    body: Any = {"one": item, "list": [item], "items": {"items": [item]}}[shape]
    answer = test_client.post("/feedback", json=body).json()
    assert answer["counts"]["matched"] == 1 and answer["items"][0]["id"] == prediction_id


@pytest.mark.parametrize(
    "body",
    [{"id": 12, "label": "positive"}, {"label": "positive"}, {"id": "x"}, {"id": "x", "label": [1]}, "text", {}],
)
def test_malformed_feedback_is_422_naming_the_field(client: tuple[TestClient, Any], body: Any) -> None:
    response = client[0].post("/feedback", json=body)
    assert response.status_code == 422
    answer = response.json()
    assert answer["error"].startswith("invalid request") and answer["details"]


def test_too_many_labels_at_once_are_refused(serve_app: AppClient, settings: Settings, classifier: Predictor) -> None:
    with serve_app(settings.model_copy(update={"feedback_max_items": 2}), classifier) as (test_client, metrics):
        items = [{"id": str(i), "label": "positive"} for i in range(3)]
        response = test_client.post("/feedback", json=items)
        assert response.status_code == 413
        assert "3 labels is over the limit of 2 per request (FASTTRACK_FEEDBACK_MAX_ITEMS)" in response.json()["error"]
        assert sample(metrics, "fasttrack_feedback_limited_total", what="items") == 3
        assert sample(metrics, "fasttrack_feedback_total", outcome="matched") == 0
        assert test_client.post("/feedback", json=items[:2]).status_code == 200


def test_old_predictions_expire(serve_app: AppClient, settings: Settings, classifier: Predictor) -> None:
    with serve_app(settings.model_copy(update={"feedback_ttl": 0.2}), classifier) as (test_client, metrics):
        (prediction_id,) = predict_ids(test_client, [RECORD])
        time.sleep(0.3)
        item = test_client.post("/feedback", json={"id": prediction_id, "label": "positive"}).json()["items"][0]
        assert item["outcome"] == "expired" and "older than 0.2 seconds" in item["reason"]
        assert sample(metrics, "fasttrack_feedback_total", outcome="expired") == 1


def test_live_accuracy_is_exported_once_enough_labels_came(
    serve_app: AppClient, settings: Settings, classifier: Predictor
) -> None:
    live = settings.model_copy(update={"live_window": 50, "live_min_samples": 20})
    records, truth = rows(SAMPLE, 20)
    with serve_app(live, classifier) as (test_client, metrics):
        assert sample(metrics, "fasttrack_live_samples") == 0
        ids = predict_ids(test_client, records)
        predicted = test_client.post("/predict", json=records).json()["predictions"]
        pairs = [{"id": i, "label": label} for i, label in zip(ids, truth, strict=True)]
        test_client.post("/feedback", json=pairs[:19])
        assert sample(metrics, "fasttrack_live_samples") == 19
        assert sample(metrics, "fasttrack_live_accuracy") is None
        answer = test_client.post("/feedback", json={"items": pairs[19:]}).json()
        expected = sum(p == t for p, t in zip(predicted, truth, strict=True)) / 20
        assert answer["live"]["accuracy"] == pytest.approx(expected)
        assert sample(metrics, "fasttrack_live_accuracy") == pytest.approx(expected)
        assert sample(metrics, "fasttrack_live_samples") == 20
        assert sample(metrics, "fasttrack_live_rmse") is None
        text = test_client.get("/metrics").text
        assert f'fasttrack_live_accuracy{{model="sample",version="1"}} {expected}' in text


def test_live_rmse_and_mae_for_a_regressor(serve_app: AppClient, settings: Settings, regressor: Predictor) -> None:
    live = settings.model_copy(update={"live_window": 50, "live_min_samples": 10})
    records, truth = rows(REGRESSION, 10, target="y")
    with serve_app(live, regressor) as (test_client, metrics):
        response = test_client.post("/predict?ids=true", json=records).json()
        errors = [p - t for p, t in zip(response["predictions"], truth, strict=True)]
        labels = [{"id": i, "label": t} for i, t in zip(response["ids"], truth, strict=True)]
        assert test_client.post("/feedback", json=labels).json()["counts"]["matched"] == 10
        found = {"model": "sample-regression", "version": "1"}
        get = metrics.registry.get_sample_value
        assert get("fasttrack_live_rmse", found) == pytest.approx((sum(e * e for e in errors) / 10) ** 0.5)
        assert get("fasttrack_live_mae", found) == pytest.approx(sum(abs(e) for e in errors) / 10)
        assert get("fasttrack_live_accuracy", found) is None
        invalid = test_client.post("/feedback", json={"id": response["ids"][0], "label": "12"}).json()
        assert invalid["items"][0]["outcome"] == "duplicate"


# ------------------------------------------------------------------------------------------------------- drift
def test_drift_is_exported_once_a_window_holds_min_rows(
    serve_app: AppClient, settings: Settings, classifier: Predictor
) -> None:
    small = settings.model_copy(
        update={"drift_window": 100, "drift_min_rows": 50, "drift_thresholds": {"feature_2": 0.3}}
    )
    records, _ = rows(SAMPLE, 50)
    with serve_app(small, classifier) as (test_client, metrics):
        test_client.post("/predict", json=records[:49])
        assert sample(metrics, "fasttrack_feature_drift", feature="feature_1", method="psi") is None
        thresholds = {
            f: sample(metrics, "fasttrack_feature_drift_threshold", feature=f, method="psi")
            for f in ("feature_1", "feature_2", "__prediction__")
        }
        assert thresholds == {"feature_1": 0.2, "feature_2": 0.3, "__prediction__": 0.2}
        test_client.get("/predict", params={k: str(v) for k, v in records[49].items()})  # a GET row counts too
        exported = {
            (s.labels["feature"], s.labels["method"])
            for family in metrics.registry.collect()
            if family.name == "fasttrack_feature_drift"
            for s in family.samples
        }
        assert exported == {
            ("feature_1", "psi"),
            ("feature_1", "ks"),
            ("feature_2", "psi"),
            ("feature_2", "ks"),
            ("__prediction__", "psi"),
            ("__prediction__", "js"),
        }


def test_only_the_shifted_feature_drifts(serve_app: AppClient, settings: Settings, classifier: Predictor) -> None:
    small = settings.model_copy(update={"drift_window": 300, "drift_min_rows": 100})
    records, _ = rows(SAMPLE, 300)
    with serve_app(small, classifier) as (test_client, metrics):
        test_client.post("/predict", json=records)

        def psi(feature: str) -> float:
            found = sample(metrics, "fasttrack_feature_drift", feature=feature, method="psi")
            assert found is not None
            return found

        assert psi("feature_1") < 0.1 and psi("feature_2") < 0.1
        shifted = [{**record, "feature_1": record["feature_1"] + 6} for record in records]
        test_client.post("/predict", json=shifted)
        assert psi("feature_1") > 0.2 > psi("feature_2")


# ---------------------------------------------------------------------------------------------------- settings
def test_thresholds_for_unmonitored_features_refuse_the_model(classifier: Predictor, settings: Settings) -> None:
    wrong = settings.model_copy(update={"drift_thresholds": {"feature_9": 0.3}})
    with pytest.raises(ConfigError, match=r"FASTTRACK_DRIFT_THRESHOLDS does not fit sample version 1.*feature_9"):
        Predictor(classifier.model, classifier.source, settings=wrong)


def test_the_server_refuses_to_load_with_thresholds_for_unknown_features(
    serve_app: AppClient, settings: Settings
) -> None:
    wrong = settings.model_copy(update={"model": "models:/sample/1", "drift_thresholds": {"feature_9": 0.3}})
    with serve_app(wrong) as (test_client, _):
        manager: ModelManager = test_client.app.state.manager  # type: ignore[attr-defined]
        assert not manager.wait_ready(60)
        ready = test_client.get("/ready")
        assert (ready.status_code, ready.json()["error"]) == (503, "the model failed to load; the server log says why")
        assert "feature_9" in str(manager.load_error)


def test_monitoring_windows_follow_the_settings(classifier: Predictor, settings: Settings) -> None:
    sized = settings.model_copy(
        update={"drift_window": 40, "drift_min_rows": 4, "feedback_capacity": 3, "feedback_ttl": 5.0}
    )
    predictor = Predictor(classifier.model, classifier.source, settings=sized)
    assert (predictor.drift.window, predictor.drift.min_observations) == (40, 4)
    assert (predictor.feedback.capacity, predictor.feedback.ttl) == (3, 5.0)
    predictor.predict([RECORD] * 5)
    assert len(predictor.feedback) == 3
    assert Predictor(classifier.model, classifier.source).feedback.ttl is None  # 0 (the default) = no TTL


# --------------------------------------------------------------------------------------------- across a swap
def test_labels_for_the_previous_version_are_still_joined(settings: Settings, classifier: Predictor) -> None:
    metrics = ServerMetrics()
    first = Predictor(classifier.model, classifier.source, metrics=metrics)
    newer = ResolvedModel(uri=classifier.source.uri, path=classifier.source.path, name="sample", version="2")
    manager = ModelManager(
        settings.model_copy(update={"model": "models:/sample@champion"}),
        metrics,
        predictor=first,
        resolver=lambda uri, s: newer,
        loader=lambda resolved, m: Predictor(classifier.model, resolved, metrics=m),
    )
    old_id = first.predict([RECORD], single=True).prediction_id
    assert manager.reload(force=True).outcome == "reloaded"
    second = manager.current
    assert second is not None and second.version == "2"
    new_id = second.predict([RECORD], single=True).prediction_id
    result = manager.feedback(second, [(old_id, "positive"), (new_id, "negative"), ("nope", "positive")])
    assert [item.outcome for item in result.items] == ["matched", "matched", "unknown"]
    get = metrics.registry.get_sample_value
    assert get("fasttrack_feedback_total", {"model": "sample", "version": "1", "outcome": "matched"}) == 1
    assert get("fasttrack_feedback_total", {"model": "sample", "version": "2", "outcome": "matched"}) == 1
    assert get("fasttrack_feedback_total", {"model": "sample", "version": "2", "outcome": "unknown"}) == 1
    # only the served version's live gauges are exported
    assert get("fasttrack_live_samples", {"model": "sample", "version": "2"}) == 1
    assert get("fasttrack_live_samples", {"model": "sample", "version": "1"}) is None


# ------------------------------------------------------------------------------ floods (issue 17's findings)
class KeyFromHeader:
    """Puts ``X-Test-Key`` in the scope where access control puts the caller's key id (outside the whole app)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        for name, value in scope.get("headers", []):
            if name == b"x-test-key":
                scope["fasttrack.api_key"] = value.decode()
        await self.app(scope, receive, send)


def test_a_flood_neither_evicts_another_clients_prediction_nor_decides_the_live_accuracy(
    settings: Settings, classifier: Predictor
) -> None:
    """One 10,000-row batch evicted a real client's pending id; 1,000 wrong labels took the accuracy to 0.0."""
    metrics = ServerMetrics()
    predictor = Predictor(classifier.model, classifier.source, metrics=metrics, settings=settings)
    app = create_app(settings, predictor=predictor, metrics=metrics)
    app.add_middleware(KeyFromHeader)
    real, flood = {"X-Test-Key": "real"}, {"X-Test-Key": "flood"}
    records, _ = rows(SAMPLE, 600)
    with TestClient(app) as test_client:
        answer = test_client.post("/predict?ids=true", json=records, headers=real).json()
        for _ in range(10):  # 10 x 1,000 rows: the window's whole capacity
            assert test_client.post("/predict", json=[RECORD] * 1000, headers=flood).status_code == 200
        assert sample(metrics, "fasttrack_feedback_limited_total", what="pending") == 9000
        truth = [{"id": i, "label": p} for i, p in zip(answer["ids"], answer["predictions"], strict=True)]
        counts = test_client.post("/feedback", json=truth, headers=real).json()["counts"]
        assert counts["matched"] == 600 and counts["unknown"] == 0  # none pushed out by the flood
        assert live_accuracy(test_client) == 1.0
        mine = test_client.post("/predict?ids=true", json=[RECORD] * 1000, headers=flood).json()["ids"]
        wrong = [{"id": i, "label": "negative"} for i in mine]  # RECORD is positive: every label wrong
        assert test_client.post("/feedback", json=wrong, headers=flood).json()["counts"]["matched"] == 1000
        assert live_accuracy(test_client) == 0.5  # the flood holds half of the live window, never more
        assert sample(metrics, "fasttrack_feedback_limited_total", what="share") == 100 + 500


def live_accuracy(test_client: TestClient) -> float | None:
    found = re.search(
        r'fasttrack_live_accuracy\{model="sample",version="1"\} ([0-9.e-]+)', test_client.get("/metrics").text
    )
    return None if found is None else float(found.group(1))


# ------------------------------------------------------------------------------ hostile bodies (issue 17)
def test_feedback_bodies_are_read_like_the_prediction_routes(
    serve_app: AppClient, settings: Settings, classifier: Predictor
) -> None:
    small = settings.model_copy(update={"max_body_bytes": 4096, "feedback_max_items": 10})
    with serve_app(small, classifier) as (test_client, _):
        item = {"id": "x", "label": "positive"}
        over = test_client.post("/feedback", json=[item] * 200)  # 6 kB, declared
        assert over.status_code == 413 and "over the limit of 4096 bytes" in over.json()["error"]
        streamed = test_client.post(
            "/feedback", content=iter([b"[" + b" " * 5000 + b"]"]), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
        text = test_client.post("/feedback", content=b"id=x", headers={"content-type": "text/plain"})
        assert text.status_code == 415
        malformed = test_client.post("/feedback", content=b'{"id": "x",', headers={"content-type": "application/json"})
        assert malformed.status_code == 400 and malformed.json()["error"].startswith("malformed JSON")
        surrogate = test_client.post(
            "/feedback", content=rb'{"id": "\ud800", "label": 1}', headers={"content-type": "application/json"}
        )
        assert surrogate.status_code == 400 and "$.id holds a lone surrogate" in surrogate.json()["error"]
        many = test_client.post("/feedback", json={"items": [item] * 11})
        assert many.status_code == 413 and "11 labels is over the limit of 10" in many.json()["error"]


def test_a_feedback_body_of_tiny_values_is_413_before_it_is_parsed(
    serve_app: AppClient, settings: Settings, classifier: Predictor
) -> None:
    with serve_app(settings.model_copy(update={"max_batch_rows": 10}), classifier) as (test_client, _):
        body = b"[" + b",".join([b"{}"] * 20_000) + b"]"
        answer = test_client.post("/feedback", content=body, headers={"content-type": "application/json"})
        assert answer.status_code == 413 and "JSON values" in answer.json()["error"]
